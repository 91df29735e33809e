package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"
	"github.com/takeover-dev/takeover/provider"
	"github.com/takeover-dev/takeover/provider/ovh"
	"github.com/takeover-dev/takeover/runbooks"
	"github.com/takeover-dev/takeover/state"
	"github.com/takeover-dev/takeover/steps"
	"gopkg.in/ini.v1"
)

// providerOptions select credentials for the runbook's provider account.
type providerOptions struct {
	OVHConf string
}

func (o *providerOptions) addFlags(f flagSet) {
	f.StringVar(&o.OVHConf, "ovh-conf", os.Getenv("TAKEOVER_OVH_CONF"), "an ovh.conf file to read credentials from, in addition to go-ovh's own (/etc/ovh.conf, ~/.ovh.conf, ./ovh.conf, OVH_* variables) (env TAKEOVER_OVH_CONF)")
}

type flagSet interface {
	StringVar(p *string, name, value, usage string)
}

func loadRunbook(path string) (*runbooks.Runbook, error) {
	rb, err := runbooks.Load(path)
	if err != nil {
		var list runbooks.ErrorList
		if errors.As(err, &list) {
			return nil, withHint(&usageError{fmt.Errorf("runbook %s is not valid:\n%w", path, err)},
				fmt.Sprintf("\"takeover runbook validate %s\" lists every problem; runbooks/README.md documents each key", path))
		}
		return nil, &usageError{fmt.Errorf("read runbook: %w", err)}
	}
	return rb, nil
}

// newProvider connects to the runbook's provider account.
func newProvider(rb *runbooks.Runbook, po providerOptions, log zerolog.Logger) (provider.Provider, error) {
	switch rb.Provider.Kind {
	case "ovh":
		cfg := ovh.Config{Endpoint: rb.Provider.Endpoint, Log: log.With().Str("component", "ovh").Logger()}
		if po.OVHConf != "" {
			f, err := ini.Load(po.OVHConf)
			if err != nil {
				return nil, fmt.Errorf("read --ovh-conf %s: %w", po.OVHConf, err)
			}
			sec := f.Section(rb.Provider.Endpoint)
			cfg.AppKey = sec.Key("application_key").String()
			cfg.AppSecret = sec.Key("application_secret").String()
			cfg.ConsumerKey = sec.Key("consumer_key").String()
			if cfg.AppKey == "" {
				return nil, withHint(fmt.Errorf("--ovh-conf %s has no application_key in section [%s]", po.OVHConf, rb.Provider.Endpoint),
					"the section must be named after the runbook's provider.endpoint")
			}
		}
		c, err := ovh.New(cfg)
		if err != nil {
			return nil, withHint(fmt.Errorf("ovh client for %s: %w", rb.Provider.Endpoint, err),
				"credentials come from ovh.conf (/etc/ovh.conf, ~/.ovh.conf, ./ovh.conf, --ovh-conf) or OVH_APPLICATION_KEY, OVH_APPLICATION_SECRET, OVH_CONSUMER_KEY")
		}
		return c, nil
	default:
		return nil, &usageError{fmt.Errorf("runbook %s: provider kind %q is not supported (supported: ovh)", rb.File, rb.Provider.Kind)}
	}
}

func newRunID(rb *runbooks.Runbook, now time.Time) string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%s-%s", rb.Name, now.UTC().Format("20060102-150405"), hex.EncodeToString(b[:]))
}

func whoami() (who, host string) {
	who = os.Getenv("TAKEOVER_OPERATOR")
	if who == "" {
		if u, err := user.Current(); err == nil {
			who = u.Username
		} else {
			who = fmt.Sprint(os.Getuid())
		}
	}
	host, _ = os.Hostname()
	return who, host
}

// leaseTTL is how long a lock outlives a silent orchestrator.
const leaseTTL = 30 * time.Second

// lockSet holds the leases of one run.
type lockSet struct {
	leases []state.Lease
	stop   context.CancelFunc
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup
}

