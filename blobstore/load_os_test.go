package blobstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// withOS gives ti's config another os (a Windows image, say).
func withOS(t testing.TB, ti *testImage, os string) *testImage {
	t.Helper()
	var c map[string]any
	if err := json.Unmarshal(ti.config, &c); err != nil {
		t.Fatal(err)
	}
	if os == "" {
		delete(c, "os")
	} else {
		c["os"] = os
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	ti.config = b
	return ti
}

// An image for another OS than Linux is refused, as docker load refuses it
// ("cannot load windows image on linux"), with an error naming the image, and
// the store is left as it was: also when the archive holds a Linux image too.
func TestLoadRefusesOtherOS(t *testing.T) {
	for _, tc := range []struct {
		name    string
		archive func() []byte
		want    string // in the error
	}{
		{"docker-windows", func() []byte {
			return classicDockerArchive(t, withOS(t, newTestImage(t, "win", 1, None, "win:1"), "windows"))
		}, `image win:1: image operating system "windows"`},
		{"docker-windows-untagged", func() []byte {
			ti := withOS(t, newTestImage(t, "win", 1, None), "windows")
			return classicDockerArchive(t, ti)
		}, "image sha256:"},
		{"docker-windows-beside-linux", func() []byte {
			return classicDockerArchive(t, newTestImage(t, "lin", 1, Gzip, "lin:1"),
				withOS(t, newTestImage(t, "win", 2, Gzip, "win:2"), "Windows"))
		}, `image win:2: image operating system "Windows"`},
		{"oci-windows", func() []byte {
			return ociArchive(t, withOS(t, newTestImage(t, "win", 1, Gzip, "docker.io/library/win:3"), "windows"))
		}, `image win:3: image operating system "windows"`},
		{"oci-freebsd", func() []byte {
			return ociArchive(t, withOS(t, newTestImage(t, "bsd", 1, None, "example.com/bsd:1"), "freebsd"))
		}, `image example.com/bsd:1: image operating system "freebsd"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			load(t, s, classicDockerArchive(t, newTestImage(t, "base", 1, None, "base:latest")))
			before := snapshot(t, s.Dir())
			_, err := s.Load(context.Background(), bytes.NewReader(tc.archive()), LoadOptions{})
			if !errors.Is(err, ErrUnsupportedOS) {
				t.Fatalf("Load = %v, want %v", err, ErrUnsupportedOS)
			}
			if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("Load = %q, want one line with %q", err, tc.want)
			}
			if d := diffSnapshots(before, snapshot(t, s.Dir())); d != "" {
				t.Fatalf("store changed by a refused load:\n%s", d)
			}
		})
	}
}

// A config without os is Linux's, as docker takes it; LINUX in any case too.
func TestLoadTakesLinuxOS(t *testing.T) {
	for _, os := range []string{"", "linux", "Linux"} {
		s := newStore(t)
		if l := load(t, s, classicDockerArchive(t, withOS(t, newTestImage(t, "x", 1, None, "x:1"), os))); len(l) != 1 {
			t.Errorf("os %q: Load = %d images, want 1", os, len(l))
		}
	}
}
