package mountcmd

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/distribution/reference"
	"github.com/layerfs/layerfs/blobstore"
	"github.com/spf13/cobra"
)

func init() { addVerb(newSaveCommand) }

type saveOptions struct {
	output string
	format string
	quiet  bool
}

func newSaveCommand(g *globalOptions) *cobra.Command {
	o := &saveOptions{}
	cmd := &cobra.Command{
		Use:   "save [-o FILE] [--format docker|oci] IMAGE...",
		Short: "Save images to a tar archive (stdout by default)",
		Long: `Save one or more images to a tar archive: docker-archive by default (loadable
by docker load, podman load and skopeo's docker-archive:), an OCI archive with
--format oci. Stored blobs are copied unchanged; the same images give the same bytes.
A repository name without a tag saves every tag of that repository.`,
		Args:         minArgs(1),
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSave(cmd, g, o, args)
		},
	}
	cmd.Flags().StringVarP(&o.output, "output", "o", "", "write to a file instead of stdout")
	cmd.Flags().StringVar(&o.format, "format", blobstore.FormatDocker, "archive format: docker or oci")
	cmd.Flags().BoolVarP(&o.quiet, "quiet", "q", false, "suppress the progress output")
	return cmd
}

func runSave(cmd *cobra.Command, g *globalOptions, o *saveOptions, args []string) error {
	if o.format != blobstore.FormatDocker && o.format != blobstore.FormatOCI {
		return fmt.Errorf("save: unknown format %q (docker or oci)", o.format)
	}
	out := cmd.OutOrStdout()
	if o.output == "" || o.output == "-" {
		if f, ok := out.(*os.File); ok && isTerminal(f) {
			return errors.New("cowardly refusing to save to a terminal. Use the -o flag or redirect")
		}
	}
	// The blobs stay until the archive is written: an rmi or prune meanwhile
	// untags, and its collection waits (it deleted blobs under a save, which
	// then wrote a truncated archive; found by a review).
	s, release, err := openLeased(cmd.Context(), g)
	if err != nil {
		return err
	}
	defer release()
	imgs, err := s.Images()
	if err != nil {
		return err
	}
	var items []blobstore.SaveItem
	for _, a := range args {
		it, err := blobstore.SaveItems(imgs, a)
		if errors.Is(err, blobstore.ErrNotFound) {
			if _, why := resolveListed(s, imgs, a); why != nil {
				err = why // say why a listed image cannot be saved
			}
		}
		if err != nil {
			return daemonError(cmd, imageErr(a, err))
		}
		items = append(items, it...)
	}
	pr := newProgress("Saving", cmd.ErrOrStderr(), o.quiet)
	opts := blobstore.SaveOptions{Format: o.format, Progress: pr.progress()}
	if o.output == "" || o.output == "-" {
		bw := bufio.NewWriterSize(out, 1<<20)
		err = s.Save(cmd.Context(), bw, items, opts)
		if err == nil {
			err = bw.Flush()
		}
		pr.Finish()
		return err
	}
	err = saveToFile(cmd, s, o.output, items, opts)
	pr.Finish()
	return err
}

// saveToFile writes the archive to path through createOutput: a failed save leaves
// no partial archive, and a device or FIFO there is written, not replaced.
func saveToFile(cmd *cobra.Command, s *blobstore.Store, path string, items []blobstore.SaveItem, opts blobstore.SaveOptions) error {
	f, err := createOutput("save", path)
	if err != nil {
		return err
	}
	defer f.Abort()
	bw := bufio.NewWriterSize(f, 1<<20)
	if err := s.Save(cmd.Context(), bw, items, opts); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	return f.Commit()
}

// imageErr turns a resolve error into docker's wording ("No such image: X") when
// arg names nothing in index.json. An image that is listed but lacks a blob
// (ErrMissingBlob) keeps the error, which names the blob: "No such image" would
// hide why a listed image cannot be used.
func imageErr(arg string, err error) error {
	if errors.Is(err, blobstore.ErrNotFound) && !errors.Is(err, blobstore.ErrMissingBlob) {
		return fmt.Errorf("No such image: %s", missingImageName(arg)) //nolint:staticcheck // docker's message
	}
	return err
}

// missingImageName is arg as docker's daemon names an image it did not find
// (ErrImageDoesNotExist): a name with its tag, ":latest" if none, even when it
// could be an ID prefix too ("a", "bb" are a:latest, bb:latest); a full ID or
// sha256: form as given.
func missingImageName(arg string) string {
	if isHexString(arg) {
		if n, err := blobstore.ParseReference(arg); err == nil { // not 64 hex
			return reference.FamiliarString(n)
		}
	}
	return blobstore.DisplayRef(arg)
}

// daemonError prints err as docker prints an API error and exits 1.
func daemonError(cmd *cobra.Command, err error) error {
	fmt.Fprintf(cmd.ErrOrStderr(), "Error response from daemon: %v\n", err)
	return exitError{1}
}

var _ io.Writer = (*bufio.Writer)(nil)