// lockAll takes every named lock or none. The returned context is cancelled
// when any lease is lost, so the runner stops before its next side effect.
func lockAll(ctx context.Context, st state.Store, names []string, run, op string, log zerolog.Logger) (context.Context, *lockSet, error) {
	who, host := whoami()
	names = append([]string(nil), names...)
	sort.Strings(names)
	ls := &lockSet{}
	for _, n := range names {
		l, err := st.Lock(ctx, state.LockInfo{Name: n, Run: run, Who: who, Host: host, PID: os.Getpid(), Op: op}, leaseTTL)
		if err != nil {
			ls.release(log)
			return nil, nil, fmt.Errorf("lock %s: %w", n, err)
		}
		ls.leases = append(ls.leases, l)
	}
	rctx, cancel := context.WithCancelCause(ctx)
	wctx, stop := context.WithCancel(context.Background())
	ls.stop, ls.cancel = stop, cancel
	for _, l := range ls.leases {
		ls.wg.Add(1)
		go func(l state.Lease) {
			defer ls.wg.Done()
			keepLease(wctx, l, cancel, log)
		}(l)
	}
	return rctx, ls, nil
}

// keepLease refreshes l every few seconds until wctx ends. It cancels the
// run when the store says the lease is lost, or when the lease's expiry
// passed on the wall clock without a successful refresh: the monotonic
// clock stands still while a laptop sleeps, the wall clock does not, and
// after a suspend longer than the TTL someone else may hold the lock. A
// refresh that fails for a moment (a store hiccup) is retried until then.
func keepLease(wctx context.Context, l state.Lease, cancel context.CancelCauseFunc, log zerolog.Logger) {
	name := l.Info().Name
	// expires is a wall-clock time (Round(0) drops the monotonic reading)
	expires := time.Now().Round(0).Add(leaseTTL)
	t := time.NewTicker(leaseRefresh)
	defer t.Stop()
	for {
		select {
		case <-wctx.Done():
			return
		case <-l.Lost():
			cancel(fmt.Errorf("lease on %s lost: %w", name, state.ErrLeaseLost))
			return
		case <-t.C:
			now := time.Now().Round(0)
			if now.After(expires.Add(-leaseMargin)) {
				log.Error().Str("lock", name).Time("expired", expires).Msg("lease not refreshed in time (suspended?); stopping the run")
				cancel(fmt.Errorf("lease on %s expired at %s without a refresh: %w", name, expires.Format(time.RFC3339), state.ErrLeaseLost))
				return
			}
			err := l.Refresh(wctx)
			switch {
			case err == nil:
				expires = now.Add(leaseTTL)
			case wctx.Err() != nil:
				return
			case errors.Is(err, state.ErrLeaseLost):
				log.Error().Err(err).Str("lock", name).Msg("lease lost; stopping the run")
				cancel(fmt.Errorf("refresh lease on %s: %w", name, err))
				return
			default:
				log.Warn().Err(err).Str("lock", name).Time("expires", expires).Msg("lease refresh failed; retrying until it expires")
			}
		}
	}
}

// leaseRefresh is how often leases are refreshed; leaseMargin is how long
// before its expiry an unrefreshed lease stops the run.
const (
	leaseRefresh = 5 * time.Second
	leaseMargin  = 5 * time.Second
)

// release gives every lease up, even after the run's context ended.
func (ls *lockSet) release(log zerolog.Logger) {
	if ls == nil {
		return
	}
	if ls.stop != nil {
		ls.stop()
		ls.wg.Wait()
	}
	if ls.cancel != nil {
		defer ls.cancel(nil)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, l := range ls.leases {
		wg.Add(1)
		go func(l state.Lease) { // in parallel: against a dead store each waits its timeout
			defer wg.Done()
			if err := l.Release(ctx); err != nil {
				log.Error().Err(err).Str("lock", l.Info().Name).Msg("release lock")
			}
		}(l)
	}
	wg.Wait()
}

// progress prints step transitions on stdout: one line per start and end,
// with elapsed times. On a terminal it also keeps a live last line with the
// steps running now and how long they have run.
type progress struct {
	w       io.Writer
	start   time.Time
	tty     bool
	mu      sync.Mutex
	running map[string]time.Time
	status  bool // a live status line is on screen
	paused  bool // a prompt owns the terminal
	stop    chan struct{}
	// closeOnce guards stop, which tick reads without the mutex
	closeOnce sync.Once
}

// pause stops (or restarts) the live line while a prompt owns the terminal.
func (p *progress) pause(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clear()
	p.paused = on
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w, start: time.Now(), running: map[string]time.Time{}}
	if f, ok := w.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
		p.tty = true
		p.stop = make(chan struct{})
		go p.tick(p.stop)
	}
	return p
}

