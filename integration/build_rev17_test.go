package integration

// COPY and ADD findings of the rev17-build review, end to end through the
// step mounts: ADD confined to its destination, xattrs kept.

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func rev17Tar(t *testing.T, hdrs ...*tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hdrs {
		data := ""
		if h.Typeflag == tar.TypeReg {
			data, h.Linkname = h.Linkname, ""
			h.Size = int64(len(data))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(data))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestBuildAddArchiveConfined: ADD of an archive whose symlink leads out of
// the destination fails the build with one line naming the archive and the
// entry, and writes nothing outside it (finding 2).
func TestBuildAddArchiveConfined(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	ctx := t.TempDir()
	evil := rev17Tar(t,
		&tar.Header{Typeflag: tar.TypeSymlink, Name: "etc", Linkname: "/etc"},
		&tar.Header{Typeflag: tar.TypeReg, Name: "etc/passwd", Linkname: "root::0:0::/root:/bin/sh\n", Mode: 0o644})
	writeFiles(t, ctx, map[string]string{"evil.tar": string(evil), "Dockerfile": "FROM busybox\nADD evil.tar /opt/vendor/\n"})
	r := run(t, "build", "-q", "-t", "evil", ctx)
	want := "ADD failed: unpack evil.tar: entry etc/passwd would land outside /opt/vendor: etc is a symlink to /etc"
	if r.Code == 0 || !strings.Contains(r.Stdout+r.Stderr, want) {
		t.Fatalf("build = exit %d, want a failure with %q\nstdout: %s\nstderr: %s", r.Code, want, r.Stdout, r.Stderr)
	}
	if r := run(t, "image", "inspect", "evil"); r.Code == 0 {
		t.Errorf("the failed build tagged evil")
	}
}

// TestBuildCopyKeepsXattrs: COPY --from an image and ADD of a tar keep file
// capabilities and user xattrs (finding 1).
func TestBuildCopyKeepsXattrs(t *testing.T) {
	requireRunner(t)
	importRunner(t, "busybox", `CMD ["sh"]`)
	capv := make([]byte, 20) // cap_net_raw+ep, VFS_CAP_REVISION_2
	binary.LittleEndian.PutUint32(capv[0:], 0x02000001)
	binary.LittleEndian.PutUint32(capv[4:], 1<<unix.CAP_NET_RAW)
	ctx := t.TempDir()
	img := rev17Tar(t, &tar.Header{Typeflag: tar.TypeReg, Name: "f", Linkname: "bin", Mode: 0o755, Format: tar.FormatPAX,
		PAXRecords: map[string]string{"SCHILY.xattr.security.capability": string(capv), "SCHILY.xattr.user.note": "hi"}})
	writeFiles(t, ctx, map[string]string{"cap.tar": string(img),
		"Dockerfile": "FROM busybox\nCOPY --from=capimg /f /fromimage\nADD cap.tar /added/\n"})
	mustRun(t, "import", "-q", filepath.Join(ctx, "cap.tar"), "capimg")
	mustRun(t, "build", "-q", "-t", "capcopy", ctx)
	m := t.TempDir()
	mustRun(t, "mount", "capcopy", m)
	defer run(t, "umount", m)
	for _, p := range []string{"fromimage", "added/f"} {
		for name, want := range map[string]string{"security.capability": string(capv), "user.note": "hi"} {
			buf := make([]byte, 64)
			n, err := unix.Lgetxattr(filepath.Join(m, p), name, buf)
			if err != nil || string(buf[:n]) != want {
				t.Errorf("/%s %s = %q, %v, want %q", p, name, buf[:max(n, 0)], err, want)
			}
		}
	}
}
