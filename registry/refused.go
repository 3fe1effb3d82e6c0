package registry

import "strings"

// go-containerregistry (since v0.22; google/go-containerregistry#2258, #2302)
// refuses, against server-side request forgery, to send requests a registry
// points it at on a private, loopback or link-local IP literal of another host:
//
//   - a bearer token realm, unless it is the registry's own host:port
//     (transport.validateRealmURL; a token server's redirects too);
//   - a redirect of a manifest or blob download to another host
//     (remote.checkRedirectSSRF): a storage backend that serves blobs;
//   - an upload's Location on another host (the remote writer).
//
// Host names are let through (DNS is out of the check's scope), and so is the
// registry's own host. The checks cannot be turned off, and layerfs keeps them:
// docker, podman and skopeo have none, so a registry they use may fail here.
// refusals match the library's messages (it returns no typed errors for them)
// to say what was refused and how to get around it.
var refusals = []struct {
	match []string // all in the error's text
	hint  string
}{
	{[]string{"SSRF protection: Location header redirects to private/link-local host"},
		"refused by go-containerregistry's SSRF check: an upload location on a private, loopback or link-local IP literal of another host; " +
			"have the registry name itself by host name: distribution's http.host"},
	{[]string{"SSRF protection: redirect from"},
		"refused by go-containerregistry's SSRF check: a redirect to a private, loopback or link-local IP literal of another host; " +
			"have the registry redirect to its storage backend by host name, or serve blobs itself: distribution's storage.redirect.disable"},
	{[]string{"realm host", "is a private or link-local address"},
		"refused by go-containerregistry's SSRF check: a token server on a private, loopback or link-local IP literal must be the registry's own host:port; " +
			"give the realm by host name in the registry's token auth config, e.g. http://localhost:PORT/token"},
}

// explainRefusal adds its hint to an error of go-containerregistry's SSRF
// checks (see refusals); other errors are returned as they are.
func explainRefusal(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	for _, r := range refusals {
		all := true
		for _, m := range r.match {
			all = all && strings.Contains(msg, m)
		}
		if all {
			return ssrfError{err, r.hint}
		}
	}
	return err
}

// ssrfError is an error of an SSRF check with what to do about it.
type ssrfError struct {
	err  error
	hint string
}

func (e ssrfError) Error() string { return e.err.Error() + " (" + e.hint + ")" }
func (e ssrfError) Unwrap() error { return e.err }
