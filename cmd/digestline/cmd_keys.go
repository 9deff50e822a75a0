package main

import (
	"fmt"
	"path/filepath"

	"github.com/digestline/digestline/pkg/sign"
	"github.com/spf13/cobra"
)

func newKeygenCommand() *cobra.Command {
	var (
		dir, name string
		ed25519   bool
	)
	cmd := &cobra.Command{
		Use:   "keygen [--out DIR] [--name NAME] [--ed25519]",
		Short: "Make a signing key pair: NAME.key (PKCS#8 PEM, owner-only) for DIGESTLINE_SIGNING_KEY, NAME.pub (as cosign.pub) for --key and policies",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			priv, pub := filepath.Join(dir, name+".key"), filepath.Join(dir, name+".pub")
			s, err := sign.Generate(priv, pub, ed25519)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "private key %s\npublic key  %s\nkey id      %s\n", priv, pub, s.KeyID())
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "out", ".", "directory to write the key pair to (it refuses to overwrite one)")
	cmd.Flags().StringVar(&name, "name", "digestline", "file name of the pair, without .key and .pub")
	cmd.Flags().BoolVar(&ed25519, "ed25519", false, "an Ed25519 key instead of ECDSA P-256")
	return cmd
}
