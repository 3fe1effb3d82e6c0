package blobstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestPutOpenVerify(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	data := []byte("hello blob")
	d, n, err := s.Put(ctx, bytes.NewReader(data), "")
	if err != nil || d != sha(data) || n != int64(len(data)) {
		t.Fatalf("Put = %s, %d, %v; want %s, %d", d, n, err, sha(data), len(data))
	}
	if _, _, err := s.Put(ctx, bytes.NewReader(data), d); err != nil {
		t.Fatalf("Put again = %v, want idempotent success", err)
	}
	if !s.Has(d) {
		t.Fatalf("Has(%s) = false", d)
	}
	rc, err := s.Open(d)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Open read = %q, %v", got, err)
	}
	// wrong expected digest: nothing stored
	other := []byte("other")
	if _, _, err := s.Put(ctx, bytes.NewReader(other), d); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("Put(mismatch) = %v, want ErrDigestMismatch", err)
	}
	if s.Has(sha(other)) {
		t.Fatalf("mismatched blob was stored")
	}
	ents, _ := os.ReadDir(s.tmpDir())
	if len(ents) != 0 {
		t.Fatalf("temp files left: %v", ents)
	}
	// a damaged blob reads as ErrDigestMismatch at EOF
	if err := os.WriteFile(s.BlobPath(d), []byte("hellO blob"), 0o644); err != nil {
		t.Fatal(err)
	}
	rc, _ = s.Open(d)
	_, err = io.ReadAll(rc)
	rc.Close()
	if !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("read damaged blob = %v, want ErrDigestMismatch", err)
	}
	if _, err := s.Open(sha([]byte("absent"))); !errors.Is(err, ErrNotFound) || !errors.Is(err, ErrMissingBlob) {
		t.Fatalf("Open(absent) = %v, want ErrNotFound and ErrMissingBlob", err)
	}
	if _, err := s.Open("sha256:../../etc"); !errors.Is(err, ErrInvalidDigest) {
		t.Fatalf("Open(bad digest) = %v, want ErrInvalidDigest", err)
	}
}

func TestAppendOpenLayer(t *testing.T) {
	raw := makeTar(t, tarEntry{Name: "etc/hostname", Body: strings.Repeat("layerfs\n", 1000)})
	for _, c := range []Compression{Gzip, Zstd, None} {
		t.Run(string(c), func(t *testing.T) {
			s := newStore(t)
			desc, diffID, err := s.AppendLayer(context.Background(), bytes.NewReader(raw), c)
			if err != nil {
				t.Fatal(err)
			}
			if diffID != sha(raw) {
				t.Errorf("diffID = %s, want %s", diffID, sha(raw))
			}
			if desc.MediaType != LayerMediaType(c) {
				t.Errorf("media type = %s, want %s", desc.MediaType, LayerMediaType(c))
			}
			if c == None && desc.Digest != diffID {
				t.Errorf("uncompressed digest %s != diffID %s", desc.Digest, diffID)
			}
			again, _, err := s.AppendLayer(context.Background(), bytes.NewReader(raw), c)
			if err != nil || again.Digest != desc.Digest {
				t.Errorf("AppendLayer twice = %s, %v; want the same digest %s", again.Digest, err, desc.Digest)
			}
			for _, mt := range []string{desc.MediaType, "application/octet-stream"} { // sniffing fallback
				d := desc
				d.MediaType = mt
				rc, err := s.OpenLayer(d)
				if err != nil {
					t.Fatal(err)
				}
				got, err := io.ReadAll(rc)
				rc.Close()
				if err != nil || !bytes.Equal(got, raw) {
					t.Fatalf("OpenLayer(%s) = %d bytes, %v; want the tar back", mt, len(got), err)
				}
			}
		})
	}
}

func TestOpenLayerDamaged(t *testing.T) {
	s := newStore(t)
	raw := makeTar(t, tarEntry{Name: "a", Body: strings.Repeat("x", 5000)})
	desc, _, err := s.AppendLayer(context.Background(), bytes.NewReader(raw), None)
	if err != nil {
		t.Fatal(err)
	}
	b := append([]byte(nil), raw...)
	b[600] ^= 1
	os.WriteFile(s.BlobPath(desc.Digest), b, 0o644)
	rc, err := s.OpenLayer(desc)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(rc)
	rc.Close()
	if !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("OpenLayer(damaged) read = %v, want ErrDigestMismatch", err)
	}
}

func TestParseReference(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"busybox", "docker.io/library/busybox:latest"},
		{"busybox:1.36", "docker.io/library/busybox:1.36"},
		{"chenwenj/httpd:v2", "docker.io/chenwenj/httpd:v2"},
		{"localhost:5000/team/app:1", "localhost:5000/team/app:1"},
		{"registry.cn-hangzhou.aliyuncs.com/chenwenj/httpd:v3", "registry.cn-hangzhou.aliyuncs.com/chenwenj/httpd:v3"},
		{"busybox@sha256:" + strings.Repeat("a", 64), "docker.io/library/busybox@sha256:" + strings.Repeat("a", 64)},
	} {
		n, err := ParseReference(tc.in)
		if err != nil || n.String() != tc.want {
			t.Errorf("ParseReference(%q) = %v, %v; want %s", tc.in, n, err, tc.want)
		}
	}
	for _, bad := range []string{"BusyBox", "busybox:", strings.Repeat("a", 64), "a b", "", "-x", "busybox@sha256:abc"} {
		if _, err := ParseReference(bad); !errors.Is(err, ErrInvalidReference) {
			t.Errorf("ParseReference(%q) = %v, want ErrInvalidReference", bad, err)
		}
	}
	if _, err := ParseTag("busybox@sha256:" + strings.Repeat("a", 64)); !errors.Is(err, ErrInvalidReference) {
		t.Errorf("ParseTag(digest) = %v, want ErrInvalidReference", err)
	}
	for in, want := range map[string]string{
		"docker.io/library/busybox:latest": "busybox:latest",
		"localhost:5000/team/app:1":        "localhost:5000/team/app:1",
		"docker.io/chenwenj/httpd:v2":      "chenwenj/httpd:v2",
		"Not A Ref":                        "Not A Ref",
	} {
		if got := FamiliarString(in); got != want {
			t.Errorf("FamiliarString(%q) = %q, want %q", in, got, want)
		}
	}
}

