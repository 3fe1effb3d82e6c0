package registry

import (
	"context"
	"fmt"
	"sort"

	"github.com/distribution/reference"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/layerfs/layerfs/blobstore"
)

// Tags lists the tags of repo's repository (a name without tag or digest), as
// docker pull --all-tags does, from the first of its endpoints that answers.
func (c *Client) Tags(ctx context.Context, repo string) ([]string, error) {
	named, err := reference.ParseNormalizedNamed(repo)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", blobstore.ErrInvalidReference, repo, err)
	}
	if !reference.IsNameOnly(named) {
		return nil, fmt.Errorf("%w: %s: tag can't be used with --all-tags/-a", blobstore.ErrInvalidReference, repo)
	}
	eps, err := c.endpoints(reference.TagNameOnly(named))
	if err != nil {
		return nil, err
	}
	var last error
	for _, ep := range eps {
		tags, err := remote.List(ep.Context(), c.remoteOptions(ctx, ep)...)
		if err == nil {
			sort.Strings(tags)
			return tags, nil
		}
		last = pullError(named, ep, err)
	}
	return nil, last
}
