package build

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// stubsFixture is a rootfs with /etc (and no /proc, /dev, /sys or etc files)
// and its upper dir after the runtime made its mountpoints in it, as a run
// leaves them: etc copied up, the rest new and empty.
func stubsFixture(t *testing.T) (*RuntimePaths, string) {
	t.Helper()
	rootfs, upper := t.TempDir(), t.TempDir()
	mustDo(t, os.MkdirAll(filepath.Join(rootfs, "etc"), 0o755))
	mustDo(t, os.Chmod(filepath.Join(rootfs, "etc"), 0o755))
	mustDo(t, os.WriteFile(filepath.Join(rootfs, "etc/passwd"), []byte("root:x:0:0::/:/bin/sh\n"), 0o644))
	r := NoteRuntimePaths(rootfs, upper)
	for _, d := range []string{"etc", "proc", "dev", "sys"} {
		mustDo(t, os.Mkdir(filepath.Join(upper, d), 0o755))
		mustDo(t, os.Chmod(filepath.Join(upper, d), 0o755))
	}
	for _, f := range []string{"hosts", "resolv.conf", "hostname"} {
		mustDo(t, os.WriteFile(filepath.Join(upper, "etc", f), nil, 0o644))
	}
	return r, upper
}

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestRuntimeStubs: Stubs gives what Undo removes, and only that: not a stub the
// container wrote to, not a dir holding its files, not a copied-up dir it
// changed the mode of; children come before their parents.
func TestRuntimeStubs(t *testing.T) {
	all := []string{"dev", "etc", "etc/hostname", "etc/hosts", "etc/resolv.conf", "proc", "sys"}
	for _, tc := range []struct {
		name   string
		change func(upper string) error
		want   []string
	}{
		{"untouched", func(string) error { return nil }, all},
		{"file added to etc", func(u string) error { return os.WriteFile(filepath.Join(u, "etc/motd"), []byte("x"), 0o644) },
			[]string{"dev", "etc/hostname", "etc/hosts", "etc/resolv.conf", "proc", "sys"}},
		{"stub written", func(u string) error { return os.WriteFile(filepath.Join(u, "etc/hosts"), []byte("x"), 0o644) },
			[]string{"dev", "etc/hostname", "etc/resolv.conf", "proc", "sys"}},
		{"etc chmod", func(u string) error { return os.Chmod(filepath.Join(u, "etc"), 0o700) },
			[]string{"dev", "etc/hostname", "etc/hosts", "etc/resolv.conf", "proc", "sys"}},
		{"made dir chmod", func(u string) error { return os.Chmod(filepath.Join(u, "proc"), 0o700) },
			[]string{"dev", "etc", "etc/hostname", "etc/hosts", "etc/resolv.conf", "sys"}},
		{"made dir chown", func(u string) error { return os.Lchown(filepath.Join(u, "dev"), 5, 5) },
			[]string{"etc", "etc/hostname", "etc/hosts", "etc/resolv.conf", "proc", "sys"}},
		{"file in new dir", func(u string) error { return os.WriteFile(filepath.Join(u, "dev/x"), nil, 0o644) },
			[]string{"etc", "etc/hostname", "etc/hosts", "etc/resolv.conf", "proc", "sys"}},
		{"stub made a dir with a file", func(u string) error {
			if err := os.Remove(filepath.Join(u, "etc/hostname")); err != nil {
				return err
			}
			if err := os.Mkdir(filepath.Join(u, "etc/hostname"), 0o755); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(u, "etc/hostname/f"), nil, 0o644)
		}, []string{"dev", "etc/hosts", "etc/resolv.conf", "proc", "sys"}},
		{"new dir a symlink", func(u string) error {
			if err := os.Remove(filepath.Join(u, "sys")); err != nil {
				return err
			}
			return os.Symlink("/", filepath.Join(u, "sys"))
		}, []string{"dev", "etc", "etc/hostname", "etc/hosts", "etc/resolv.conf", "proc"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, upper := stubsFixture(t)
			mustDo(t, tc.change(upper))
			got := r.Stubs(upper)
			for i, p := range got {
				for _, q := range got[i+1:] {
					if strings.HasPrefix(q, p+"/") {
						t.Errorf("Stubs = %v: %s before its child %s", got, p, q)
					}
				}
			}
			if sorted := slices.Sorted(slices.Values(got)); !slices.Equal(sorted, tc.want) {
				t.Fatalf("Stubs = %v, want %v", sorted, tc.want)
			}

			// Saved and read back (as run saves it for commit and diff).
			b, err := json.Marshal(r)
			mustDo(t, err)
			var back RuntimePaths
			mustDo(t, json.Unmarshal(b, &back))
			if again := back.Stubs(upper); !slices.Equal(again, got) {
				t.Errorf("Stubs after a JSON round trip = %v, want %v", again, got)
			}

			// Undo removes exactly those.
			before := listTree(t, upper)
			r.UndoIn(upper)
			after := listTree(t, upper)
			want := slices.DeleteFunc(before, func(p string) bool { return slices.Contains(got, p) })
			if !slices.Equal(after, want) {
				t.Errorf("after UndoIn: %v, want %v", after, want)
			}
		})
	}
}

// TestRuntimeStubsKeep: a run that starts on the upper dir a killed run left
// (its stubs still there, so present in the rootfs) takes them over with Keep.
func TestRuntimeStubsKeep(t *testing.T) {
	prev, upper := stubsFixture(t)
	b, err := json.Marshal(prev)
	mustDo(t, err)
	var saved RuntimePaths
	mustDo(t, json.Unmarshal(b, &saved))
	// The union of the new run shows the old stubs: here the upper dir itself
	// stands for its rootfs (the lower has only etc/passwd, which does not matter).
	r := NoteRuntimePaths(upper, upper)
	if got := r.Stubs(upper); len(got) != 0 {
		t.Fatalf("Stubs without Keep = %v, want none (the new run sees them as the rootfs's)", got)
	}
	r.Keep(&saved)
	if got, want := slices.Sorted(slices.Values(r.Stubs(upper))), []string{"dev", "etc", "etc/hostname", "etc/hosts", "etc/resolv.conf", "proc", "sys"}; !slices.Equal(got, want) {
		t.Errorf("Stubs after Keep = %v, want %v", got, want)
	}
}

// listTree lists the paths below dir, relative, sorted.
func listTree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	mustDo(t, err)
	slices.Sort(out)
	return out
}
