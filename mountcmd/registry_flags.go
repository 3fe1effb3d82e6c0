package mountcmd

import (
	"io"

	"github.com/google/go-containerregistry/pkg/logs"
	"github.com/layerfs/layerfs/registry"
	"github.com/spf13/pflag"
)

// registryFlags are the options every registry verb (pull, push, login, logout) shares.
// The zero value, which run and build pull with, stands for the defaults.
type registryFlags struct {
	authfile  string
	config    string
	certDir   string
	tlsVerify bool
	flags     *pflag.FlagSet // what add registered them on; nil: no command line
}

func (f *registryFlags) add(fs *pflag.FlagSet) {
	f.flags = fs
	fs.StringVar(&f.authfile, "authfile", "", "credentials file in docker's config.json format (default $REGISTRY_AUTH_FILE, falling back to $DOCKER_CONFIG/config.json or ~/.docker/config.json)")
	fs.StringVar(&f.config, "config", "", "config file with registry-mirrors and insecure-registries (default "+registry.DefaultConfigFile+")")
	fs.StringVar(&f.certDir, "cert-dir", "", "directory of extra CA certificates (*.crt) to trust (unused for a registry exempt from verification: see --tls-verify) and of client certificates (*.cert with its *.key) to offer")
	fs.BoolVar(&f.tlsVerify, "tls-verify", true, "require HTTPS and verify certificates; loopback registries (127.0.0.0/8, ::1, localhost) and insecure-registries are exempt, as in docker, unless --tls-verify=true is given explicitly, as in podman; false exempts every registry")
}

// authFile is the credentials file this invocation reads and writes.
func (f *registryFlags) authFile() string { return registry.AuthFile(f.authfile) }

// client builds a registry client from the flags and the config file. With
// --debug, go-containerregistry's request log goes to errOut.
func (f *registryFlags) client(g *globalOptions, errOut io.Writer) (*registry.Client, error) {
	if g.debug {
		logs.Debug.SetOutput(errOut)
		logs.Warn.SetOutput(errOut)
		logs.Progress.SetOutput(errOut)
	}
	cfg, err := registry.LoadConfig(f.config)
	if err != nil {
		return nil, err
	}
	// --tls-verify given (either way) overrides the exemptions; its default
	// leaves them. tlsVerify is false in the zero value: unparsed is the default.
	explicit := f.flags != nil && f.flags.Changed("tls-verify")
	return &registry.Client{
		Keychain:      registry.Keychain(registry.AuthFiles(f.authfile)...),
		Config:        cfg,
		SkipTLSVerify: f.flags != nil && !f.tlsVerify,
		RequireTLS:    explicit && f.tlsVerify,
		CertDir:       f.certDir,
		UserAgent:     "layerfs/" + Version,
	}, nil
}