func (p *progress) tick(stop <-chan struct{}) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			p.mu.Lock()
			p.redraw()
			p.mu.Unlock()
		}
	}
}

// close stops the live line.
func (p *progress) close() {
	p.closeOnce.Do(func() {
		if p.stop != nil {
			close(p.stop)
		}
	})
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clear()
}

func (p *progress) clear() {
	if p.status {
		fmt.Fprint(p.w, "\r\033[K")
		p.status = false
	}
}

func (p *progress) redraw() {
	p.clear()
	if !p.tty || p.paused || len(p.running) == 0 {
		return
	}
	names := make([]string, 0, len(p.running))
	for n := range p.running {
		names = append(names, n)
	}
	sort.Strings(names)
	var parts []string
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s %s", n, fmtDur(time.Since(p.running[n]).Round(100*time.Millisecond))))
	}
	fmt.Fprintf(p.w, "  … %s", strings.Join(parts, ", "))
	p.status = true
}

// Write lets steps print progress lines without tearing the live line.
func (p *progress) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clear()
	n, err := p.w.Write(b)
	p.redraw()
	return n, err
}

func (p *progress) event(ev steps.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clear()
	switch ev.State {
	case steps.StateRunning, steps.StateUndoing:
		p.running[ev.Step] = time.Now()
	default:
		delete(p.running, ev.Step)
	}
	at := time.Since(p.start).Round(100 * time.Millisecond)
	verb := map[steps.State]string{
		steps.StateRunning: "start", steps.StateDone: "done", steps.StateFailed: "FAILED",
		steps.StateSkipped: "skipped", steps.StateUndoing: "undo", steps.StateUndone: "undone",
	}[ev.State]
	if verb == "" {
		verb = string(ev.State)
	}
	line := fmt.Sprintf("[%7s] %-8s %-22s", fmtDur(at), verb, ev.Step)
	if ev.Server != "" {
		line += " " + ev.Server
	}
	if ev.Elapsed > 0 {
		line += fmt.Sprintf("  (%s)", fmtDur(ev.Elapsed))
	}
	if ev.Note != "" {
		line += "  " + ev.Note
	}
	if ev.Err != nil && ev.State == steps.StateFailed {
		var se *steps.StepError
		msg := ev.Err.Error()
		if errors.As(ev.Err, &se) {
			msg = se.Err.Error()
		}
		line += "\n          " + msg
	}
	fmt.Fprintln(p.w, strings.TrimRight(line, " "))
	p.redraw()
}

func fmtDur(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%dms", d.Milliseconds())
	}
	if d < time.Minute {
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	return d.Round(time.Second).String()
}

// stdinPrompter asks on stdout and reads a line from stdin.
type stdinPrompter struct {
	in    *bufio.Reader
	out   io.Writer
	who   string
	mu    sync.Mutex
	pause func(bool) // stops the live progress line while asking; may be nil
}

func (p *stdinPrompter) Confirm(ctx context.Context, question, token string) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pause != nil {
		p.pause(true)
		defer p.pause(false)
	}
	fmt.Fprintf(p.out, "\n%s\nType %q to go on: ", question, token)
	type res struct {
		s   string
		err error
	}
	ch := make(chan res, 1)
	go func() {
		s, err := p.in.ReadString('\n')
		if err == io.EOF && s != "" {
			err = nil
		}
		ch <- res{strings.TrimSpace(s), err}
	}()
	select {
	case <-ctx.Done():
		return "", ctx.Err()
	case r := <-ch:
		if r.err != nil {
			return "", fmt.Errorf("no answer on standard input (%v); to run without a terminal use --yes --accept-risk=fence,ip-move", r.err)
		}
		if r.s != token {
			return "", fmt.Errorf("aborted: the answer %q is not %q; nothing was changed by this step", r.s, token)
		}
		return "typed by " + p.who, nil
	}
}

// autoPrompter approves for --yes --accept-risk.
type autoPrompter struct{ who, risks string }

func (p autoPrompter) Confirm(ctx context.Context, question, token string) (string, error) {
	return fmt.Sprintf("--yes --accept-risk=%s by %s", p.risks, p.who), nil
}
