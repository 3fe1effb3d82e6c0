package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/docker/cli/cli/config/configfile"
	"github.com/docker/cli/cli/config/types"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// ErrUnauthorized means a registry refused the credentials given to login.
var ErrUnauthorized = errors.New("unauthorized: incorrect username or password")

// HubAuthKey is the key Docker Hub credentials are stored under in config.json.
const HubAuthKey = authn.DefaultAuthKey

// AuthFile is the credentials file login and logout write, in docker's config.json
// format: explicit (from --authfile) if set, else $REGISTRY_AUTH_FILE, else
// $DOCKER_CONFIG/config.json, else ~/.docker/config.json.
func AuthFile(explicit string) string { return AuthFiles(explicit)[0] }

// AuthFiles are the credentials files pulls and pushes read, first match wins:
// only explicit when set; else $REGISTRY_AUTH_FILE, then docker's own file
// ($DOCKER_CONFIG/config.json, or ~/.docker/config.json) as the fallback.
func AuthFiles(explicit string) []string {
	if explicit != "" {
		return []string{explicit}
	}
	var files []string
	if p := os.Getenv("REGISTRY_AUTH_FILE"); p != "" {
		files = append(files, p)
	}
	if d := os.Getenv("DOCKER_CONFIG"); d != "" {
		return append(files, filepath.Join(d, "config.json"))
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = "/"
	}
	return append(files, filepath.Join(home, ".docker", "config.json"))
}

// loadAuthFile reads path (docker's config.json format); a missing file is empty.
func loadAuthFile(path string) (*configfile.ConfigFile, error) {
	cf := configfile.New(path)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return cf, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read auth file: %w", err)
	}
	defer f.Close()
	if err := cf.LoadFromReader(f); err != nil {
		return nil, fmt.Errorf("parse auth file %s: %w", path, err)
	}
	return cf, nil
}

// Keychain resolves credentials from the auth files at paths (see AuthFiles), the
// first file with credentials for a registry winning, honouring each file's
// credHelpers and credsStore (docker-credential-* programs) as docker does. Files
// are read at each lookup, so a login in between is seen; missing files are empty.
func Keychain(paths ...string) authn.Keychain {
	var kcs []authn.Keychain
	for _, p := range paths {
		kcs = append(kcs, fileKeychain{path: p})
	}
	return authn.NewMultiKeychain(kcs...)
}

type fileKeychain struct{ path string }

var _ authn.Keychain = fileKeychain{}

func (k fileKeychain) Resolve(target authn.Resource) (authn.Authenticator, error) {
	cf, err := loadAuthFile(k.path)
	if err != nil {
		return nil, err
	}
	host := authKey(target.RegistryStr())
	// containers-auth.json(5): an entry keyed host/ns/repo or host/ns (no
	// scheme) is for that namespace only, and the most specific one wins over
	// the registry's. A credHelpers entry for the host comes first, as in
	// containers/image (helpers hold no namespaced credentials).
	if _, helper := cf.CredentialHelpers[host]; !helper {
		if cfg, ok := scopedAuth(cf, host, target); ok {
			return authenticator(cfg), nil
		}
	}
	// docker/cli matches every key whose hostname is host (for legacy keys such
	// as "https://host/v1/"), scoped ones too: drop those, so a namespace's
	// credentials never reach another repository. cf is this lookup's own copy.
	for key := range cf.AuthConfigs {
		if _, _, ok := scopedKey(key); ok {
			delete(cf.AuthConfigs, key)
		}
	}
	cfg, err := cf.GetAuthConfig(host)
	if err != nil {
		return nil, fmt.Errorf("credentials for %s: %w", target.RegistryStr(), err)
	}
	cfg.ServerAddress = ""
	if cfg != (types.AuthConfig{}) {
		return authenticator(cfg), nil
	}
	return authn.Anonymous, nil
}

func authenticator(cfg types.AuthConfig) authn.Authenticator {
	return authn.FromConfig(authn.AuthConfig{
		Username:      cfg.Username,
		Password:      cfg.Password,
		Auth:          cfg.Auth,
		IdentityToken: cfg.IdentityToken,
		RegistryToken: cfg.RegistryToken,
	})
}

// scopedKey splits an auth file key naming a namespace or repository
// ("host/ns/repo", no scheme) into its registry's key and the path; keys with
// a scheme are docker's legacy registry-wide forms ("https://host/v1/").
func scopedKey(key string) (host, path string, ok bool) {
	if strings.Contains(key, "://") {
		return "", "", false
	}
	h, path, ok := strings.Cut(key, "/")
	path = strings.TrimSuffix(path, "/")
	if !ok || path == "" {
		return "", "", false
	}
	return authKey(h), path, true
}

// scopedAuth is the credentials of cf's most specific namespaced entry that
// covers target's repository (docker.io/library/x for a hub image too).
func scopedAuth(cf *configfile.ConfigFile, host string, target authn.Resource) (types.AuthConfig, bool) {
	repo, ok := strings.CutPrefix(target.String(), target.RegistryStr()+"/")
	if !ok || repo == "" {
		return types.AuthConfig{}, false
	}
	best, bestLen := types.AuthConfig{}, -1
	for key, cfg := range cf.AuthConfigs {
		h, path, ok := scopedKey(key)
		if !ok || h != host || len(path) <= bestLen || (repo != path && !strings.HasPrefix(repo, path+"/")) {
			continue
		}
		cfg.ServerAddress = ""
		if cfg == (types.AuthConfig{}) {
			continue
		}
		best, bestLen = cfg, len(path)
	}
	return best, bestLen >= 0
}

// IsHub reports whether a login server names Docker Hub ("" does).
func IsHub(server string) bool { return authKey(server) == HubAuthKey }

