package blobstore

import (
	"fmt"
	"strings"
)

// unsupportedOS words a refusal as docker's pull does, and is ErrUnsupportedOS.
type unsupportedOS struct{ os string }

func (e unsupportedOS) Error() string {
	return fmt.Sprintf("image operating system %q cannot be used on this platform", e.os)
}

func (unsupportedOS) Is(target error) bool { return target == ErrUnsupportedOS }

// CheckOS refuses an image config's os unless it is linux, as docker's
// image.CheckOS does on Linux (load, pull, import): the comparison ignores case,
// and an empty os is taken for linux (docker's Image.OperatingSystem). The error
// is ErrUnsupportedOS and names the os; callers add the image's name.
func CheckOS(os string) error {
	if os == "" || strings.EqualFold(os, "linux") {
		return nil
	}
	return unsupportedOS{os: os}
}
