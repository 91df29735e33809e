package provider

import (
	"fmt"
	"strings"
)

// FindBoot returns the boot of boots whose kernel is kernel (for example
// "rescue12-customer"). Boot ids differ between servers, and a server may
// offer several rescue boots, so a rescue boot is chosen by kernel name,
// never by id or by position. The error wraps [ErrNotFound] and lists the
// kernels that are available.
func FindBoot(boots []Boot, kernel string) (Boot, error) {
	var have []string
	for _, b := range boots {
		if b.Kernel == kernel {
			return b, nil
		}
		have = append(have, fmt.Sprintf("%s (%s, id %d)", b.Kernel, b.Type, b.ID))
	}
	if len(have) == 0 {
		return Boot{}, fmt.Errorf("no netboot with kernel %q: the server lists no netboots: %w", kernel, ErrNotFound)
	}
	return Boot{}, fmt.Errorf("no netboot with kernel %q; available: %s: %w", kernel, strings.Join(have, ", "), ErrNotFound)
}
