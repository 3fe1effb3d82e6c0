package build

// Which stages a build runs: as buildkit (dockerfile2llb's
// resolveReachableStages), only the target and the stages it depends on, so
// that an unused stage that fails, or whose base cannot be pulled, does not
// fail the build (the common "test" stage next to "docker build --target app").

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
)

// neededStages reports, by index, the stages the stage target needs: itself, and
// transitively its FROM <stage> base and the stages COPY --from and RUN --mount
// from= name, its own and those of the ONBUILD triggers of a base stage (they run
// in the stage). Only a stage defined before the reference counts, as for FROM
// in buildkit; a reference to a later one is an error when it runs (copyStep).
func (b *builder) neededStages(stages []instructions.Stage, target int) []bool {
	lex := shell.NewLex(b.escape)
	global := shell.EnvsFromSlice(envSlice(b.metaArgs, nil))
	// stageBefore is the stage named ref (a name or an index) defined before
	// stage i, as the build will resolve it then; -1: an image or a context.
	stageBefore := func(ref string, i int) int {
		if strings.Contains(ref, "$") {
			// layerfs expands --from with the stage's ARGs too, which are known
			// only as it runs: every stage before may be the one (anyBefore).
			return anyBefore
		}
		if _, ok := b.namedContext(ref); ok {
			return -1
		}
		if n, err := strconv.Atoi(ref); err == nil { // FROM 1 too, as from() reads b.stages
			if n >= 0 && n < i {
				return n
			}
			return -1
		}
		for j := i - 1; j >= 0; j-- { // the latest of a name wins, as b.stages
			if stages[j].Name != "" && strings.EqualFold(stages[j].Name, ref) {
				return j
			}
		}
		return -1
	}
	base := func(i int) int {
		name, _, err := lex.ProcessWord(stages[i].BaseName, global)
		if err != nil {
			return -1
		}
		return stageBefore(name, i)
	}
	deps := func(i int, cmds []instructions.Command) []int {
		var out []int
		for _, c := range cmds {
			switch c := c.(type) {
			case *instructions.CopyCommand:
				if c.From != "" {
					out = append(out, stageBefore(c.From, i))
				}
			case *instructions.RunCommand:
				for _, m := range instructions.GetMounts(c) {
					if m.From != "" {
						out = append(out, stageBefore(m.From, i))
					}
				}
			}
		}
		return out
	}
	need := make([]bool, len(stages))
	var visit func(i int)
	visitDep := func(d, i int) {
		if d != anyBefore {
			visit(d)
			return
		}
		for j := range i {
			visit(j)
		}
	}
	visit = func(i int) {
		if i < 0 || need[i] {
			return
		}
		need[i] = true
		p := base(i)
		visit(p)
		for _, d := range deps(i, stages[i].Commands) {
			visitDep(d, i)
		}
		if p >= 0 {
			for _, d := range deps(i, onBuildCommands(stages[p])) {
				visitDep(d, i)
			}
		}
	}
	visit(target)
	return need
}

// anyBefore is a stage reference that only the build can resolve (a --from
// with a variable): any stage before the referring one.
const anyBefore = -2

// onBuildCommands are a stage's ONBUILD triggers as commands (those that do
// not parse are left for the stage that runs them to report).
func onBuildCommands(st instructions.Stage) []instructions.Command {
	var out []instructions.Command
	for _, c := range st.Commands {
		ob, ok := c.(*instructions.OnbuildCommand)
		if !ok {
			continue
		}
		res, err := parser.Parse(strings.NewReader(ob.Expression))
		if err != nil {
			continue
		}
		for _, n := range res.AST.Children {
			if tc, err := instructions.ParseCommand(n); err == nil {
				out = append(out, tc)
			}
		}
	}
	return out
}

// unbuiltStage is an error if ref names a stage of the Dockerfile that has not
// been built by now, rather than an image of that name to pull (a registry
// round trip, or a Docker Hub image nobody meant): one defined at or after the
// current stage, as buildkit refuses it, or one the target does not need.
func (b *builder) unbuiltStage(ref string) error {
	if _, ok := b.stages[strings.ToLower(ref)]; ok {
		return nil
	}
	j := -1
	if n, err := strconv.Atoi(ref); err == nil {
		if n >= 0 && n < len(b.df) {
			j = n
		}
	} else {
		// A stage of the name after the current one (an earlier one would
		// be in b.stages) is what the ref means in buildkit.
		for i := range b.df {
			if b.df[i].Name != "" && strings.EqualFold(b.df[i].Name, ref) {
				j = i
				break
			}
		}
	}
	switch {
	case j < 0:
		return nil
	case j >= b.cur:
		return fmt.Errorf("cannot copy from stage %q, it needs to be defined before current stage %q", ref, b.stageName(b.cur))
	default:
		// Only a reference layerfs cannot see before the build (an ONBUILD
		// trigger of a base image, a --from with a stage ARG) gets here.
		return fmt.Errorf("stage %q was not built: the stages the target needs do not name it", ref)
	}
}

// stageName is a stage's name as buildkit's messages give it.
func (b *builder) stageName(i int) string {
	if b.df[i].Name != "" {
		return b.df[i].Name
	}
	return "stage-" + strconv.Itoa(i)
}
