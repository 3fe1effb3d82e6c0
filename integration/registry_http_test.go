package integration

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/layerfs/layerfs/registry"
	"github.com/layerfs/layerfs/registry/registrytest"
)

// A registry on a private address (RFC 1918) is reached over HTTPS only unless it
// is listed in insecure-registries, as docker does: go-containerregistry would fall
// back to plain HTTP for such hosts by itself, sending credentials in the clear
// and letting anyone on the path downgrade the connection. The private host is
// reached through an HTTP proxy that is the registry itself, so nothing leaves
// the loopback.
func TestRegistryPrivateAddressNeedsInsecure(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	e := newRegEnv(t)
	img := e.addImage("lan:1", map[string]string{"f": "lan"})
	e.ok("push", "lan:1", reg.Host+"/team/app:1")

	p := newRegEnv(t)
	proxy := "http://" + reg.Host
	for _, k := range []string{"HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"} {
		p.extra = append(p.extra, k+"="+proxy)
	}
	p.extra = append(p.extra, "NO_PROXY=", "no_proxy=")
	const lan = "10.99.0.1:5000"
	ref := lan + "/team/app:1"
	p.fails("plain HTTP refused", "pull", ref)
	if imgs, err := p.store().Images(); err != nil || len(imgs) != 0 {
		t.Errorf("refused pull stored images: %v, %v", imgs, err)
	}

	cfg, _ := json.Marshal(registry.Config{Insecure: []string{lan}})
	if err := os.WriteFile(p.config, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	p.ok("pull", "--config", p.config, ref)
	if got, err := p.store().Resolve(ref); err != nil || got.ManifestDigest != img.ManifestDigest {
		t.Errorf("pull from an insecure private registry = %v, %v; want %s", got, err, img.ManifestDigest)
	}
	p.ok("pull", "--tls-verify=false", lan+"/team/app:1")
}
