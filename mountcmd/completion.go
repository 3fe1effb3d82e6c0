package mountcmd

// Shell completion of operands and flag values, as docker/cli's
// cli/command/completion does: `stop <TAB>` offers the containers whose command
// runs, `start <TAB>` the others, `rmi <TAB>` the images by repo:tag, `--network
// <TAB>` host and none. cobra's `completion bash|zsh|fish` scripts ask
// `layerfs __complete ARGS...`, which calls the functions attached here.
//
// They run on every TAB, so they only read: the store's index.json and each
// container's state.json and run.json (and /proc for whether its command
// lives). They never open the store (blobstore.Open creates it), take a lock,
// mount, or print an error; with no store they offer nothing.

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/distribution/reference"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/layerfs/layerfs/blobstore"
	"github.com/layerfs/layerfs/registry"
)

// Which containers an operand takes, as docker's ContainerNames filters.
const (
	anyContainer = iota
	runningContainers
	stoppedContainers // start: the ones whose command does not run
)

// complNames is the operand completions of a command: containers of a kind,
// images, or both, for the first limit operands (0: every one). files lets
// the shell fall back to file names when none matches (an operand that may be
// a DIR or a local path); restFiles offers files after the limit (mount's DIR).
type complNames struct {
	containers bool
	state      int
	images     bool
	limit      int
	files      bool
	restFiles  bool
}

// operandCompletions maps a command's path under the root, by the commands'
// names, not aliases ("stop", "container stop", "image rm"), to what its
// operands are.
func operandCompletions() map[string]complNames {
	running := complNames{containers: true, state: runningContainers}
	all := complNames{containers: true}
	first := func(c complNames) complNames { c.limit = 1; return c }
	dirToo := func(c complNames) complNames { c.files = true; return c }
	images := complNames{images: true}
	m := map[string]complNames{
		// docker: stop, kill, exec, top offer running containers; start the
		// exited and created ones; the rest every container.
		"stop":    running,
		"kill":    running,
		"exec":    first(running),
		"top":     first(running),
		"start":   {containers: true, state: stoppedContainers},
		"restart": all,
		"rm":      all,
		"logs":    first(all),
		"wait":    all,
		"rename":  first(all),
		// A working container is often mounted with no command running in
		// it, so commit and diff offer every container (docker's, running
		// ones); these and umount take a DIR too.
		"commit":            first(dirToo(all)),
		"diff":              first(dirToo(all)),
		"umount":            dirToo(all),
		"export":            first(dirToo(complNames{containers: true, images: true})),
		"container inspect": all,
		"inspect":           {containers: true, images: true},
		// Images: docker's ImageNames, limited where the later operands are
		// not images (run's COMMAND, tag's TARGET, push's DESTINATION).
		"rmi":           images,
		"image inspect": images,
		"save":          images,
		"run":           first(images),
		"create":        first(images),
		"history":       first(images),
		"tag":           first(images),
		"push":          first(images),
		// mount IMAGE DIR, or --name NAME DIR: the first may be a DIR, the
		// second is one.
		"mount": {images: true, limit: 1, files: true, restFiles: true},
	}
	for _, c := range []string{"stop", "kill", "exec", "top", "start", "restart", "rm", "logs",
		"wait", "rename", "commit", "diff", "umount", "export", "mount", "run", "create"} {
		m["container "+c] = m[c]
	}
	for _, c := range []string{"history", "tag", "save", "push"} {
		m["image "+c] = m[c]
	}
	m["image rm"] = m["rmi"]
	return m
}

