package registry_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/layerfs/layerfs/registry"
)

// A 403 (or 401) keeps the registry's own message after docker's prefix, on
// one line ("...: denied: proxy says no"), where a registry says why it refuses
// (quota, policy); before, only "access denied" was left of it. The error is
// still ErrDenied.
func TestDeniedKeepsRegistryMessage(t *testing.T) {
	for _, tc := range []struct {
		name, body, want string
		status           int
	}{
		{"403", `{"errors":[{"code":"DENIED","message":"proxy says no"}]}`, ": denied: proxy says no", http.StatusForbidden},
		{"401", `{"errors":[{"code":"UNAUTHORIZED","message":"token expired\nlog in again"}]}`, ": unauthorized: token expired log in again", http.StatusUnauthorized},
		{"two", `{"errors":[{"code":"DENIED","message":"a"},{"code":"TOOMANYREQUESTS","message":"b"}]}`, ": denied: a; toomanyrequests: b", http.StatusForbidden},
		{"no body", ``, ": access denied", http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/v2/" {
					return
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tc.status)
				w.Write([]byte(tc.body))
			}))
			defer srv.Close()
			host := strings.TrimPrefix(srv.URL, "http://")
			ctx := context.Background()
			c := &registry.Client{}

			_, err := c.Pull(ctx, newStore(t), host+"/bb:1", registry.PullOptions{})
			if !errors.Is(err, registry.ErrDenied) {
				t.Fatalf("Pull = %v, want ErrDenied", err)
			}
			want := "pull access denied for " + host + "/bb, repository does not exist or may require 'layerfs login'" + tc.want
			if err.Error() != want {
				t.Errorf("Pull error\n got %q\nwant %q", err, want)
			}

			src := newStore(t)
			makeImage(t, src, "bb:1", map[string]string{"f": "x"})
			_, err = c.Push(ctx, src, "bb:1", host+"/bb:1", registry.PushOptions{})
			if !errors.Is(err, registry.ErrDenied) {
				t.Fatalf("Push = %v, want ErrDenied", err)
			}
			if want := "push access denied for " + host + "/bb" + tc.want + " (try 'layerfs login " + host + "')"; err.Error() != want {
				t.Errorf("Push error\n got %q\nwant %q", err, want)
			}
		})
	}
}
