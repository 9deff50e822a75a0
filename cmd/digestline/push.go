package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/digestline/digestline/cmd/digestline/internal/progress"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/oci"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/cobra"
)

// pushOptions are push's flags.
type pushOptions struct {
	guard  *events.TagGuard
	jobs   int
	asJSON bool
}

func newPushCommand() *cobra.Command {
	o := &pushOptions{}
	cmd := &cobra.Command{
		Use:   "push [LAYOUT] REF",
		Short: "Push an OCI image layout to REF stage by stage (default layout: " + defaultLayout + ")",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, target := defaultLayout, args[0]
			if len(args) == 2 {
				dir, target = args[0], args[1]
			}
			return o.run(cmd.Context(), dir, target, cmd.OutOrStdout())
		},
	}
	o.guard = tagGuardFlags(cmd.Flags())
	cmd.Flags().IntVar(&o.jobs, "jobs", 4, "blobs checked and uploaded at once")
	cmd.Flags().BoolVar(&o.asJSON, "json", false, "print each stage as a JSON line (the push.stage event's data) instead of [STAGE] lines")
	return cmd
}

// run pushes the layout in dir to target, printing each stage.
func (o *pushOptions) run(ctx context.Context, dir, target string, w io.Writer) error {
	ref, err := name.ParseReference(target)
	if err != nil {
		return fmt.Errorf("reference %q: %w", target, err)
	}
	layout, err := oci.OpenLayout(dir)
	if err != nil {
		return err
	}
	g, err := layout.Graph(ctx)
	if err != nil {
		return err
	}
	opts, err := registry.TagOptions(*o.guard)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(w)
	observe := func(_ context.Context, r events.StageReport) { _ = enc.Encode(r) }
	var view *progress.View
	if !o.asJSON {
		view = progress.New(w)
		observe = func(_ context.Context, r events.StageReport) { view.Println(r.Line) }
		if view.Live() { // otherwise blob files go to the socket untouched (sendfile)
			opts = append(opts, registry.WithProgress(view.Blob))
		}
	}
	client, err := registryClient(registry.WithJobs(o.jobs))
	if err != nil {
		return err
	}
	res, err := client.Push(ctx, ref, g, layout, observe, opts...)
	view.Close()
	if err != nil {
		return &exitCodeError{code: 2, err: err}
	}
	if !o.asJSON {
		fmt.Fprintf(w, "pushed %s@%s: %d uploaded, %d existing, %d requests\n", ref.Context().Name(), res.Digest, res.Uploaded, res.Existing, res.Requests)
	}
	return nil
}
