package main

import (
	"fmt"
	"io"
	"path/filepath"

	"github.com/digestline/digestline/pkg/sign"
	"github.com/spf13/cobra"
)

// keygenOptions are keygen's flags.
type keygenOptions struct {
	dir, name string
	ed25519   bool
}

func newKeygenCommand() *cobra.Command {
	o := &keygenOptions{}
	cmd := &cobra.Command{
		Use:   "keygen [--out DIR] [--name NAME] [--ed25519]",
		Short: "Make a signing key pair: NAME.key (PKCS#8 PEM, owner-only) for DIGESTLINE_SIGNING_KEY, NAME.pub (as cosign.pub) for --key and policies",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return o.run(cmd.OutOrStdout()) },
	}
	cmd.Flags().StringVar(&o.dir, "out", ".", "directory to write the key pair to (it refuses to overwrite one)")
	cmd.Flags().StringVar(&o.name, "name", "digestline", "file name of the pair, without .key and .pub")
	cmd.Flags().BoolVar(&o.ed25519, "ed25519", false, "an Ed25519 key instead of ECDSA P-256")
	return cmd
}

// run writes the key pair and prints where, with the key's id.
func (o *keygenOptions) run(w io.Writer) error {
	priv, pub := filepath.Join(o.dir, o.name+".key"), filepath.Join(o.dir, o.name+".pub")
	s, err := sign.Generate(priv, pub, o.ed25519)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "private key %s\npublic key  %s\nkey id      %s\n", priv, pub, s.KeyID())
	return nil
}
