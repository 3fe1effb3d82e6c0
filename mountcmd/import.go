package mountcmd

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strings"

	"github.com/layerfs/layerfs/build"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"

	"github.com/layerfs/layerfs/blobstore"
	"github.com/layerfs/layerfs/cow"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"
)

func init() { addVerb(newImportCommand) }

type importOptions struct {
	changes  []string
	message  string
	quiet    bool
	platform string
}

func newImportCommand(g *globalOptions) *cobra.Command {
	o := &importOptions{}
	cmd := &cobra.Command{
		Use:   "import FILE|URL|- [REPOSITORY[:TAG]]",
		Short: "Make a one-layer image from a rootfs tarball",
		Long: `Import the contents of a tarball (plain, gzip, zstd, bzip2 or xz; "-" reads
stdin, an http:// or https:// URL is fetched) as a one-layer image, print its ID
and tag it if a reference is given. -c applies Dockerfile instructions (CMD,
ENTRYPOINT, ENV, EXPOSE, LABEL, USER, VOLUME, WORKDIR, STOPSIGNAL) to the image
config.`,
		Args:         rangeArgs(1, 2),
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runImport(cmd, g, o, args)
		},
	}
	cmd.Flags().StringArrayVarP(&o.changes, "change", "c", nil, "apply a Dockerfile instruction to the created image")
	cmd.Flags().StringVarP(&o.message, "message", "m", "", "set the commit message for the imported image")
	cmd.Flags().BoolVarP(&o.quiet, "quiet", "q", false, "suppress the progress output")
	cmd.Flags().StringVar(&o.platform, "platform", "", "set the platform (os/arch) recorded in the image")
	return cmd
}

// importConfig is docker's image config (which keeps ONBUILD, HEALTHCHECK and SHELL)
// with its top-level "comment".
type importConfig struct {
	dockerspec.DockerOCIImage
	Comment string `json:"comment,omitempty"`
}

func runImport(cmd *cobra.Command, g *globalOptions, o *importOptions, args []string) error {
	var tag string
	if len(args) == 2 {
		n, err := blobstore.ParseNewTag(args[1])
		if err != nil {
			return err
		}
		tag = n.String()
	}
	cfg := importConfig{}
	if err := build.ApplyChanges(&cfg.Config, o.changes); err != nil {
		return err
	}
	cfg.OS, cfg.Architecture = "linux", runtime.GOARCH
	if o.platform != "" {
		p, err := parsePlatform(o.platform)
		if err != nil {
			return err
		}
		// docker import refuses another OS than the daemon's (image.CheckOS):
		// a rootfs recorded as Windows could never be used here
		if err := blobstore.CheckOS(p.OS); err != nil {
			return fmt.Errorf("import --platform %s: %w", o.platform, err)
		}
		cfg.Platform = p
	}
	var in io.Reader = cmd.InOrStdin()
	var total int64 = -1
	src := "stdin"
	msg := o.message
	if msg == "" {
		msg = "Imported from -" // docker sends local files as a stream too
	}
	switch {
	case args[0] == "-":
	case isURL(args[0]):
		// fetched here as docker's daemon fetches it, before the store is touched
		src = args[0]
		body, n, err := openURL(cmd.Context(), src)
		if err != nil {
			return fmt.Errorf("import %s: %w", src, err)
		}
		defer body.Close()
		total, in = n, body
		if o.message == "" {
			msg = "Imported from " + src
		}
	default:
		src = args[0]
		f, err := os.Open(args[0])
		if err != nil {
			return fmt.Errorf("import: %w", err)
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return fmt.Errorf("import: %w", err)
		}
		if fi.IsDir() {
			// refused before the store is touched (a read would fail after it is opened)
			return fmt.Errorf("import %s: is a directory, not a tarball", src)
		}
		total = fi.Size()
		in = f
	}
	s, release, err := openLeased(cmd.Context(), g)
	if err != nil {
		return err
	}
	defer release()
	pr := newProgress("Importing", cmd.ErrOrStderr(), o.quiet)
	var tk blobstore.ProgressTracker
	if p := pr.progress(); p != nil {
		tk = p.Track(args[0], total)
		in = io.TeeReader(in, tk)
	}
	dec, err := blobstore.Decompress(in)
	if err != nil {
		return fmt.Errorf("import %s: %w", src, err)
	}
	defer dec.Close()
	desc, diffID, err := s.AppendLayer(cmd.Context(), checkTar(cmd.Context(), dec), blobstore.Gzip)
	if tk != nil {
		tk.Done(err)
	}
	pr.Finish()
	var bad *badInputError
	if errors.As(err, &bad) {
		return fmt.Errorf("import %s: %w", src, bad.err) // the input, not the store
	}
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	created := nowUTC()
	cfg.Created = &created
	cfg.Comment = msg
	cfg.RootFS = ocispec.RootFS{Type: "layers", DiffIDs: []digestT{diffID}}
	cfg.History = []ocispec.History{{Created: &created, Comment: msg}}
	raw, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	var tags []string
	if tag != "" {
		tags = append(tags, tag)
	}
	img, err := s.WriteImageRaw(cmd.Context(), raw, []ocispec.Descriptor{desc}, blobstore.WithTags(tags...))
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	fmt.Fprintln(cmd.OutOrStdout(), img.ID)
	return nil
}

