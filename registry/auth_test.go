package registry

import (
	"context"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/layerfs/layerfs/blobstore"
	"github.com/layerfs/layerfs/registry/registrytest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestAuthFile(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("REGISTRY_AUTH_FILE", "")
	t.Setenv("DOCKER_CONFIG", "")
	for _, tc := range []struct {
		name, explicit, env, dockerConfig, want string
	}{
		{"explicit wins", "/x/auth.json", "/y/auth.json", "/z", "/x/auth.json"},
		{"REGISTRY_AUTH_FILE", "", "/y/auth.json", "/z", "/y/auth.json"},
		{"DOCKER_CONFIG", "", "", "/z", "/z/config.json"},
		{"home", "", "", "", filepath.Join(home, ".docker", "config.json")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("REGISTRY_AUTH_FILE", tc.env)
			t.Setenv("DOCKER_CONFIG", tc.dockerConfig)
			if got := AuthFile(tc.explicit); got != tc.want {
				t.Errorf("AuthFile(%q) = %q, want %q", tc.explicit, got, tc.want)
			}
		})
	}
}

func TestAuthFiles(t *testing.T) {
	t.Setenv("HOME", "/home/u")
	t.Setenv("REGISTRY_AUTH_FILE", "/run/auth.json")
	t.Setenv("DOCKER_CONFIG", "")
	if got := AuthFiles(""); len(got) != 2 || got[0] != "/run/auth.json" || got[1] != "/home/u/.docker/config.json" {
		t.Errorf("AuthFiles(\"\") = %q, want REGISTRY_AUTH_FILE then docker's file", got)
	}
	if got := AuthFiles("/x.json"); len(got) != 1 || got[0] != "/x.json" {
		t.Errorf("AuthFiles(/x.json) = %q, want only it", got)
	}
}

// Credentials found in a later file are used when an earlier one has none.
func TestKeychainFallback(t *testing.T) {
	dir := t.TempDir()
	first, second := filepath.Join(dir, "auth.json"), filepath.Join(dir, "config.json")
	os.WriteFile(first, []byte(`{"auths":{"other.example.com":{"auth":"eDp5"}}}`), 0o600)
	os.WriteFile(second, []byte(`{"auths":{"r.example.com":{"auth":"YWxpY2U6czNjcmV0"}}}`), 0o600)
	kc := Keychain(filepath.Join(dir, "missing.json"), first, second)
	a, err := kc.Resolve(name.MustParseReference("r.example.com/x").Context())
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := a.Authorization()
	if err != nil || cfg.Username != "alice" || cfg.Password != "s3cret" {
		t.Errorf("Keychain fallback = %+v, %v; want alice from the second file", cfg, err)
	}
}

