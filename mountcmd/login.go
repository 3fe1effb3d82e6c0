package mountcmd

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/layerfs/layerfs/registry"
)

func init() {
	addVerb(newLoginCommand)
	addVerb(newLogoutCommand)
}

type loginOptions struct {
	registryFlags
	username      string
	password      string
	passwordStdin bool
}

func newLoginCommand(g *globalOptions) *cobra.Command {
	o := &loginOptions{}
	cmd := &cobra.Command{
		Use:   "login [OPTIONS] [SERVER]",
		Short: "Log in to a registry",
		Long: "Log in to a registry (Docker Hub without SERVER). The credentials are checked " +
			"against the registry, then stored in the auth file in docker's config.json format, " +
			"through its credential helper (credsStore, credHelpers) when one is configured.",
		Args:         maxArgs(1),
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			server := ""
			if len(args) == 1 {
				server = args[0]
			}
			return runLogin(cmd, g, o, server)
		},
	}
	o.registryFlags.add(cmd.Flags())
	cmd.Flags().StringVarP(&o.username, "username", "u", "", "username")
	cmd.Flags().StringVarP(&o.password, "password", "p", "", "password (insecure: use --password-stdin)")
	cmd.Flags().BoolVar(&o.passwordStdin, "password-stdin", false, "take the password from stdin")
	return cmd
}

// warnPasswordFlag is docker's warning for -p, word for word. The warning about an
// unencrypted password comes from docker/cli's credential file store itself.
const warnPasswordFlag = "WARNING! Using --password via the CLI is insecure. Use --password-stdin."

// hubLoginHint is what docker says before prompting for Docker Hub credentials.
const hubLoginHint = "Login with your Docker ID to push and pull images from Docker Hub. If you don't have a Docker ID, head over to https://hub.docker.com to create one."

func runLogin(cmd *cobra.Command, g *globalOptions, o *loginOptions, server string) error {
	out, errOut := cmd.OutOrStdout(), cmd.ErrOrStderr()
	in := cmd.InOrStdin()
	if o.password != "" {
		fmt.Fprintln(errOut, warnPasswordFlag)
		if o.passwordStdin {
			return errors.New("--password and --password-stdin are mutually exclusive")
		}
	}
	if o.passwordStdin {
		if o.username == "" {
			return errors.New("must provide --username with --password-stdin")
		}
		b, err := io.ReadAll(in)
		if err != nil {
			return fmt.Errorf("read password from stdin: %w", err)
		}
		o.password = strings.TrimRight(string(b), "\r\n")
	}
	if o.username == "" && o.password == "" {
		// docker's: saved credentials are tried first, and are enough when
		// the registry takes them.
		c, err := o.client(g, errOut)
		if err != nil {
			return err
		}
		user, err := c.LoginSaved(cmd.Context(), o.authFile(), server)
		if err != nil {
			return err
		}
		if user != "" {
			fmt.Fprintf(out, "Authenticating with existing credentials... [Username: %s]\n", user)
			_, err = fmt.Fprintln(out, "Login Succeeded")
			return err
		}
	}
	r := bufio.NewReader(in)
	if o.username == "" && registry.IsHub(server) {
		fmt.Fprintln(out, hubLoginHint)
	}
	if o.username == "" {
		fmt.Fprint(out, "Username: ")
		line, err := r.ReadString('\n')
		if err != nil && line == "" {
			return errors.New("username required")
		}
		o.username = strings.TrimSpace(line)
	}
	if o.username == "" {
		return errors.New("username required")
	}
	if o.password == "" {
		fmt.Fprint(out, "Password: ")
		pw, err := readPassword(in, r)
		fmt.Fprintln(out)
		if err != nil {
			return err
		}
		o.password = pw
	}
	if o.password == "" {
		return errors.New("password required")
	}
	c, err := o.client(g, errOut)
	if err != nil {
		return err
	}
	path := o.authFile()
	if _, _, err := c.Login(cmd.Context(), path, server, o.username, o.password); err != nil {
		return err
	}
	_, err = fmt.Fprintln(out, "Login Succeeded")
	return err
}

// readPassword reads one line from in without echo when in is a terminal.
func readPassword(in io.Reader, r *bufio.Reader) (string, error) {
	if f, ok := in.(*os.File); ok && isTerminal(f) {
		fd := int(f.Fd())
		old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
		if err == nil {
			noEcho := *old
			noEcho.Lflag &^= unix.ECHO
			noEcho.Lflag |= unix.ICANON | unix.ISIG
			if err := unix.IoctlSetTermios(fd, unix.TCSETS, &noEcho); err == nil {
				defer unix.IoctlSetTermios(fd, unix.TCSETS, old)
			}
		}
	}
	line, err := r.ReadString('\n')
	if err != nil && line == "" {
		return "", errors.New("password required")
	}
	return strings.TrimRight(line, "\r\n"), nil
}

type logoutOptions struct {
	registryFlags
}

func newLogoutCommand(g *globalOptions) *cobra.Command {
	o := &logoutOptions{}
	cmd := &cobra.Command{
		Use:          "logout [SERVER]",
		Short:        "Log out from a registry",
		Long:         "Remove the credentials for SERVER (Docker Hub without SERVER) from the auth file and its credential helper.",
		Args:         maxArgs(1),
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			server := ""
			if len(args) == 1 {
				server = args[0]
			}
			key, removed, err := registry.Logout(o.authFile(), server)
			if err != nil {
				return err
			}
			if !removed {
				_, err = fmt.Fprintf(cmd.OutOrStdout(), "Not logged in to %s\n", key)
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "Removing login credentials for %s\n", key)
			return err
		},
	}
	o.registryFlags.add(cmd.Flags())
	return cmd
}
