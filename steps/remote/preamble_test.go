package remote

import (
	"bytes"
	"testing"
)

// TestPreambleSkipsLoginNoise feeds what a noisy login shell prints before
// the command, in pieces, and checks only the command's output is kept.
func TestPreambleSkipsLoginNoise(t *testing.T) {
	mk := []byte("__takeover_0123456789abcdef__")
	stream := "pyenv: cannot rehash: shims isn't writable\nmotd __takeover_0123456789abcdef__ inline is not a marker\n" +
		string(mk) + " 4242\nreal output\nline 2\n"
	for _, step := range []int{1, 3, 7, len(stream)} {
		var out bytes.Buffer
		p := &preamble{w: &out, marker: mk, stdout: true}
		for i := 0; i < len(stream); i += step {
			if _, err := p.Write([]byte(stream[i:min(i+step, len(stream))])); err != nil {
				t.Fatal(err)
			}
		}
		if err := p.flush(); err != nil {
			t.Fatal(err)
		}
		if got := out.String(); got != "real output\nline 2\n" {
			t.Errorf("write size %d: output %q", step, got)
		}
		if got := p.pid.Load(); got != 4242 {
			t.Errorf("write size %d: pid %d, want 4242", step, got)
		}
	}
	// No marker at all (the shell never ran the preamble): nothing is lost.
	var out bytes.Buffer
	p := &preamble{w: &out, marker: mk}
	_, _ = p.Write([]byte("sh: syntax error\n"))
	_ = p.flush()
	if out.String() != "sh: syntax error\n" {
		t.Errorf("without a marker: %q", out.String())
	}
}