func TestAuthKey(t *testing.T) {
	for in, want := range map[string]string{
		"":                            HubAuthKey,
		"docker.io":                   HubAuthKey,
		"index.docker.io":             HubAuthKey,
		"https://index.docker.io/v1/": HubAuthKey,
		"localhost:5000":              "localhost:5000",
		"http://localhost:5000/":      "localhost:5000",
		"https://r.example.com/v2/":   "r.example.com",
	} {
		if got := authKey(in); got != want {
			t.Errorf("authKey(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestConfig(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "config.json")
	os.WriteFile(p, []byte(`{"registry-mirrors":["https://mirror.example.com"],"insecure-registries":["myregistry:5000","10.0.0.0/8"],"log-level":"debug"}`), 0o644)
	c, err := LoadConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Mirrors) != 1 || c.Mirrors[0] != "https://mirror.example.com" {
		t.Errorf("Mirrors = %v", c.Mirrors)
	}
	for host, want := range map[string]bool{"myregistry:5000": true, "myregistry:5001": false, "10.1.2.3:5000": true, "11.0.0.1": false} {
		if got := c.IsInsecure(host); got != want {
			t.Errorf("IsInsecure(%q) = %v, want %v", host, got, want)
		}
	}
	if _, err := LoadConfig(filepath.Join(dir, "missing.json")); err == nil {
		t.Errorf("LoadConfig of a missing explicit file succeeded")
	}
	os.WriteFile(p, []byte(`{"registry-mirrors":["mirror.example.com"]}`), 0o644)
	if _, err := LoadConfig(p); err == nil || !strings.Contains(err.Error(), "mirror.example.com") {
		t.Errorf("LoadConfig with a mirror without scheme = %v, want an error naming it", err)
	}
	os.WriteFile(p, []byte(`{not json`), 0o644)
	if _, err := LoadConfig(p); err == nil {
		t.Errorf("LoadConfig of bad JSON succeeded")
	}
}

// A credential helper named in credHelpers is asked for the credentials, and login
// stores through it (nothing in the file, no warning).
func TestCredentialHelper(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{Users: map[string]string{"alice": "s3cret"}})
	bin := t.TempDir()
	store := filepath.Join(t.TempDir(), "helper-store")
	// docker-credential-test: get prints alice's credentials; store saves stdin.
	script := "#!/bin/sh\ncase \"$1\" in\n" +
		"get) cat >/dev/null; echo '{\"ServerURL\":\"" + reg.Host + "\",\"Username\":\"alice\",\"Secret\":\"s3cret\"}';;\n" +
		"store) cat > " + store + ";;\n" +
		"erase) cat >/dev/null; rm -f " + store + ";;\n" +
		"*) exit 1;;\nesac\n"
	if err := os.WriteFile(filepath.Join(bin, "docker-credential-test"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	authfile := filepath.Join(t.TempDir(), "config.json")
	os.WriteFile(authfile, []byte(`{"credHelpers":{"`+reg.Host+`":"test"}}`), 0o600)

	r, _ := name.NewRegistry(reg.Host)
	a, err := Keychain(authfile).Resolve(r)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := a.Authorization()
	if err != nil || cfg.Username != "alice" || cfg.Password != "s3cret" {
		t.Errorf("Keychain via credHelpers = %+v, %v; want alice's", cfg, err)
	}
	if a, _ := Keychain(authfile).Resolve(name.MustParseReference("other.example.com/x").Context()); a != authn.Anonymous {
		t.Errorf("Keychain for a registry without credentials = %v, want anonymous", a)
	}

	c := &Client{}
	_, plaintext, err := c.Login(context.Background(), authfile, reg.Host, "alice", "s3cret")
	if err != nil {
		t.Fatalf("Login through a helper: %v", err)
	}
	if plaintext {
		t.Errorf("Login through a helper reported plaintext storage")
	}
	b, _ := os.ReadFile(store)
	if !strings.Contains(string(b), `"Secret":"s3cret"`) {
		t.Errorf("helper got %q, want the secret", b)
	}
	if f, _ := os.ReadFile(authfile); strings.Contains(string(f), "s3cret") || strings.Contains(string(f), `"auth"`) {
		t.Errorf("auth file holds the password with a helper configured: %s", f)
	}
}

// Logout removes credentials stored under a legacy key (older docker logins kept
// the scheme, "https://host:port"), which the keychain still finds, as docker's
// logout does; before, it said it removed them and left them in use.
func TestLogoutLegacyKeys(t *testing.T) {
	for _, key := range []string{"https://r.example.com:5000", "http://r.example.com:5000", "https://r.example.com:5000/v2/"} {
		t.Run(key, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "config.json")
			os.WriteFile(path, []byte(`{"auths":{"`+key+`":{"auth":"YWxpY2U6czNjcmV0"},"other.example.com":{"auth":"eDp5"}}}`), 0o600)
			got, removed, err := Logout(path, "r.example.com:5000")
			if err != nil || !removed || got != "r.example.com:5000" {
				t.Fatalf("Logout = %q, %v, %v; want r.example.com:5000, true, nil", got, removed, err)
			}
			a, err := Keychain(path).Resolve(name.MustParseReference("r.example.com:5000/x").Context())
			if err != nil {
				t.Fatal(err)
			}
			if a != authn.Anonymous {
				cfg, _ := a.Authorization()
				t.Errorf("after Logout the keychain still has %+v", cfg)
			}
			b, _ := os.ReadFile(path)
			if !strings.Contains(string(b), "other.example.com") {
				t.Errorf("Logout removed another registry's credentials: %s", b)
			}
			if _, removed, _ := Logout(path, "r.example.com:5000"); removed {
				t.Errorf("second Logout removed something")
			}
		})
	}
}

// Repository-scoped entries (containers-auth.json(5), what skopeo and podman
// write with --authfile): the most specific key wins, and a scoped entry is
// used for its namespace only; legacy "https://host/..." keys stay
// registry-wide as in docker's config.json. Before, every key was cut to its
// host, so the registry-wide entry won and /bb's credentials went everywhere.
func TestKeychainScopedKeys(t *testing.T) {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	path := filepath.Join(t.TempDir(), "auth.json")
	os.WriteFile(path, []byte(`{"auths":{`+
		`"r.example.com":{"auth":"`+b64("host:h")+`"},`+
		`"r.example.com/ns":{"auth":"`+b64("ns:n")+`"},`+
		`"r.example.com/ns/repo":{"auth":"`+b64("repo:r")+`"},`+
		`"only.example.com/bb":{"auth":"`+b64("bb:b")+`"},`+
		`"https://legacy.example.com/v1/":{"auth":"`+b64("legacy:l")+`"},`+
		`"docker.io/library/busybox":{"auth":"`+b64("hub:b")+`"}}}`), 0o600)
	kc := Keychain(path)
	for ref, want := range map[string]string{
		"r.example.com/ns/repo":          "repo",
		"r.example.com/ns/repo/sub":      "repo",
		"r.example.com/ns/other":         "ns",
		"r.example.com/ns":               "ns",
		"r.example.com/nsx":              "host",
		"r.example.com/x":                "host",
		"only.example.com/bb":            "bb",
		"only.example.com/bb/x":          "bb",
		"only.example.com/other":         "",
		"only.example.com/bbb":           "",
		"legacy.example.com/a/b":         "legacy",
		"busybox":                        "hub",
		"index.docker.io/library/alpine": "",
	} {
		r, err := name.ParseReference(ref)
		if err != nil {
			t.Fatal(err)
		}
		a, err := kc.Resolve(r.Context())
		if err != nil {
			t.Fatalf("%s: %v", ref, err)
		}
		cfg, _ := a.Authorization()
		if cfg.Username != want {
			t.Errorf("credentials for %s = user %q, want %q", ref, cfg.Username, want)
		}
	}
	r, _ := name.NewRegistry("only.example.com")
	if a, _ := kc.Resolve(r); a != authn.Anonymous {
		t.Errorf("a scoped entry was used for the whole registry")
	}
}

// End to end against an htpasswd registry: the right scoped entry beats a
// wrong registry-wide one, and a scoped entry does not open another repository.
func TestScopedAuthPushPull(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{Users: map[string]string{"alice": "s3cret"}})
	ctx := context.Background()
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	dir := t.TempDir()
	scoped2 := filepath.Join(dir, "scoped2.json")
	os.WriteFile(scoped2, []byte(`{"auths":{"`+reg.Host+`":{"auth":"`+b64("alice:WRONG")+`"},"`+
		reg.Host+`/bb":{"auth":"`+b64("alice:s3cret")+`"}}}`), 0o600)
	scoped := filepath.Join(dir, "scoped.json")
	os.WriteFile(scoped, []byte(`{"auths":{"`+reg.Host+`/bb":{"auth":"`+b64("alice:s3cret")+`"}}}`), 0o600)

	st, err := blobstore.Open(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := ocispec.Image{}
	cfg.OS, cfg.Architecture = "linux", "amd64"
	img, err := st.WriteImage(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Tag(ctx, img, "bb:1"); err != nil {
		t.Fatal(err)
	}
	c := &Client{Keychain: Keychain(scoped2)}
	if _, err := c.Push(ctx, st, "bb:1", reg.Host+"/bb:1", PushOptions{}); err != nil {
		t.Fatalf("push with the scoped entry right and the registry's wrong: %v", err)
	}
	if _, err := c.Pull(ctx, st, reg.Host+"/bb:1", PullOptions{}); err != nil {
		t.Fatalf("pull with the scoped entry right and the registry's wrong: %v", err)
	}
	c = &Client{Keychain: Keychain(scoped)}
	if _, err := c.Push(ctx, st, "bb:1", reg.Host+"/other:1", PushOptions{}); !errors.Is(err, ErrDenied) {
		t.Errorf("push to /other with credentials scoped to /bb = %v, want ErrDenied", err)
	}
}