// isURL is docker's test of an import source: http:// and https:// are fetched.
func isURL(s string) bool {
	return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://")
}

// openURL GETs u (the environment's proxy settings apply) and returns its body,
// streamed, and its length (-1 if not given). A status other than 2xx is an error
// with the status; a failed request's error does not repeat the URL.
func openURL(ctx context.Context, u string) (io.ReadCloser, int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, 0, err
	}
	if resp.StatusCode/100 != 2 {
		resp.Body.Close()
		return nil, 0, fmt.Errorf("HTTP status %s", resp.Status)
	}
	return resp.Body, resp.ContentLength, nil
}

// checkTar passes r through while checking that it is a whole tar stream a layer
// can be made of (cow.CheckLayer with its end-of-archive marker: well formed, not
// cut short, no entry Apply would refuse), as docker import fails on a tar it
// cannot unpack; a stream that is not ends the copy with a *badInputError, before
// anything is stored. A tar of no entries is an empty layer, as in docker's
// scratch idiom (tar c -T /dev/null | docker import -).
//
// A cancelled ctx (SIGTERM, ^C) ends the stream at once, even while the check
// works on input that yields no bytes for a long time (the holes of a huge sparse
// file), which used to keep a terminated import running.
func checkTar(ctx context.Context, r io.Reader) io.Reader {
	pr, pw := io.Pipe()
	stop := context.AfterFunc(ctx, func() { pw.CloseWithError(ctx.Err()) })
	go func() {
		defer stop()
		n, err := cow.CheckLayer(io.TeeReader(r, pw), cow.RequireEndMarker())
		var ee *cow.EntryError
		switch {
		case err == nil:
		case n == 0 && errors.Is(err, cow.ErrTruncated):
			// nothing but zeros, or nothing at all
			err = &badInputError{errors.New("not a tar archive: no entries")}
		case errors.Is(err, io.ErrUnexpectedEOF):
			err = &badInputError{fmt.Errorf("cut short: %w", err)}
		case errors.As(err, &ee):
			err = &badInputError{fmt.Errorf("not a usable rootfs tar: %w", err)}
		case errors.Is(err, tar.ErrHeader) || errors.Is(err, tar.ErrFieldTooLong):
			err = &badInputError{fmt.Errorf("not a tar archive: %w", err)}
		default: // a read or decompression error
			err = &badInputError{err}
		}
		pw.CloseWithError(err) // nil: a normal end
	}()
	return pr
}

// badInputError is what checkTar ends a stream with when the input is at fault.
type badInputError struct{ err error }

func (e *badInputError) Error() string { return e.err.Error() }
func (e *badInputError) Unwrap() error { return e.err }
