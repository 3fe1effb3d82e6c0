package registry

import "time"

// SetRetryDelay sets the wait between a layer's download attempts until the
// returned func puts it back.
func SetRetryDelay(d time.Duration) func() {
	old := retryDelay
	retryDelay = d
	return func() { retryDelay = old }
}
