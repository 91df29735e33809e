package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// DisallowSkip reports whether skips must fail (CI).
func DisallowSkip() bool { return os.Getenv("TAKEOVER_TEST_DISALLOW_SKIP") == "1" }

// Skip skips t with why, or fails it when skips are disallowed.
func Skip(t testing.TB, why string) {
	t.Helper()
	if DisallowSkip() {
		t.Fatalf("required by CI but unavailable: %s", why)
	}
	t.Skip(why)
}

// MustHaveRoot skips unless running as root.
func MustHaveRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Skip(t, "needs root")
	}
}

// MustHaveCommand skips unless every named binary is on PATH (or an absolute
// path that exists) and returns their resolved paths in order.
func MustHaveCommand(t testing.TB, names ...string) []string {
	t.Helper()
	var paths []string
	for _, n := range names {
		p, err := exec.LookPath(n)
		if err != nil {
			Skip(t, "needs "+n+" (scripts/install-deps.sh installs it)")
		}
		paths = append(paths, p)
	}
	return paths
}

// MustHaveFile skips unless path exists (e.g. /dev/fuse).
func MustHaveFile(t testing.TB, path string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		Skip(t, "needs "+path)
	}
}
