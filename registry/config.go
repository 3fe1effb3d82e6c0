package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
)

// DefaultConfigFile is read when no --config is given; a missing file is no error.
const DefaultConfigFile = "/etc/layerfs/config.json"

// Config is the registry part of layerfs's config file. Its keys are docker
// daemon.json's, so an existing /etc/docker/daemon.json works as it is:
//
//	{"registry-mirrors": ["https://mirror.example.com"], "insecure-registries": ["myregistry:5000", "10.0.0.0/8"]}
type Config struct {
	// Mirrors are tried in order, before the origin, for images on Docker Hub.
	// Each is a URL with a scheme: http:// talks plain HTTP to the mirror.
	Mirrors []string `json:"registry-mirrors,omitempty"`
	// Insecure lists registries ("host[:port]") and networks (CIDR) reached without
	// certificate verification, falling back to plain HTTP.
	Insecure []string `json:"insecure-registries,omitempty"`
}

// LoadConfig reads a config file. When path is "" it reads DefaultConfigFile and
// treats its absence as an empty config; an explicit path must exist.
func LoadConfig(path string) (Config, error) {
	var c Config
	explicit := path != ""
	if !explicit {
		path = DefaultConfigFile
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && !explicit {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("read config: %w", err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("parse config %s: %w", path, err)
	}
	for _, m := range c.Mirrors {
		if _, err := parseMirror(m); err != nil {
			return c, fmt.Errorf("parse config %s: %w", path, err)
		}
	}
	return c, nil
}

// IsInsecure reports whether host ("name[:port]") is listed in Insecure, by name or
// by an address inside one of its CIDR networks.
func (c Config) IsInsecure(host string) bool {
	h := host
	if hh, _, err := net.SplitHostPort(host); err == nil {
		h = hh
	}
	ip := net.ParseIP(h)
	for _, e := range c.Insecure {
		e = strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(e, "https://"), "http://"), "/")
		if e == host || e == h {
			return true
		}
		if _, n, err := net.ParseCIDR(e); err == nil && ip != nil && n.Contains(ip) {
			return true
		}
	}
	return false
}

// mirror is one parsed registry-mirrors entry.
type mirror struct {
	host string // host[:port]
	http bool   // plain HTTP
}

func parseMirror(s string) (mirror, error) {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return mirror{}, fmt.Errorf("registry mirror %q: want http://host[:port] or https://host[:port]", s)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil || strings.Trim(u.Path, "/") != "" {
		return mirror{}, fmt.Errorf("registry mirror %q: no path, user, query or fragment allowed", s)
	}
	return mirror{host: u.Host, http: u.Scheme == "http"}, nil
}
