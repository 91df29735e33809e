package remote

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
)

// OutputLimit caps what Run keeps of a command's stdout and of its stderr,
// and what ReadFile accepts. Output beyond it is drained and dropped, and
// Run reports ErrOutputLimit.
const OutputLimit = 16 << 20

// ErrOutputLimit: a command's output or a file exceeded OutputLimit.
var ErrOutputLimit = errors.New("output limit exceeded")

// stderrTail is how much of stderr an ExitError quotes.
const stderrTail = 512

// Result is what a remote command produced.
type Result struct {
	Stdout, Stderr []byte
	// ExitCode is the command's exit status, 128+n when killed by signal n,
	// and -1 when it is unknown (cancelled, connection lost).
	ExitCode int
}

// ExitError reports a remote command that exited with a non-zero status.
type ExitError struct {
	Addr   string
	Cmd    string
	Code   int
	Stderr string // the last bytes of stderr, trimmed
}

func (e *ExitError) Error() string {
	cmd := e.Cmd
	if i := strings.IndexByte(cmd, '\n'); i >= 0 {
		cmd = cmd[:i] + " …" // a script: its first line names it; the journal keeps errors short
	}
	if len(cmd) > 160 {
		cmd = cmd[:160] + "…"
	}
	msg := fmt.Sprintf("run %q on %s: exit status %d", cmd, e.Addr, e.Code)
	if e.Stderr != "" {
		msg += ": " + e.Stderr
	}
	return msg
}

// capBuffer keeps the first limit bytes written to it and counts the rest.
type capBuffer struct {
	mu      sync.Mutex
	buf     []byte
	limit   int
	dropped int64
}

func (b *capBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	room := b.limit - len(b.buf)
	if room >= len(p) {
		b.buf = append(b.buf, p...)
	} else {
		b.buf = append(b.buf, p[:max(room, 0)]...)
		b.dropped += int64(len(p) - max(room, 0))
	}
	return len(p), nil
}

func (b *capBuffer) bytes() ([]byte, int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]byte(nil), b.buf...), b.dropped
}

func tail(b []byte, n int) string {
	s := strings.TrimSpace(string(b))
	if len(s) > n {
		s = "..." + s[len(s)-n:]
	}
	return s
}

// Run runs cmd through the remote user's shell, feeding it stdin (nil for
// none; it is read until EOF). It returns the command's output and exit
// code. A non-zero exit returns the Result and an *ExitError. When ctx is
// done, Run sends SIGKILL to the remote command, closes the session and
// returns an error wrapping ctx.Err(); processes the command started in the
// background may survive it.
func (c *Client) Run(ctx context.Context, cmd string, stdin io.Reader) (Result, error) {
	res := Result{ExitCode: -1}
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("run %q on %s: %w", cmd, c.addr, err)
	}
	sess, err := c.conn.NewSession()
	if err != nil {
		return res, fmt.Errorf("open session on %s for %q: %w", c.addr, cmd, err)
	}
	defer sess.Close()
	stdout := &capBuffer{limit: OutputLimit}
	stderr := &capBuffer{limit: OutputLimit}
	var mark [8]byte
	_, _ = rand.Read(mark[:])
	marker := []byte("__takeover_" + hex.EncodeToString(mark[:]) + "__")
	leader := &preamble{w: stdout, marker: marker, stdout: true}
	errPre := &preamble{w: stderr, marker: marker}
	sess.Stdout, sess.Stderr = leader, errPre
	if stdin != nil {
		sess.Stdin = stdin
	}
	start := time.Now()
	// The shell first prints a marker line with its pid (sshd makes it a
	// session and process group leader, so on cancellation the whole group
	// can be killed) on stdout, and the marker on stderr: what a login
	// script printed before it is not the command's output.
	pre := fmt.Sprintf("printf '%%s %%s\\n' %s $$; printf '%%s\\n' %s >&2\n", marker, marker)
	if err := sess.Start(pre + cmd); err != nil {
		return res, fmt.Errorf("start %q on %s: %w", cmd, c.addr, err)
	}
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()

	var waitErr error
	select {
	case waitErr = <-done:
	case <-ctx.Done():
		c.kill(ctx, sess, leader)
		sess.Close()
		// Wait returns once the session is torn down, unless a stdin
		// reader blocks; don't hang on it.
		grace := time.NewTimer(5 * time.Second)
		select {
		case <-done:
		case <-grace.C:
		}
		grace.Stop()
		res.Stdout, _ = stdout.bytes()
		res.Stderr, _ = stderr.bytes()
		c.log.Debug().Str("addr", c.addr).Str("cmd", cmd).Dur("elapsed", time.Since(start)).
			Msg("remote command cancelled")
		return res, fmt.Errorf("run %q on %s: %w", cmd, c.addr, ctx.Err())
	}
	_ = leader.flush()
	_ = errPre.flush()
	var outDropped, errDropped int64
	res.Stdout, outDropped = stdout.bytes()
	res.Stderr, errDropped = stderr.bytes()

	var exitErr *ssh.ExitError
	switch {
	case waitErr == nil:
		res.ExitCode = 0
	case errors.As(waitErr, &exitErr):
		res.ExitCode = exitErr.ExitStatus()
	default:
		return res, fmt.Errorf("run %q on %s: %w", cmd, c.addr, waitErr)
	}
	c.log.Debug().Str("addr", c.addr).Str("cmd", cmd).Int("exit", res.ExitCode).
		Dur("elapsed", time.Since(start)).Msg("remote command")
	if outDropped > 0 || errDropped > 0 {
		return res, fmt.Errorf("run %q on %s: %w: dropped %d bytes of stdout and %d of stderr beyond %d",
			cmd, c.addr, ErrOutputLimit, outDropped, errDropped, OutputLimit)
	}
	if res.ExitCode != 0 {
		return res, &ExitError{Addr: c.addr, Cmd: cmd, Code: res.ExitCode, Stderr: tail(res.Stderr, stderrTail)}
	}
	return res, nil
}

