package build

import "testing"

// TestParseGitURL: docker's git source forms and their #REF:SUBDIR fragments.
func TestParseGitURL(t *testing.T) {
	for _, tc := range []struct {
		in                  string
		git                 bool
		remote, ref, subdir string
	}{
		{"https://github.com/a/b.git", true, "https://github.com/a/b.git", "", ""},
		{"https://github.com/a/b.git#v1:docs/x", true, "https://github.com/a/b.git", "v1", "docs/x"},
		{"git@github.com:a/b.git#main", true, "git@github.com:a/b.git", "main", ""},
		{"github.com/a/b#:sub", true, "https://github.com/a/b", "", "sub"},
		{"git://h/r.git#:../../etc", true, "git://h/r.git", "", "etc"},
		{"git+ssh://h/r#abc1234", true, "ssh://h/r", "abc1234", ""},
		{"https://example.com/context.tar.gz", false, "", "", ""},
		{"./dir", false, "", "", ""},
	} {
		if got := IsGitURL(tc.in); got != tc.git {
			t.Errorf("IsGitURL(%q) = %v", tc.in, got)
		}
		if !tc.git {
			continue
		}
		g, err := parseGitURL(tc.in)
		if err != nil || g.remote != tc.remote || g.ref != tc.ref || g.subdir != tc.subdir {
			t.Errorf("parseGitURL(%q) = %+v, %v", tc.in, g, err)
		}
	}
	for _, bad := range []string{"git://h/r.git#-upload-pack=x", "git://h/r.git#a b"} {
		if _, err := parseGitURL(bad); err == nil {
			t.Errorf("parseGitURL(%q) accepted", bad)
		}
	}
}