func writeTestImage(t testing.TB, s *Store, ti *testImage) *Image {
	t.Helper()
	ctx := context.Background()
	var layers []ocispec.Descriptor
	for i, l := range ti.layers {
		d, n, err := s.Put(ctx, bytes.NewReader(l), "")
		if err != nil {
			t.Fatal(err)
		}
		layers = append(layers, ocispec.Descriptor{MediaType: LayerMediaType(ti.comps[i]), Digest: d, Size: n})
	}
	img, err := s.WriteImageRaw(ctx, ti.config, layers)
	if err != nil {
		t.Fatal(err)
	}
	for _, tag := range ti.tags {
		if err := s.Tag(ctx, img, tag); err != nil {
			t.Fatal(err)
		}
	}
	img, err = s.reload(img.ManifestDigest)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestTagResolve(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	a := writeTestImage(t, s, newTestImage(t, "a", 1, Gzip, "busybox"))
	b := writeTestImage(t, s, newTestImage(t, "b", 2, Zstd))
	if want := []string{"docker.io/library/busybox:latest"}; len(a.Tags) != 1 || a.Tags[0] != want[0] {
		t.Fatalf("tags = %v, want %v", a.Tags, want)
	}
	idx, _ := s.readIndex()
	if idx.Manifests[0].Annotations[ocispec.AnnotationRefName] != "docker.io/library/busybox:latest" {
		t.Fatalf("index.json ref.name = %v", idx.Manifests[0].Annotations)
	}
	for _, ref := range []string{"busybox", "busybox:latest", "docker.io/library/busybox:latest", a.ID.String(), a.ID.Encoded(), a.ID.Encoded()[:5], "sha256:" + a.ID.Encoded()[:7], "busybox@" + a.ManifestDigest.String(), a.ManifestDigest.String()} {
		img, err := s.Resolve(ref)
		if err != nil || img.ID != a.ID {
			t.Errorf("Resolve(%q) = %v, %v; want %s", ref, img, err, a.ID)
		}
	}
	if img, err := s.Resolve(b.ID.Encoded()[:12]); err != nil || img.ID != b.ID {
		t.Errorf("Resolve(b prefix) = %v, %v", img, err)
	}
	for _, ref := range []string{"nosuch", "busybox:2", "sha256:" + strings.Repeat("0", 64)} {
		if _, err := s.Resolve(ref); !errors.Is(err, ErrNotFound) {
			t.Errorf("Resolve(%q) = %v, want ErrNotFound", ref, err)
		}
	}
	if _, err := s.Resolve("BusyBox"); !errors.Is(err, ErrInvalidReference) {
		t.Errorf("Resolve(upper) = %v, want ErrInvalidReference", err)
	}
	// moving a tag leaves the old image untagged, still listed
	if err := s.Tag(ctx, b, "busybox"); err != nil {
		t.Fatal(err)
	}
	imgs, _ := s.Images()
	if len(imgs) != 2 {
		t.Fatalf("Images = %d, want 2 (the old one dangling)", len(imgs))
	}
	for _, img := range imgs {
		if img.ID == a.ID && len(img.Tags) != 0 {
			t.Errorf("old image tags = %v, want none", img.Tags)
		}
		if img.ID == b.ID && len(img.Tags) != 1 {
			t.Errorf("new image tags = %v, want busybox", img.Tags)
		}
	}
	if err := s.Tag(ctx, b, "Bad:Tag"); !errors.Is(err, ErrInvalidReference) {
		t.Errorf("Tag(invalid) = %v, want ErrInvalidReference", err)
	}
	if err := s.Untag(ctx, "nosuch:tag"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Untag(absent) = %v, want ErrNotFound", err)
	}
}

func TestTagConcurrent(t *testing.T) {
	s := newStore(t)
	img := writeTestImage(t, s, newTestImage(t, "c", 1, Gzip))
	errc := make(chan error, 2)
	for w := 0; w < 2; w++ {
		go func(w int) {
			s2, err := Open(s.Dir()) // separate handles, as separate processes have
			if err != nil {
				errc <- err
				return
			}
			for i := 0; i < 50; i++ {
				if err := s2.Tag(context.Background(), img, fmt.Sprintf("app:w%d-%d", w, i)); err != nil {
					errc <- err
					return
				}
			}
			errc <- nil
		}(w)
	}
	for i := 0; i < 2; i++ {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Resolve(img.ID.String())
	if err != nil || len(got.Tags) != 100 {
		t.Fatalf("tags after concurrent tagging = %d, %v; want 100", len(got.Tags), err)
	}
}
