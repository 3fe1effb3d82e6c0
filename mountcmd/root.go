// Package mountcmd holds layerfs's cobra commands: the composition root where the
// image store (blobstore), layer directories (cow) and the union filesystem (fs) meet.
// Each verb group lives in its own file; every RunE is a few lines of wiring.
package mountcmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/layerfs/layerfs/cow"
)

// Version is the layerfs version, set at build time with -ldflags "-X ...Version=".
var Version = "0.1.0-dev"

// globalOptions are the flags every command shares.
type globalOptions struct {
	root  string
	debug bool
}

// exitError carries a specific exit code out of a command (for example rmi's exit 1
// after printing per-argument errors itself).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// exitUsage is docker's exit status for its own usage errors (an unknown flag, a
// flag without its value or with a bad one): 125, as `docker run --bogus`.
const exitUsage = 125

// flagError is a flag that cobra could not parse; Execute exits exitUsage on it.
type flagError struct {
	err     error
	command string // the command's path, for the help hint
}

func (e flagError) Error() string {
	return fmt.Sprintf("%v\nSee '%s --help'.", e.err, e.command)
}

func (e flagError) Unwrap() error { return e.err }

// DefaultRoot is the store root used without --root or LAYERFS_ROOT:
// /var/lib/layerfs for root, $XDG_DATA_HOME/layerfs (or ~/.local/share/layerfs) otherwise.
// A relative XDG_DATA_HOME is ignored, as the XDG base directory spec says, and
// without $HOME the home of the user's passwd entry stands in: a store found
// relative to the caller's directory would be a new, empty one in every other
// directory. "" when there is no home at all (the command then refuses).
func DefaultRoot() string {
	if v := os.Getenv("LAYERFS_ROOT"); v != "" {
		return v
	}
	if os.Geteuid() == 0 {
		return "/var/lib/layerfs"
	}
	if x := os.Getenv("XDG_DATA_HOME"); filepath.IsAbs(x) {
		return filepath.Join(x, "layerfs")
	}
	home := os.Getenv("HOME")
	if !filepath.IsAbs(home) {
		u, err := user.Current()
		if err != nil || !filepath.IsAbs(u.HomeDir) {
			return ""
		}
		home = u.HomeDir
	}
	return filepath.Join(home, ".local", "share", "layerfs")
}

// usesStore reports whether cmd may touch the store root: not version, help or
// the shell completion scripts, which work without a home.
func usesStore(cmd *cobra.Command) bool {
	for c := cmd; c != nil; c = c.Parent() {
		switch c.Name() {
		case "version", "help", "completion", cobra.ShellCompRequestCmd, cobra.ShellCompNoDescRequestCmd:
			return false
		}
	}
	return true
}

// rootOnly annotates the verbs that make containers (run, create, start, restart,
// exec, and build, whose RUN steps are containers): their namespaces, mounts and
// chroot need root. Without it they say so before doing anything, instead of
// failing midway on an EPERM from clone(2) or chown(2), or making a container
// that can never start. The value is the exit status (docker run's 125 for run
// and create).
const rootOnly = "layerfs/root-only"

// checkRootOnly refuses a rootOnly verb to a caller that is not root.
func checkRootOnly(cmd *cobra.Command) error {
	code, ok := cmd.Annotations[rootOnly]
	if !ok || os.Geteuid() == 0 {
		return nil
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "Error: layerfs %s needs root: containers are made with namespaces, mounts and a chroot only root may make (without root, import, load, pull, mount, create, commit, save, export and a build without RUN work)\n", cmd.Name())
	n, err := strconv.Atoi(code)
	if err != nil {
		n = 1
	}
	return exitError{n}
}

// commandAdders register verb groups on the root command; each verb file appends
// its constructor in an init function so files stay independent of each other.
var commandAdders []func(root *cobra.Command, g *globalOptions)

// addVerb registers a verb whose constructor takes the global options; verb files call
// it from init. Groups that need the root command itself append to commandAdders.
func addVerb(newCmd func(g *globalOptions) *cobra.Command) {
	commandAdders = append(commandAdders, func(root *cobra.Command, g *globalOptions) {
		root.AddCommand(newCmd(g))
	})
}