// kill stops a cancelled command. OpenSSH refuses "signal" requests in
// root sessions, so the command's process group is also killed from a new
// session.
func (c *Client) kill(ctx context.Context, sess *ssh.Session, leader *preamble) {
	_ = sess.Signal(ssh.SIGKILL)
	pid := leader.pid.Load()
	if pid <= 1 {
		return
	}
	kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	ks, err := c.conn.NewSession()
	if err != nil {
		return
	}
	defer ks.Close()
	done := make(chan error, 1)
	go func() { done <- ks.Run(fmt.Sprintf("kill -KILL -- -%d", pid)) }()
	select {
	case err = <-done:
	case <-kctx.Done():
		err = kctx.Err()
	}
	if err != nil {
		c.log.Warn().Err(err).Str("addr", c.addr).Int64("pgid", pid).Msg("kill cancelled remote command")
	}
}

// preamble skips what the remote login shell prints before the command
// runs (a noisy ~/.bashrc: bash reads it for sshd sessions) and, on stdout,
// reads the shell's pid from the marker line. Everything up to and
// including the marker line is dropped; if no marker comes (a shell that
// did not run the preamble), flush passes the buffered bytes through.
type preamble struct {
	w      io.Writer
	marker []byte
	buf    []byte
	done   bool
	stdout bool // the marker line carries the pid: "MARKER PID"
	pid    atomic.Int64
}

// preambleLimit bounds what is buffered while looking for the marker.
const preambleLimit = 64 << 10

func (s *preamble) Write(p []byte) (int, error) {
	n := len(p)
	if s.done {
		_, err := s.w.Write(p)
		return n, err
	}
	s.buf = append(s.buf, p...)
	for {
		i := bytes.Index(s.buf, s.marker)
		if i < 0 {
			if len(s.buf) > preambleLimit {
				return n, s.flush()
			}
			return n, nil
		}
		// the marker must start a line
		if i > 0 && s.buf[i-1] != '\n' {
			s.buf = append(s.buf[:i:i], s.buf[i+len(s.marker):]...)
			continue
		}
		nl := bytes.IndexByte(s.buf[i:], '\n')
		if nl < 0 {
			return n, nil // the rest of the marker line is still coming
		}
		line := s.buf[i+len(s.marker) : i+nl]
		if s.stdout {
			if pid, err := strconv.ParseInt(string(bytes.TrimSpace(line)), 10, 64); err == nil {
				s.pid.Store(pid)
			}
		}
		rest := s.buf[i+nl+1:]
		s.buf, s.done = nil, true
		_, err := s.w.Write(rest)
		return n, err
	}
}

// flush passes through whatever was buffered without a marker.
func (s *preamble) flush() error {
	if s.done {
		return nil
	}
	s.done = true
	b := s.buf
	s.buf = nil
	_, err := s.w.Write(b)
	return err
}

// RunQuiet runs cmd without stdin and returns only its error (an
// *ExitError quoting stderr's tail on a non-zero exit); output is dropped.
func (c *Client) RunQuiet(ctx context.Context, cmd string) error {
	_, err := c.Run(ctx, cmd, nil)
	return err
}
