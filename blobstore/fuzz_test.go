package blobstore

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzLoad feeds arbitrary bytes to Load: it must never panic, and a failed load
// must leave the store as it was (and write nothing outside it).
func FuzzLoad(f *testing.F) {
	img := newTestImage(f, "fz", 1, Gzip, "fz:latest")
	f.Add(ociArchive(f, img))
	f.Add(classicDockerArchive(f, img))
	f.Add(makeTar(f, tarEntry{Name: "../x", Body: "y"}))
	f.Add([]byte{0x1f, 0x8b, 0x08})
	f.Fuzz(func(t *testing.T, data []byte) {
		parent := t.TempDir()
		s, err := Open(filepath.Join(parent, "store"))
		if err != nil {
			t.Fatal(err)
		}
		before := snapshot(t, s.Dir())
		_, err = s.Load(context.Background(), bytes.NewReader(data), LoadOptions{})
		if err != nil {
			if d := diffSnapshots(before, snapshot(t, s.Dir())); d != "" {
				t.Fatalf("failed load (%v) changed the store:\n%s", err, d)
			}
		}
		ents, _ := os.ReadDir(parent)
		if len(ents) != 1 {
			t.Fatalf("load wrote outside the store: %v", ents)
		}
	})
}

// FuzzParseReference: whatever parses is normalised (parsing it again is a no-op)
// and never upper case.
func FuzzParseReference(f *testing.F) {
	for _, s := range []string{"busybox", "localhost:5000/a/b:1", "a@sha256:" + strings.Repeat("0", 64), "UPPER", strings.Repeat("f", 64)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseReference(s)
		if err != nil {
			return
		}
		again, err := ParseReference(n.String())
		if err != nil || again.String() != n.String() {
			t.Fatalf("ParseReference(%q) = %s, which reparses as %v, %v", s, n, again, err)
		}
	})
}