// NewRootCommand builds the layerfs command tree.
func NewRootCommand() *cobra.Command {
	g := &globalOptions{}
	root := &cobra.Command{
		Use:           "layerfs",
		Short:         "Work with container images as plain directories",
		Long:          "layerfs keeps OCI images in a local store and mounts them as directories with a copy-on-write upper dir, without a daemon and without kernel overlayfs.",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       Version,
	}
	root.SetVersionTemplate("layerfs version {{.Version}}\n")
	// Inherited by every subcommand: flag errors exit 125, as docker's do. In a
	// group, a word before the bad flag is a mistyped command ("image export
	// -o f"): that is the error, not a flag the group lacks.
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		if cmd.HasParent() && cmd.HasSubCommands() {
			if args := cmd.Flags().Args(); len(args) > 0 {
				return errUnknownCommand(cmd, args[0])
			}
		}
		return flagError{err: err, command: cmd.CommandPath()}
	})
	root.PersistentFlags().StringVar(&g.root, "root", DefaultRoot(), "store root directory (env LAYERFS_ROOT)")
	root.PersistentFlags().BoolVar(&g.debug, "debug", false, "print debug output")
	// A relative root is made absolute once: the mount server runs from "/", and
	// paths recorded in state.json must not depend on the caller's directory.
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		if g.root == "" {
			if !usesStore(cmd) {
				return nil
			}
			return fmt.Errorf("no store root: $XDG_DATA_HOME and $HOME are unset or relative, and user %d has no home in the passwd database; give --root or LAYERFS_ROOT", os.Geteuid())
		}
		if err := checkRootOnly(cmd); err != nil {
			return err
		}
		abs, err := filepath.Abs(g.root)
		if err != nil {
			return fmt.Errorf("--root %s: %w", g.root, err)
		}
		g.root = abs
		if cow.Unprivileged() && usesStore(cmd) {
			// Every process that may open up a layer's file (the mount
			// server too) journals it; modes a killed one left widened
			// are put back before this one reads a layer.
			j := filepath.Join(g.root, "layers", ".widened")
			cow.SetWidenJournal(j)
			cow.RepairWidened(j)
		}
		return nil
	}
	root.AddCommand(newVersionCommand())
	for _, add := range commandAdders {
		add(root, g)
	}
	// cobra's completion group, made now rather than at Execute so that it
	// refuses an unknown shell as the other groups refuse an unknown command.
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		if c.Name() == "completion" {
			c.Args = groupArgs
			c.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
		}
	}
	guardFreshRoot(root, g)
	attachCompletions(root, g)
	return root
}

// versionInfo is docker version's shape: a Client, and no Server (there is no
// daemon), so scripts' --format '{{.Client.Version}}' work.
type versionInfo struct {
	Client clientVersion
	Server *struct{} // always null
}

type clientVersion struct {
	Platform  struct{ Name string }
	Version   string
	GoVersion string
	GitCommit string
	BuildTime string `json:",omitempty"`
	Os        string
	Arch      string
}

func currentVersion() versionInfo {
	c := clientVersion{Version: Version, GoVersion: runtime.Version(), Os: runtime.GOOS, Arch: runtime.GOARCH}
	c.Platform.Name = "layerfs"
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				c.GitCommit = s.Value
				if len(c.GitCommit) > 7 {
					c.GitCommit = c.GitCommit[:7] // docker's short commit
				}
			case "vcs.time":
				c.BuildTime = s.Value
			}
		}
	}
	return versionInfo{Client: c}
}

func newVersionCommand() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "version [--format TEMPLATE]",
		Short: "Show the layerfs version",
		Long: `Show the layerfs version. --format takes "json" or a Go template over docker
version's names: .Client.Version .Client.GoVersion .Client.GitCommit
.Client.BuildTime .Client.Os .Client.Arch .Client.Platform.Name; .Server is
always empty (there is no daemon).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			switch format {
			case "":
				_, err := fmt.Fprintf(out, "layerfs version %s\n", Version)
				return err
			case "json":
				return writeJSON(out, currentVersion(), "")
			}
			tmpl, _, err := parseFormat(format)
			if err != nil {
				return fmt.Errorf("template parsing error: %w", err)
			}
			if err := tmpl.Execute(out, currentVersion()); err != nil {
				return err
			}
			_, err = fmt.Fprintln(out)
			return err
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "format output: json or a Go template")
	return cmd
}

// preRunHooks run before cobra sees the arguments; one may take over the whole
// invocation (the fuse-overlayfs-compatible mode) by returning handled=true.
var preRunHooks []func(ctx context.Context, args []string, stdout, stderr io.Writer) (code int, handled bool)

// Execute runs layerfs with os.Args-style args and returns the process exit code.
func Execute(ctx context.Context, args []string) int {
	for _, h := range preRunHooks {
		if code, ok := h(ctx, args, os.Stdout, os.Stderr); ok {
			return code
		}
	}
	root := NewRootCommand()
	defer cow.EndWidenJournal() // a normal end removes this process's journal file
	root.SetArgs(args[1:])
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	fmt.Fprintf(os.Stderr, "Error: %v\n", err)
	if errors.As(err, new(flagError)) {
		return exitUsage
	}
	return 1
}
