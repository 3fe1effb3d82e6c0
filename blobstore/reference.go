package blobstore

import (
	"fmt"
	"regexp"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
)

// ParseReference parses s with docker's rules: "busybox" is
// docker.io/library/busybox:latest, "localhost:5000/team/app:1" keeps host and port,
// "name@sha256:..." keeps its digest (no tag is added to a digest reference). Upper
// case, bare 64-hex names and other malformed input give ErrInvalidReference.
func ParseReference(s string) (reference.Named, error) {
	n, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return nil, fmt.Errorf("%w %q: %v", ErrInvalidReference, s, trimRefErr(err))
	}
	return reference.TagNameOnly(n), nil
}

// trimRefErr drops the library's "invalid reference format" prefix we already say.
func trimRefErr(err error) string {
	msg := err.Error()
	const p = "invalid reference format: "
	if len(msg) > len(p) && msg[:len(p)] == p {
		return msg[len(p):]
	}
	if msg == "invalid reference format" {
		return "malformed"
	}
	return msg
}

// ParseTag parses s as a tag reference (no digest), normalised, for tag and --tag.
func ParseTag(s string) (reference.NamedTagged, error) {
	n, err := ParseReference(s)
	if err != nil {
		return nil, err
	}
	if _, ok := n.(reference.Digested); ok {
		return nil, fmt.Errorf("%w %q: refusing to create a tag with a digest reference", ErrInvalidReference, s)
	}
	t, ok := n.(reference.NamedTagged)
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrInvalidReference, s)
	}
	return t, nil
}

// ParseNewTag is ParseTag for a tag about to be created (tag, commit, import,
// build -t, pull): as docker's reference store, it refuses a repository named
// after the digest algorithm ("sha256:abc", which would read as an image ID) with
// ErrAmbiguousTag.
func ParseNewTag(s string) (reference.NamedTagged, error) {
	t, err := ParseTag(s)
	if err != nil {
		return nil, err
	}
	if reference.FamiliarName(t) == string(digest.Canonical) {
		return nil, ErrAmbiguousTag
	}
	return t, nil
}

// FamiliarString is the short form docker prints for a full reference:
// "docker.io/library/busybox:latest" is "busybox:latest". Input that does not parse
// is returned unchanged.
func FamiliarString(ref string) string {
	n, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return ref
	}
	return reference.FamiliarString(n)
}

// FamiliarName is the short repository name: "docker.io/library/busybox:latest" is
// "busybox".
func FamiliarName(ref string) string {
	n, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return ref
	}
	return reference.FamiliarName(n)
}

var hexPrefix = regexp.MustCompile(`^[a-f0-9]{1,64}$`)
