package mountcmd

// create: docker create. The container is made and its command recorded as run
// would record it, but nothing is mounted or run until start; meanwhile cp can
// put files in it, as docker users do between create and start.

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/layerfs/layerfs/build"
)

func init() { addVerb(newCreateCommand) }

func newCreateCommand(g *globalOptions) *cobra.Command {
	o := &runOptions{}
	cmd := &cobra.Command{
		Use:   "create [OPTIONS] IMAGE [COMMAND] [ARG...]",
		Short: "Create a new container without starting it",
		Long: `Make a working container from IMAGE with what run would run in it (run's
options), print its ID (docker's 64 hex digits), and stop there: start runs it (start -a waits for it),
cp copies files into it first, mount mounts it. A missing image is pulled first
(--pull).`,
		Args: minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.entrypointSet = o.entrypointSet || cmd.Flags().Changed("entrypoint")
			fail := func(err error) error {
				fmt.Fprintf(cmd.ErrOrStderr(), "Error: %v\n", err)
				return exitError{build.ExitSetup} // docker create's 125
			}
			if err := o.check(); err != nil {
				return fail(err)
			}
			if err := pullForRun(cmd, g, o.pull, args[0]); err != nil {
				return fail(err)
			}
			id, err := createContainer(cmd.Context(), g, o, args[0], args[1:])
			if err != nil {
				return fail(err)
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), id)
			return err
		},
	}
	addRunFlags(cmd.Flags(), o)
	cmd.Flags().Bool("help", false, "help for create") // -h is --hostname, as in docker
	return cmd
}

// createContainer makes the container and records its run configuration, and
// returns its ID; the container is complete (not abandoned) once that is saved.
func createContainer(ctx context.Context, g *globalOptions, o *runOptions, ref string, args []string) (string, error) {
	s, err := openStore(g)
	if err != nil {
		return "", err
	}
	img, err := s.Resolve(ref)
	if err != nil {
		return "", imageErr(ref, err)
	}
	if _, err := processSpec(o, img, args); err != nil {
		return "", err
	}
	if o.name != "" {
		w, err := newWorkContainer(g.root, o.name)
		if err != nil {
			return "", err
		}
		if w.nameTaken() {
			return "", errNameInUse(o.name)
		}
	}
	w, st, created, unlock, err := claimContainer(ctx, g, s, o.name, "", img, ref)
	if err != nil {
		return "", err
	}
	defer unlock()
	if !created {
		return "", errNameInUse(w.name)
	}
	hostname := o.hostname
	if hostname == "" {
		hostname = containerID(st)[:12]
	}
	if err := saveRunConfig(w, o, img, args, hostname); err != nil {
		w.remove()
		return "", err
	}
	st.Incomplete = false
	if err := w.save(st); err != nil {
		w.remove()
		return "", err
	}
	return containerID(st), nil
}

// errNameInUse is docker's refusal of a container name that is taken.
func errNameInUse(name string) error {
	return fmt.Errorf("Conflict. The container name %q is already in use. You have to remove (or rename) that container to be able to reuse that name", "/"+name) //nolint:staticcheck // docker's message
}