// attachCompletions gives the commands of root's tree their operand and flag
// completions; NewRootCommand calls it once the tree is built.
func attachCompletions(root *cobra.Command, g *globalOptions) {
	ops := operandCompletions()
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		path := strings.TrimPrefix(c.CommandPath(), root.Name()+" ")
		if spec, ok := ops[path]; ok && c.ValidArgsFunction == nil {
			c.ValidArgsFunction = spec.complete(g)
		}
		if c.Name() == "cp" {
			c.ValidArgsFunction = completeCp(g)
		}
		attachFlagCompletions(c, g, path)
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// complete is the ValidArgsFunction of spec.
func (spec complNames) complete(g *globalOptions) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		if spec.limit > 0 && len(args) >= spec.limit {
			if spec.restFiles {
				return nil, cobra.ShellCompDirectiveDefault
			}
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var names []string
		typ := ""
		if f := cmd.Flags().Lookup("type"); f != nil && cmd.Name() == "inspect" {
			typ = f.Value.String()
		}
		if spec.containers && typ != "image" {
			names = append(names, containerNames(g, spec.state)...)
		}
		if spec.images && typ != "container" {
			names = append(names, imageNames(g)...)
		}
		names = withPrefix(names, toComplete)
		if spec.files {
			// Names first; the shell lists files when none matches.
			return names, cobra.ShellCompDirectiveDefault
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	}
}

// completeCp completes cp's two operands: each is CONTAINER:PATH or a local
// path. A word without ':' gets the containers as "NAME:" (no space after), and
// the local files when no name matches; the path inside a container is not
// completed (that would need a mount).
func completeCp(g *globalOptions) cobra.CompletionFunc {
	return func(_ *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		if len(args) >= 2 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		if strings.Contains(toComplete, ":") {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		if strings.ContainsRune(toComplete, '/') || toComplete == "-" {
			return nil, cobra.ShellCompDirectiveDefault // a local path
		}
		var names []string
		for _, n := range withPrefix(containerNames(g, anyContainer), toComplete) {
			names = append(names, n+":")
		}
		if len(names) == 0 {
			return nil, cobra.ShellCompDirectiveDefault
		}
		return names, cobra.ShellCompDirectiveNoSpace | cobra.ShellCompDirectiveDefault
	}
}

// withPrefix keeps the names that start with prefix, sorted, without repeats.
func withPrefix(names []string, prefix string) []string {
	out := names[:0]
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// containerNames are the names of the containers under g's root in the given
// state; a container still being created is left out.
func containerNames(g *globalOptions, state int) []string {
	if g.root == "" {
		return nil
	}
	ws, err := listContainers(g.root)
	if err != nil {
		return nil
	}
	var names []string
	for _, w := range ws {
		st, err := w.load()
		if err != nil || st.Incomplete {
			continue
		}
		if state != anyContainer {
			// run.json naming a live pid 1 is a running command; the mount's
			// own state would take the server lock, which a mount starting
			// meanwhile must not find held.
			if loadRunState(w).alive() != (state == runningContainers) {
				continue
			}
		}
		names = append(names, w.name)
	}
	return names
}

// imageNames are the images' repo:tag names (docker's RepoTags) as the store's
// index.json lists them, read without opening the store.
func imageNames(g *globalOptions) []string {
	if g.root == "" {
		return nil
	}
	b, err := os.ReadFile(filepath.Join(storeDir(g), "index.json"))
	if err != nil {
		return nil
	}
	var idx ocispec.Index
	if json.Unmarshal(b, &idx) != nil {
		return nil
	}
	var names []string
	for _, d := range idx.Manifests {
		switch d.MediaType {
		case ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageIndex,
			blobstore.MediaTypeDockerManifest, blobstore.MediaTypeDockerManifestList:
		default:
			continue
		}
		n, err := blobstore.ParseReference(d.Annotations[ocispec.AnnotationRefName])
		if err != nil {
			continue
		}
		if _, ok := n.(reference.NamedTagged); ok {
			names = append(names, reference.FamiliarString(n))
		}
	}
	return names
}

// linuxPlatforms are the platforms pull and import offer (docker's
// completion.Platforms, less the ones layerfs cannot run or store).
var linuxPlatforms = []string{
	"linux/386", "linux/amd64", "linux/arm", "linux/arm/v5", "linux/arm/v6", "linux/arm/v7",
	"linux/arm64", "linux/arm64/v8", "linux/ppc64le", "linux/s390x", "linux/riscv64",
}

// filterKeys are the --filter keys of the commands that take one, by path.
var filterKeys = map[string][]string{
	"ps":              {"ancestor=", "before=", "exited=", "id=", "label=", "name=", "since=", "status="},
	"images":          {"before=", "dangling=", "label=", "reference=", "since="},
	"container prune": {"until=", "label=", "label!="},
	"image prune":     {"until=", "label=", "label!="},
	"system prune":    {"until=", "label=", "label!="},
}

// attachFlagCompletions registers completions for c's value flags docker
// completes: --network, --format, --platform, --filter, the signals, --pull,
// --restart, inspect's --type and mount's --name.
func attachFlagCompletions(c *cobra.Command, g *globalOptions, path string) {
	fixed := func(vals ...string) cobra.CompletionFunc {
		return func(_ *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
			return withPrefix(slices.Clone(vals), toComplete), cobra.ShellCompDirectiveNoFileComp
		}
	}
	reg := func(name string, fn cobra.CompletionFunc) {
		if c.LocalNonPersistentFlags().Lookup(name) != nil {
			_ = c.RegisterFlagCompletionFunc(name, fn)
		}
	}
	name := c.Name()
	switch name {
	case "build":
		reg("network", fixed("default", "host", "none"))
		reg("platform", fixed(registry.DefaultPlatform()))
	case "run", "create":
		reg("network", fixed("host", "none"))
		reg("platform", fixed(registry.DefaultPlatform()))
		reg("pull", fixed("always", "missing", "never"))
		reg("restart", fixed("no"))
		reg("stop-signal", completeSignals)
		reg("name", cobra.NoFileCompletions)
	case "mount":
		reg("pull", fixed("always", "missing", "never"))
		reg("name", complNames{containers: true}.complete(g))
	case "pull", "import":
		reg("platform", fixed(linuxPlatforms...))
	case "stop", "kill", "restart":
		reg("signal", completeSignals)
	case "inspect":
		reg("type", fixed("container", "image"))
	}
	if name == "save" {
		reg("format", fixed(blobstore.FormatDocker, blobstore.FormatOCI))
	} else {
		reg("format", cobra.NoFileCompletions) // a template
	}
	keys := filterKeys[path]
	switch path {
	case "container ls":
		keys = filterKeys["ps"]
	case "image ls":
		keys = filterKeys["images"]
	}
	if keys != nil {
		reg("filter", completeFilter(keys))
	}
}

// completeFilter offers keys ("status=", no space after), then the values of
// the keys whose values are few.
func completeFilter(keys []string) cobra.CompletionFunc {
	values := map[string][]string{
		"status=":   psStatuses,
		"dangling=": {"true", "false"},
	}
	return func(_ *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		for k, vals := range values {
			if strings.HasPrefix(toComplete, k) && slices.Contains(keys, k) {
				var out []string
				for _, v := range vals {
					out = append(out, k+v)
				}
				return withPrefix(out, toComplete), cobra.ShellCompDirectiveNoFileComp
			}
		}
		return withPrefix(slices.Clone(keys), toComplete), cobra.ShellCompDirectiveNoSpace | cobra.ShellCompDirectiveNoFileComp
	}
}

// completeSignals offers the signal names without SIG, as docker's; in lower
// case to a word begun so (parseSignal takes either).
func completeSignals(_ *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	lower := toComplete != "" && toComplete == strings.ToLower(toComplete)
	var names []string
	for n := unix.Signal(1); n < 32; n++ {
		if s := strings.TrimPrefix(unix.SignalName(n), "SIG"); s != "" {
			if lower {
				s = strings.ToLower(s)
			}
			names = append(names, s)
		}
	}
	return withPrefix(names, toComplete), cobra.ShellCompDirectiveNoFileComp
}
