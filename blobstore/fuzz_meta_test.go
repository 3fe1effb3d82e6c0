package blobstore

import (
	"archive/tar"
	"fmt"
	"io"
	"maps"
	"sort"
	"strconv"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// FuzzLoadMeta fuzzes what Load parses rather than the tar around it: an
// archive is built from fixed layer blobs and four fuzzed texts (the config, a
// manifest, an extra blob such as a nested index, and index.json or manifest.json),
// each stored under its real digest. The texts name each other through
// placeholders filled in before hashing, so a mutated manifest still points at
// the config and layers, and index.json at the manifest:
//
//	@C @CS @CH     config digest, size, hex
//	@L0 @L0S @L0H  layer 0 (gzip) digest, size, hex; @L1.. layer 1 (plain)
//	@D0 @D1        diffIDs of the layers
//	@M @MS @MH     the manifest; @X @XS @XH the extra blob
//
// layout: bit 0 docker (manifest.json) else OCI (index.json); bit 1 adds
// oci-layout; bit 2 stores the layers under classic docker names
// (<hex>/layer.tar); bit 3 stores the manifest as a symlink to the extra blob;
// bit 4 passes a CheckLayer that refuses layers with an "evil" entry; bit 5
// compresses the archive; bit 6 adds an index.json naming the manifest beside a
// manifest.json (docker save's newer layout).
func FuzzLoadMeta(f *testing.F) {
	fx := metaFixture(f)
	oci := `{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"@M","size":@MS,"annotations":{"org.opencontainers.image.ref.name":"docker.io/library/fz:meta"}}]}`
	docker := `[{"Config":"blobs/sha256/@CH","RepoTags":["fz:meta"],"Layers":["blobs/sha256/@L0H","blobs/sha256/@L1H"]}]`
	nested := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"@M","size":@MS,"platform":{"os":"linux","architecture":"amd64"}}]}`
	f.Add(uint8(0), oci, fx.manifest, fx.config, "")
	f.Add(uint8(2), strings.Replace(oci, `"@M","size":@MS`, `"@X","size":@XS`, 1), fx.manifest, fx.config, fx.manifest)
	f.Add(uint8(1), docker, fx.manifest, fx.config, "")
	f.Add(uint8(1|64), docker, fx.manifest, fx.config, "")
	f.Add(uint8(5), `[{"Config":"@CH.json","RepoTags":["fz:meta","other/x:1"],"Layers":["@L0H/layer.tar","@L1H/layer.tar"]}]`, fx.manifest, fx.config, "")
	f.Add(uint8(0), strings.Replace(strings.Replace(oci, "manifest.v1", "index.v1", 1), `"@M","size":@MS`, `"@X","size":@XS`, 1), fx.manifest, fx.config, nested)
	f.Add(uint8(8), oci, fx.manifest, fx.config, fx.manifest)
	f.Add(uint8(16|32), oci, fx.manifest, fx.config, "")
	f.Add(uint8(0), `{"manifests":[{"digest":"@M","size":1},{"mediaType":"x","digest":"@C"}]}`, `{"layers":[{"digest":"@L0"}]}`, `{"rootfs":{"diff_ids":["@D1"]}}`, "")
	f.Fuzz(func(t *testing.T, layout uint8, meta, manifest, config, extra string) {
		if len(meta)+len(manifest)+len(config)+len(extra) > 64<<10 {
			t.Skip()
		}
		archive, opts := fx.archive(t, layout, meta, manifest, config, extra)
		checkLoad(t, archive, opts)
	})
}

// embeddedIndex is the index.json beside manifest.json (layout bit 6).
const embeddedIndex = `{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"@M","size":@MS}]}`

type metaFix struct {
	layers   [][]byte // as stored: gzip, then plain
	vars     map[string]string
	manifest string // the valid manifest and config, with placeholders
	config   string
}

func metaFixture(t testing.TB) *metaFix {
	a := makeTar(t, tarEntry{Name: "a/file", Body: "layer zero"})
	b := makeTar(t, tarEntry{Name: "b/file", Body: "layer one"}, tarEntry{Name: "a", Link: "b"})
	fx := &metaFix{layers: [][]byte{compressBytes(t, a, Gzip), b}, vars: map[string]string{}}
	for i, raw := range [][]byte{a, b} {
		fx.vars[fmt.Sprintf("@D%d", i)] = sha(raw).String()
		put(fx.vars, fmt.Sprintf("@L%d", i), fx.layers[i])
	}
	fx.config = `{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["@D0","@D1"]},"config":{"Cmd":["/bin/sh"]}}`
	fx.manifest = `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",` +
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"@C","size":@CS},` +
		`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"@L0","size":@L0S},` +
		`{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"@L1","size":@L1S}]}`
	return fx
}

// put records the placeholders of blob b under name (@X: @X, @XS, @XH).
func put(vars map[string]string, name string, b []byte) {
	vars[name] = sha(b).String()
	vars[name+"S"] = strconv.Itoa(len(b))
	vars[name+"H"] = hexOf(b)
}

// fill replaces the placeholders known so far, longest first (@L0S before @L0).
func fill(s string, vars map[string]string) string {
	keys := make([]string, 0, len(vars))
	for k := range vars {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if len(keys[i]) != len(keys[j]) {
			return len(keys[i]) > len(keys[j])
		}
		return keys[i] < keys[j]
	})
	pairs := make([]string, 0, 2*len(keys))
	for _, k := range keys {
		pairs = append(pairs, k, vars[k])
	}
	return strings.NewReplacer(pairs...).Replace(s)
}

func (fx *metaFix) archive(t testing.TB, layout uint8, meta, manifest, config, extra string) ([]byte, LoadOptions) {
	vars := maps.Clone(fx.vars)
	blobs := map[string][]byte{}
	add := func(name, text string) []byte {
		b := []byte(fill(text, vars))
		put(vars, name, b)
		blobs[hexOf(b)] = b
		return b
	}
	add("@C", config)
	mb := add("@M", manifest)
	if extra != "" {
		add("@X", extra)
	}
	var ents []tarEntry
	if layout&2 != 0 {
		ents = append(ents, tarEntry{Name: ocispec.ImageLayoutFile, Body: `{"imageLayoutVersion":"1.0.0"}`})
	}
	for i, l := range fx.layers {
		name := "blobs/sha256/" + hexOf(l)
		if layout&4 != 0 {
			name = fmt.Sprintf("%s/layer.tar", hexOf(l))
			ents = append(ents, tarEntry{Name: hexOf(l) + "/", Type: tar.TypeDir})
		}
		ents = append(ents, tarEntry{Name: name, Body: string(fx.layers[i])})
	}
	for h, b := range blobs {
		name := "blobs/sha256/" + h
		if layout&8 != 0 && extra != "" && string(b) == string(mb) && h != vars["@XH"] {
			ents = append(ents, tarEntry{Name: name, Link: vars["@XH"]})
			continue
		}
		if layout&4 != 0 && h == vars["@CH"] {
			ents = append(ents, tarEntry{Name: h + ".json", Body: string(b)})
		}
		ents = append(ents, tarEntry{Name: name, Body: string(b)})
	}
	metaName := "index.json"
	if layout&1 != 0 {
		metaName = "manifest.json"
		if layout&64 != 0 { // docker save's newer layout: the OCI index beside it
			ents = append(ents, tarEntry{Name: "index.json", Body: fill(embeddedIndex, vars)})
		}
	}
	ents = append(ents, tarEntry{Name: metaName, Body: fill(meta, vars)})
	archive := makeTar(t, sortedEntries(ents)...)
	if layout&32 != 0 {
		archive = compressBytes(t, archive, Gzip)
	}
	var opts LoadOptions
	if layout&16 != 0 {
		opts.CheckLayer = refuseEvil
	}
	return archive, opts
}

// sortedEntries orders entries by name, so that map order does not change the
// archive (a fuzz input must always build the same bytes).
func sortedEntries(ents []tarEntry) []tarEntry {
	sort.SliceStable(ents, func(i, j int) bool { return ents[i].Name < ents[j].Name })
	return ents
}

// refuseEvil is a LoadOptions.CheckLayer: it refuses a tar with an entry named
// "evil", and stops reading at its verdict.
func refuseEvil(r io.Reader) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if strings.Contains(h.Name, "evil") {
			return fmt.Errorf("evil entry %s", h.Name)
		}
	}
}
