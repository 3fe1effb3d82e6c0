// Command layerfs works with container images as plain directories: an OCI image
// store, a user-space union filesystem with a copy-on-write upper dir, and docker's
// image verbs, without a daemon and without kernel overlayfs.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/layerfs/layerfs/mountcmd"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := mountcmd.Execute(ctx, os.Args)
	stop()
	os.Exit(code)
}
