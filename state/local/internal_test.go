package local

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestPIDAlive(t *testing.T) {
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^$")
	if err := cmd.Run(); err != nil {
		t.Fatalf("run child: %v", err)
	}
	tests := []struct {
		name string
		pid  int
		want bool
	}{
		{"self", os.Getpid(), true},
		{"init", 1, true}, // alive, and EPERM when not root
		{"reaped child", cmd.Process.Pid, false},
		{"zero cannot be judged", 0, true},
		{"negative cannot be judged", -1, true},
	}
	for _, tc := range tests {
		if got := pidAlive(tc.pid); got != tc.want {
			t.Errorf("%s: pidAlive(%d) = %v, want %v", tc.name, tc.pid, got, tc.want)
		}
	}
}

func TestNewIDUnique(t *testing.T) {
	const n = 100_000
	seen := make(map[string]bool, n)
	for range n {
		id := newID()
		if len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
			t.Fatalf("id %q is not 32 hex digits", id)
		}
		if seen[id] {
			t.Fatalf("id %s generated twice", id)
		}
		seen[id] = true
	}
}

func TestLockFileNameInjective(t *testing.T) {
	long := strings.Repeat("x", 200)
	// Lock rejects empty names before they get here.
	names := []string{"a", "A", "a/b", "a%2Fb", "a%252Fb", "a_b", "a-b", "a.b", ".", "..", ".a", "%2Ea",
		"a~b", "é", "\x00", "/", long, long + "1", long + "2", long[:179], long[:180], long[:181]}
	seen := make(map[string]string)
	for _, n := range names {
		f := lockFileName(n)
		if prev, ok := seen[f]; ok {
			t.Errorf("names %q and %q both map to %q", prev, n, f)
		}
		seen[f] = n
		if strings.ContainsAny(f, "/\x00") || strings.HasPrefix(f, ".") || len(f) > 255 || !strings.HasSuffix(f, lockExt) {
			t.Errorf("lockFileName(%q) = %q: not a safe file name", n, f)
		}
	}
}

func TestCheckRunID(t *testing.T) {
	for _, ok := range []string{"a", "0", "r-1.2_3:4@5+6=7", strings.Repeat("z", 128)} {
		if err := checkRunID(ok); err != nil {
			t.Errorf("checkRunID(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{"", ".", "..", "-a", "_a", "a/b", "a\\b", "a b", "a\nb", "é", strings.Repeat("z", 129)} {
		if err := checkRunID(bad); err == nil {
			t.Errorf("checkRunID(%q) = nil, want an error", bad)
		}
	}
}
