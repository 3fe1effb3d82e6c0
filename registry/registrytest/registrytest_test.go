package registrytest

import (
	"crypto/tls"
	"net/http"
	"testing"
)

func TestStart(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		want int
	}{
		{"plain", Options{}, http.StatusOK},
		{"auth", Options{Users: map[string]string{"alice": "s3cret"}}, http.StatusUnauthorized},
		{"tls", Options{TLS: true}, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := Start(t, tc.opts)
			scheme := "http"
			if tc.opts.TLS {
				scheme = "https"
			}
			c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
			resp, err := c.Get(scheme + "://" + s.Host + "/v2/")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("GET /v2/ = %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
}
