package integration

// Build behaviours a review found to differ from docker's (BuildKit); each test
// is the reproduction of one finding.

import (
	"strings"
	"testing"
)

// TestBuildOnlyNeededStages: only the stages the target needs are built, as
// BuildKit does: through FROM <stage>, COPY --from (name and index), RUN
// --mount from= and a base stage's ONBUILD COPY --from. A failing stage or
// one on an image nobody can pull that the target does not need does not fail
// the build, with --target or without.
func TestBuildOnlyNeededStages(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	ctx := t.TempDir()
	writeFiles(t, ctx, map[string]string{
		"Dockerfile": `FROM busybox AS test
RUN echo running-tests; exit 1
FROM busybox AS app
RUN echo app > /app
`,
		"Dockerfile.graph": `FROM nosuch-image:1 AS tools
RUN false
FROM busybox AS a
RUN echo a > /a
FROM busybox AS b
RUN echo b > /b
FROM busybox AS c
RUN echo c > /c
FROM busybox AS onb
ONBUILD COPY --from=b /b /b
FROM onb AS mid
RUN --mount=from=a,target=/m cp /m/a /a
COPY --from=3 /c /c
FROM busybox AS unused
RUN exit 7
FROM mid
RUN echo final
`,
	})
	out := mustRun(t, "build", "--target", "app", "-t", "app", ctx)
	if strings.Contains(out, "running-tests") {
		t.Errorf("--target app ran the test stage:\n%s", out)
	}
	if got := mustRun(t, "run", "--rm", "app", "cat", "/app"); got != "app\n" {
		t.Errorf("/app = %q, want app", got)
	}
	out = mustRun(t, "build", "-f", ctx+"/Dockerfile.graph", "-t", "graph", ctx)
	for _, skipped := range []string{"nosuch-image", "exit 7"} {
		if strings.Contains(out, skipped) {
			t.Errorf("built a stage the target does not need (%s):\n%s", skipped, out)
		}
	}
	if got := mustRun(t, "run", "--rm", "graph", "cat", "/a", "/b", "/c"); got != "a\nb\nc\n" {
		t.Errorf("stages the target needs: /a /b /c = %q", got)
	}
	// A --from with a stage's own ARG is known only as the stage runs: the
	// stages before it are built (a review found "stage builder was not built").
	writeFiles(t, ctx, map[string]string{"Dockerfile.arg": `FROM busybox AS builder
RUN echo built > /f
FROM busybox
ARG X=builder
COPY --from=$X /f /f
`})
	mustRun(t, "build", "-f", ctx+"/Dockerfile.arg", "-t", "argfrom", ctx)
	if got := mustRun(t, "run", "--rm", "argfrom", "cat", "/f"); got != "built\n" {
		t.Errorf("COPY --from=$X with a stage ARG: /f = %q", got)
	}
}

// TestBuildCopyFromLaterStage: COPY --from naming a stage defined after the
// current one is an error naming both stages (BuildKit's), not a pull of an
// image of that name.
func TestBuildCopyFromLaterStage(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	ctx := t.TempDir()
	writeFiles(t, ctx, map[string]string{"Dockerfile": `FROM busybox AS first
COPY --from=later /x /x
FROM busybox AS later
RUN touch /x
FROM first
`})
	r := run(t, "build", ctx)
	want := `cannot copy from stage "later", it needs to be defined before current stage "first"`
	if r.Code == 0 || !strings.Contains(r.Stderr, want) || strings.Contains(r.Stderr, "pull") {
		t.Errorf("COPY --from a later stage: exit %d, stderr %q, want %q", r.Code, r.Stderr, want)
	}
}

// TestBuildStageInheritsArgs: a stage FROM another stage starts with that
// stage's ARGs, --build-arg values included (docker docs: "automatically
// inherited by child stages"; BuildKit's dispatchState.init); a stage FROM an
// image does not get them.
func TestBuildStageInheritsArgs(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	ctx := t.TempDir()
	writeFiles(t, ctx, map[string]string{"Dockerfile": `FROM busybox AS parent
ARG FOO=123
ARG BAR
FROM parent AS child
ENV E=$FOO
RUN echo "FOO=$FOO BAR=${BAR-unset} E=$E" > /child
FROM busybox AS other
RUN echo "FOO=${FOO-unset}" > /other
FROM child
COPY --from=other /other /other
`})
	mustRun(t, "build", "-t", "inh", ctx)
	if got := mustRun(t, "run", "--rm", "inh", "cat", "/child", "/other"); got != "FOO=123 BAR=unset E=123\nFOO=unset\n" {
		t.Errorf("without build args: %q", got)
	}
	mustRun(t, "build", "--build-arg", "FOO=7", "--build-arg", "BAR=b", "-t", "inh2", ctx)
	if got := mustRun(t, "run", "--rm", "inh2", "cat", "/child", "/other"); got != "FOO=7 BAR=b E=7\nFOO=unset\n" {
		t.Errorf("with --build-arg FOO=7 BAR=b: %q", got)
	}
}

// TestBuildWorkdirOwnerAfterNumericUser: WORKDIR after USER <uid> makes the dir
// uid:uid, as BuildKit and layerfs's own COPY --chown=<uid> do (it made it
// uid:0, or uid:<passwd gid>); after USER <unknown name> it is root's and the
// build goes on, as in BuildKit (it failed).
func TestBuildWorkdirOwnerAfterNumericUser(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	ctx := t.TempDir()
	writeFiles(t, ctx, map[string]string{"Dockerfile": `FROM busybox
RUN mkdir -p /etc && echo "app:x:1001:1002::/:/bin/sh" > /etc/passwd
USER 1000
WORKDIR /w1000
USER 1001
WORKDIR /w1001
USER app
WORKDIR /wapp
USER nosuch
WORKDIR /wnosuch
USER 0
COPY --chown=1000 Dockerfile /c1000
`})
	mustRun(t, "build", "-t", "wd", ctx)
	got := mustRun(t, "run", "--rm", "wd", "stat", "-c", "%n %u:%g", "/w1000", "/w1001", "/wapp", "/wnosuch", "/c1000")
	want := "/w1000 1000:1000\n/w1001 1001:1001\n/wapp 1001:1002\n/wnosuch 0:0\n/c1000 1000:1000\n"
	if got != want {
		t.Errorf("owners = %q, want %q", got, want)
	}
}
