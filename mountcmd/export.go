package mountcmd

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/layerfs/layerfs/blobstore"
	"github.com/layerfs/layerfs/cow"
	"github.com/spf13/cobra"
)

type exportOptions struct {
	output string
}

func init() { addVerb(newExportCommand) }

func newExportCommand(g *globalOptions) *cobra.Command {
	o := &exportOptions{}
	cmd := &cobra.Command{
		Use:   "export [-o FILE] NAME|DIR|IMAGE",
		Short: "Export a working container's or an image's filesystem as a tar archive",
		Long: `Write the merged tree of a working container (its image's layers plus its changes),
or of an image, as one flat rootfs tar: no whiteouts, no layers. Writes to STDOUT
unless -o names a file; refuses to write to a terminal.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runExport(cmd.Context(), g, o, args[0], cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVarP(&o.output, "output", "o", "", "write to a file, instead of STDOUT")
	return cmd
}

var errExportTerminal = errors.New("cowardly refusing to save to a terminal. Use the -o flag or redirect")

func runExport(ctx context.Context, g *globalOptions, o *exportOptions, arg string, stdout io.Writer) (err error) {
	if o.output == "" && writerIsTerminal(stdout) {
		return errExportTerminal
	}
	// An image's blobs and layer dirs stay until the tar is written (an rmi
	// meanwhile waits to collect them), as save's.
	store, release, err := openLeased(ctx, g)
	if err != nil {
		return err
	}
	defer release()
	lowers, upper, cleanup, err := exportSource(ctx, g, store, arg)
	if err != nil {
		return err
	}
	defer cleanup()

	out := stdout
	var f *outputFile
	if o.output != "" {
		// a failed export leaves no truncated archive under the name asked for
		f, err = createOutput("export", o.output)
		if err != nil {
			return err
		}
		defer f.Abort()
		out = f
	}
	rc := cow.Export(ctx, lowers, upper, cow.FormatOCI)
	_, err = io.Copy(out, rc)
	if cerr := rc.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("export %s: %w", arg, err)
	}
	if f != nil {
		return f.Commit()
	}
	return nil
}

// exportSource finds what arg names, a working container first (as docker export
// takes containers), else an image, and returns its lower dirs (top first) and upper
// dir; cleanup removes what it made.
func exportSource(ctx context.Context, g *globalOptions, store *blobstore.Store, arg string) (lowers []string, upper string, cleanup func(), err error) {
	cleanup = func() {}
	if w, werr := findContainer(g.root, arg); werr == nil {
		st, err := w.load()
		if err != nil {
			return nil, "", cleanup, err
		}
		lowers, err := readableLowers(ctx, g, store, w, st)
		return lowers, w.upperPath(st), cleanup, err
	}
	img, err := store.Resolve(arg)
	if err != nil {
		return nil, "", cleanup, fmt.Errorf("no such container or image: %s: %w", arg, err)
	}
	lowers, err = ensureLayers(ctx, g, store, img)
	return lowers, "", cleanup, err
}
