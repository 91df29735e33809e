package remote

import (
	"bytes"
	"context"
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
	leader := &pidSniffer{w: stdout}
	sess.Stdout, sess.Stderr = leader, stderr
	if stdin != nil {
		sess.Stdin = stdin
	}
	start := time.Now()
	// The shell first prints its pid: sshd makes it a session and process
	// group leader, so on cancellation the whole group can be killed.
	if err := sess.Start("echo $$\n" + cmd); err != nil {
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
func (c *Client) kill(ctx context.Context, sess *ssh.Session, leader *pidSniffer) {
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

// pidSniffer takes the first line written to it as a pid and passes the
// rest on to w.
type pidSniffer struct {
	w    io.Writer
	line []byte
	done bool
	pid  atomic.Int64
}

func (s *pidSniffer) Write(p []byte) (int, error) {
	n := len(p)
	if !s.done {
		i := bytes.IndexByte(p, '\n')
		if i < 0 && len(s.line)+len(p) < 32 {
			s.line = append(s.line, p...)
			return n, nil
		}
		s.done = true
		if i < 0 { // not a pid line: pass everything through
			p = append(s.line, p...)
		} else {
			s.line = append(s.line, p[:i]...)
			if pid, err := strconv.ParseInt(string(s.line), 10, 64); err == nil {
				s.pid.Store(pid)
			}
			p = p[i+1:]
		}
	}
	if _, err := s.w.Write(p); err != nil {
		return 0, err
	}
	return n, nil
}

// RunQuiet runs cmd without stdin and returns only its error (an
// *ExitError quoting stderr's tail on a non-zero exit); output is dropped.
func (c *Client) RunQuiet(ctx context.Context, cmd string) error {
	_, err := c.Run(ctx, cmd, nil)
	return err
}