// authKey maps a registry name to its config.json key: Docker Hub's historical
// URL for the hub, the bare host[:port] otherwise (a scheme or path is dropped).
func authKey(registry string) string {
	r := strings.TrimPrefix(strings.TrimPrefix(registry, "https://"), "http://")
	r, _, _ = strings.Cut(r, "/")
	switch r {
	case "", "docker.io", "index.docker.io", "registry-1.docker.io":
		return HubAuthKey
	}
	return r
}

// Login checks user and password against the registry and, when it accepts them,
// stores them in the auth file at path (through its credential helper if one is
// configured). It returns the key they were stored under and whether they were
// written unencrypted into the file itself (docker/cli's file store then prints
// docker's warning on stderr, once per process, unless nothing changed).
func (c *Client) Login(ctx context.Context, path, registry, user, password string) (key string, plaintext bool, err error) {
	key = authKey(registry)
	host := key
	if key == HubAuthKey {
		host = c.hubOrigin()
	}
	reg, err := c.registry(host)
	if err != nil {
		return key, false, err
	}
	if err := c.checkLogin(ctx, reg, authn.FromConfig(authn.AuthConfig{Username: user, Password: password})); err != nil {
		return key, false, err
	}
	cf, err := loadAuthFile(path)
	if err != nil {
		return key, false, err
	}
	store := cf.GetCredentialsStore(key)
	// The store saves the file; docker/cli's file store itself prints docker's
	// "stored unencrypted" warning on stderr when the password lands in the file.
	if err := store.Store(types.AuthConfig{Username: user, Password: password, ServerAddress: key}); err != nil {
		return key, false, fmt.Errorf("store credentials for %s: %w", key, err)
	}
	helper := cf.CredentialsStore
	if h, ok := cf.CredentialHelpers[key]; ok {
		helper = h
	}
	return key, helper == "", nil
}

// LoginSaved checks the credentials the auth file at path holds for registry,
// as docker login without a username does first: the user they name when the
// registry accepts them, "" when there are none or it refuses them.
func (c *Client) LoginSaved(ctx context.Context, path, registry string) (user string, err error) {
	key := authKey(registry)
	host := key
	if key == HubAuthKey {
		host = c.hubOrigin()
	}
	cf, err := loadAuthFile(path)
	if err != nil {
		return "", err
	}
	cfg, err := cf.GetAuthConfig(key)
	if err != nil {
		return "", fmt.Errorf("credentials for %s: %w", key, err)
	}
	if cfg.Username == "" && cfg.IdentityToken == "" && cfg.RegistryToken == "" {
		return "", nil
	}
	reg, err := c.registry(host)
	if err != nil {
		return "", err
	}
	auth := authn.FromConfig(authn.AuthConfig{Username: cfg.Username, Password: cfg.Password, Auth: cfg.Auth,
		IdentityToken: cfg.IdentityToken, RegistryToken: cfg.RegistryToken})
	if err := c.checkLogin(ctx, reg, auth); err != nil {
		if errors.Is(err, ErrUnauthorized) {
			return "", nil
		}
		return "", err
	}
	return cfg.Username, nil
}

// checkLogin asks the registry's /v2/ endpoint (after any token exchange) whether
// auth is accepted.
func (c *Client) checkLogin(ctx context.Context, reg name.Registry, auth authn.Authenticator) error {
	rt, err := transport.NewWithContext(ctx, reg, auth, c.httpTransport(reg.RegistryStr(), false), nil)
	if err != nil {
		if isUnauthorized(err) {
			return fmt.Errorf("login %s: %w", reg.RegistryStr(), ErrUnauthorized)
		}
		return fmt.Errorf("login %s: %w", reg.RegistryStr(), explainRefusal(oneLine(err)))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, reg.Scheme()+"://"+reg.RegistryStr()+"/v2/", nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: rt}).Do(req)
	if err != nil {
		return fmt.Errorf("login %s: %w", reg.RegistryStr(), explainRefusal(oneLine(err)))
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	switch resp.StatusCode {
	case http.StatusOK:
		return nil
	case http.StatusUnauthorized, http.StatusForbidden:
		return fmt.Errorf("login %s: %w", reg.RegistryStr(), ErrUnauthorized)
	}
	return fmt.Errorf("login %s: unexpected status %s from /v2/", reg.RegistryStr(), resp.Status)
}

// Logout removes the credentials for registry from the auth file at path (and from
// its credential helper), those under legacy keys ("https://host:port") included.
// It reports false when there were none.
func Logout(path, registry string) (key string, removed bool, err error) {
	key = authKey(registry)
	cf, err := loadAuthFile(path)
	if err != nil {
		return key, false, err
	}
	// The file's entries for this registry: its key and, as docker's logout
	// erases them too, legacy keys with a scheme or path ("https://host:port"),
	// which the keychain still finds.
	keys := []string{key}
	if key != HubAuthKey {
		for k := range cf.AuthConfigs {
			if k != key && authKey(k) == key {
				keys = append(keys, k)
			}
		}
	}
	inFile := false
	for _, k := range keys {
		_, ok := cf.AuthConfigs[k]
		inFile = inFile || ok
	}
	store := cf.GetCredentialsStore(key)
	cur, err := store.Get(key)
	if (err != nil || cur.Username == "" && cur.Password == "" && cur.IdentityToken == "") && !inFile {
		return key, false, nil
	}
	if err := store.Erase(key); err != nil && !inFile {
		return key, false, fmt.Errorf("erase credentials for %s: %w", key, err)
	}
	for _, k := range keys {
		delete(cf.AuthConfigs, k)
	}
	if err := cf.Save(); err != nil {
		return key, false, fmt.Errorf("save auth file: %w", err)
	}
	return key, true, nil
}
