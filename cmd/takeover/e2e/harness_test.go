package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ovh/go-ovh/ovh"
	"github.com/rs/zerolog"

	"github.com/takeover-dev/takeover/internal/testenv"
	"github.com/takeover-dev/takeover/provider/sim"
	"github.com/takeover-dev/takeover/provider/sim/lab"
	"github.com/takeover-dev/takeover/runbooks"
	"github.com/takeover-dev/takeover/state"
	"github.com/takeover-dev/takeover/state/local"
)

// takeoverBin is the CLI built by TestMain; read-only once tests run.
var takeoverBin string

func TestMain(m *testing.M) {
	os.Exit(buildAndRun(m))
}

// buildAndRun builds the takeover binary into a temporary directory, runs
// the tests and removes the directory.
func buildAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "takeover-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: ", err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "takeover")
	gotool, err := exec.LookPath("go")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: the go tool is not on PATH:", err)
		return 1
	}
	cmd := exec.Command(gotool, "build", "-o", bin, "github.com/takeover-dev/takeover/cmd/takeover")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: build takeover: %v\n%s", err, out)
		return 1
	}
	takeoverBin = bin
	return m.Run()
}

// needE2E gates every test of the package.
func needE2E(t *testing.T) {
	t.Helper()
	testenv.MustHaveRoot(t)
	testenv.MustHaveCommand(t, "sshd", "nbd-server", "nbdfuse", "etcd", "busybox", "nsenter", "ip", "losetup", "mkfs.ext4")
	testenv.MustHaveFile(t, "/dev/fuse")
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// Lab latencies: short, but an IP move stays in flight long enough (task
// start + move) for the test to kill a run while it waits on it.
const (
	taskStart     = 50 * time.Millisecond
	rebootLatency = 300 * time.Millisecond
	moveLatency   = 800 * time.Millisecond
	pollInterval  = "100ms"
)

// labConfig is this package's lab: it cannot collide with the default lab
// (tk-, 10.199-10.201) nor with provider/sim/lab's tests (tkt-/tkd-,
// 10.209-10.211).
func labConfig(dir string, log zerolog.Logger) lab.Config {
	return lab.Config{
		Prefix:           "tke-",
		Dir:              dir,
		Router:           pfx("10.220.0.1/24"),
		ClientRouter:     pfx("10.219.0.1/24"),
		Client:           pfx("10.219.0.10/24"),
		Primary:          lab.Host{Public: pfx("10.220.0.11/24"), Private: pfx("10.221.0.11/24")},
		Spare:            lab.Host{Public: pfx("10.220.0.12/24"), Private: pfx("10.221.0.12/24")},
		Ops:              lab.Host{Public: pfx("10.220.0.13/24"), Private: pfx("10.221.0.13/24")},
		FailoverIP:       pfx("10.220.0.100/32"),
		TaskStartLatency: taskStart,
		RebootLatency:    rebootLatency,
		MoveLatency:      moveLatency,
		ServeCommand:     []string{takeoverBin, "lab", "serve", "--dir", dir, "--log-format", "json", "--log-level", "info"},
		Log:              log,
	}
}

// world is one lab with a runbook for it and a state store, and the record
// of every CLI invocation made against it.
type world struct {
	t      *testing.T
	cfg    lab.Config // defaults filled in
	lab    *lab.Lab
	start  time.Time
	rb     string // runbook path
	state  string // --state
	local  string // the state directory when the store is local, else ""
	simAPI *ovh.Client

	mu   sync.Mutex
	runs []*invocation
	down bool
}

// newWorld builds a fresh lab and a runbook for it. stateURL is the
// --state value; "" means a fresh local state directory. On failure the
// CLI outputs and the lab's logs are printed; the lab is always torn down.
func newWorld(t *testing.T, stateURL string) *world {
	t.Helper()
	needE2E(t)
	ctx := t.Context()
	w := &world{t: t, start: time.Now()}
	base := t.TempDir()
	dir := filepath.Join(base, "lab")
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	cfg := labConfig(dir, log)
	// a lab left by a crashed earlier run of these tests
	if err := lab.Down(ctx, lab.Config{Prefix: cfg.Prefix, Dir: dir}); err != nil {
		t.Fatalf("lab down before up: %v", err)
	}
	if nss := labNamespaces(t, cfg.Prefix); len(nss) > 0 {
		t.Fatalf("namespaces %v of an earlier run are left; run: for n in %s; do ip netns del $n; done", nss, strings.Join(nss, " "))
	}
	t0 := time.Now()
	l, err := lab.Up(ctx, cfg)
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	w.lab, w.cfg = l, l.Config()
	t.Cleanup(w.cleanup)
	t.Logf("lab up in %s", time.Since(t0).Round(time.Millisecond))

	w.rb = writeRunbook(t, w.cfg, filepath.Join(base, "lab.yaml"))
	if stateURL == "" {
		w.local = filepath.Join(base, "state")
		if err := os.Mkdir(w.local, 0o700); err != nil {
			t.Fatal(err)
		}
		stateURL = w.local
	}
	w.state = stateURL

	app, err := w.cfg.ReadCredentials()
	if err != nil {
		t.Fatal(err)
	}
	w.simAPI, err = ovh.NewClient(w.cfg.Endpoint(), app.Key, app.Secret, app.Consumer)
	if err != nil {
		t.Fatal(err)
	}
	w.simAPI.Client = w.cfg.HTTPClient("ops")
	return w
}

// cleanup prints what helps to understand a failure, then removes the lab.
func (w *world) cleanup() {
	t := w.t
	if t.Failed() {
		w.mu.Lock()
		for _, r := range w.runs {
			t.Logf("%s", r.report())
		}
		w.mu.Unlock()
		if r, err := lab.Status(context.Background(), w.cfg); err == nil {
			t.Logf("lab status: primary %s, spare %s, %s routed to %s, mounts %v", r.Primary, r.Spare, r.FailoverIP, r.RoutedTo, r.Mounts)
		}
		logs, _ := filepath.Glob(filepath.Join(w.cfg.Paths().Logs, "*.log"))
		for _, f := range logs {
			b, _ := os.ReadFile(f)
			t.Logf("--- lab log %s (last 4 KiB):\n%s", filepath.Base(f), tail(b, 4096))
		}
	}
	if !w.down {
		if err := lab.Down(context.Background(), w.cfg); err != nil {
			t.Errorf("lab down: %v", err)
		}
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// writeRunbook turns runbooks/lab.yaml, written for the default lab, into a
// runbook for cfg's lab at path, and checks it validates and names cfg's
// servers, addresses and paths.
func writeRunbook(t *testing.T, cfg lab.Config, path string) string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("..", "..", "..", "runbooks", "lab.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	def := lab.DefaultConfig()
	var pairs []string
	add := func(from, to string) { pairs = append(pairs, from, to) }
	add(def.Endpoint(), cfg.Endpoint())
	add(def.Dir, cfg.Dir)
	add(def.Primary.Server, cfg.Primary.Server)
	add(def.Spare.Server, cfg.Spare.Server)
	add(def.FailoverIP.String(), cfg.FailoverIP.String())
	for _, h := range [][2]lab.Host{{def.Primary, cfg.Primary}, {def.Spare, cfg.Spare}, {def.Ops, cfg.Ops}} {
		add(h[0].Public.Addr().String(), h[1].Public.Addr().String())
		add(h[0].Private.Addr().String(), h[1].Private.Addr().String())
	}
	text := strings.NewReplacer(pairs...).Replace(string(src))
	// only the comments may still speak of the default lab
	for i, line := range strings.Split(text, "\n") {
		code, _, _ := strings.Cut(line, "#")
		for _, old := range []string{"10.199.", "10.200.", "10.201.", "10-200-", def.Dir} {
			if strings.Contains(code, old) {
				t.Fatalf("runbook line %d still names the default lab (%s): %s", i+1, old, line)
			}
		}
	}
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	rb, err := runbooks.Load(path)
	if err != nil {
		t.Fatalf("generated runbook %s does not validate: %v\n%s", path, err, text)
	}
	p := cfg.Paths()
	got := []string{rb.Provider.Endpoint, rb.Primary.Server, rb.Spare.Server, rb.Primary.PrivateAddress.String(),
		rb.Spare.PrivateAddress.String(), rb.FailoverIPs[0].String(), rb.Primary.Rescue.Key, rb.Data.Disks[0].Mount}
	want := []string{cfg.Endpoint(), cfg.Primary.Server, cfg.Spare.Server, cfg.Primary.Private.Addr().String(),
		cfg.Spare.Private.Addr().String(), cfg.FailoverIP.String(), p.RescueKey, p.SpareMount}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("generated runbook: got %q, want %q (all: %q)", got[i], want[i], got)
		}
	}
	return path
}

// invocation is one run of the CLI inside the ops namespace.
type invocation struct {
	args   []string
	cmd    *exec.Cmd
	stdout bytes.Buffer
	stderr bytes.Buffer
	began  time.Time
	took   time.Duration
	code   int // exit code, -1 if killed by a signal
	done   chan struct{}
	werr   error
}

func (r *invocation) report() string {
	return fmt.Sprintf("--- takeover %s (exit %d, %s)\nstdout:\n%s\nstderr:\n%s",
		strings.Join(r.args, " "), r.code, r.took.Round(time.Millisecond), r.stdout.String(), tail(r.stderr.Bytes(), 8192))
}

// cliArgs puts the global flags in front of a command's arguments.
func (w *world) cliArgs(args ...string) []string {
	return append([]string{"--state", w.state, "--log-level", "info"}, args...)
}

// driveFlags are the flags of run, resume, rollback and failback.
func (w *world) driveFlags() []string {
	return []string{"--ovh-conf", w.cfg.Paths().OVHConf, "--poll-interval", pollInterval, "--yes", "--accept-risk", "fence,ip-move"}
}

// startCLI starts takeover inside the ops namespace. nsenter enters the
// namespace and execs takeover, so cmd.Process is takeover itself: what
// the test kills is the orchestrator, not a wrapper.
func (w *world) startCLI(args ...string) *invocation {
	w.t.Helper()
	full := w.cliArgs(args...)
	r := &invocation{args: full, done: make(chan struct{})}
	r.cmd = exec.Command("nsenter", append([]string{"--net=" + w.cfg.NSPath("ops"), takeoverBin}, full...)...)
	r.cmd.Stdout, r.cmd.Stderr = &r.stdout, &r.stderr
	r.cmd.Env = append(os.Environ(), "TAKEOVER_OPERATOR=e2e")
	// never outlive the test binary
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	r.began = time.Now()
	if err := r.cmd.Start(); err != nil {
		w.t.Fatalf("start takeover %v: %v", full, err)
	}
	w.mu.Lock()
	w.runs = append(w.runs, r)
	w.mu.Unlock()
	go func() {
		r.werr = r.cmd.Wait()
		r.took = time.Since(r.began)
		r.code = r.cmd.ProcessState.ExitCode()
		close(r.done)
	}()
	w.t.Cleanup(func() {
		select {
		case <-r.done:
		default:
			_ = r.cmd.Process.Kill()
			<-r.done
		}
	})
	return r
}

// wait waits for the invocation to end, at most d.
func (r *invocation) wait(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(d):
		t.Fatalf("takeover %s still running after %s", strings.Join(r.args, " "), d)
	}
}

// cli runs takeover to its end (at most 2 minutes) and returns it.
func (w *world) cli(args ...string) *invocation {
	w.t.Helper()
	r := w.startCLI(args...)
	r.wait(w.t, 2*time.Minute)
	return r
}

// mustCLI runs takeover and fails the test unless it exits 0.
func (w *world) mustCLI(args ...string) *invocation {
	w.t.Helper()
	r := w.cli(args...)
	if r.code != 0 {
		w.t.Fatalf("takeover %s: exit %d\n%s", strings.Join(r.args, " "), r.code, r.report())
	}
	w.t.Logf("takeover %s: exit 0 in %s", args[0], r.took.Round(time.Millisecond))
	return r
}

// kill sends SIGKILL to the running takeover and reaps it (a zombie would
// still count as a live lock holder).
func (w *world) kill(r *invocation) {
	w.t.Helper()
	pid := r.cmd.Process.Pid
	comm, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		w.t.Fatalf("takeover (pid %d) is gone before the kill: %v\n%s", pid, err, r.report())
	}
	if got := strings.TrimSpace(string(comm)); got != "takeover" {
		w.t.Fatalf("pid %d is %q, not takeover", pid, got)
	}
	if err := r.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		w.t.Fatalf("kill takeover: %v", err)
	}
	r.wait(w.t, 10*time.Second)
	ws, _ := r.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		w.t.Fatalf("takeover ended with %v, not by our SIGKILL\n%s", r.cmd.ProcessState, r.report())
	}
}

// records reads a run's journal: directly from the local state directory,
// or through "takeover log --output json" for a shared store. A run without
// records yet gives nil, nil.
func (w *world) records(ctx context.Context, run string) ([]state.Record, error) {
	if w.local != "" {
		st, err := local.Open(w.local)
		if err != nil {
			return nil, err
		}
		defer st.Close()
		recs, err := st.Records(ctx, run)
		if errors.Is(err, state.ErrNotFound) {
			return nil, nil
		}
		return recs, err
	}
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + w.cfg.NSPath("ops"), takeoverBin}, w.cliArgs("log", run, "--output", "json")...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if strings.Contains(stderr.String(), "not found") {
			return nil, nil
		}
		return nil, fmt.Errorf("takeover log %s: %w: %s", run, err, stderr.String())
	}
	var recs []state.Record
	if err := json.Unmarshal(out, &recs); err != nil {
		return nil, fmt.Errorf("takeover log %s: %w", run, err)
	}
	return recs, nil
}

// waitJournal polls the run's journal until cond holds, the process ends, or
// the deadline passes; it returns the records that satisfied cond.
func (w *world) waitJournal(r *invocation, run string, what string, cond func([]state.Record) bool) []state.Record {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(w.t.Context(), time.Minute)
	defer cancel()
	every := 5 * time.Millisecond
	if w.local == "" {
		every = 20 * time.Millisecond
	}
	for {
		recs, err := w.records(ctx, run)
		if err != nil && ctx.Err() == nil {
			w.t.Fatalf("read journal of %s: %v", run, err)
		}
		if cond(recs) {
			return recs
		}
		select {
		case <-r.done:
			w.t.Fatalf("takeover ended (exit %d) before %s\n%s", r.code, what, r.report())
		case <-ctx.Done():
			w.t.Fatalf("journal of %s: no %s within a minute", run, what)
		case <-time.After(every):
		}
	}
}

// Journal predicates.
func hasDone(step string) func([]state.Record) bool {
	return func(recs []state.Record) bool {
		for _, r := range recs {
			if r.Step == step && r.Phase == state.PhaseDone {
				return true
			}
		}
		return false
	}
}

// moveInFlight holds while a move-ip-* step has journalled that it waits on
// its provider task and is not done.
func moveInFlight(recs []state.Record) bool {
	waiting, done := map[string]bool{}, map[string]bool{}
	for _, r := range recs {
		if !strings.HasPrefix(r.Step, "move-ip-") {
			continue
		}
		switch r.Phase {
		case state.PhaseWaiting:
			waiting[r.Step] = true
		case state.PhaseDone:
			done[r.Step] = true
		}
	}
	for s := range waiting {
		if !done[s] {
			return true
		}
	}
	return false
}

func finished(recs []state.Record) bool {
	for _, r := range recs {
		if r.Phase == state.PhaseRunFinished {
			return true
		}
	}
	return false
}

// counters reads the simulator's GET /_sim/counters from the ops namespace.
func (w *world) counters() sim.Counters {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(w.t.Context(), 5*time.Second)
	defer cancel()
	u := "http://" + netip.AddrPortFrom(w.cfg.Ops.Public.Addr(), w.cfg.APIPort).String() + sim.CountersPath
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		w.t.Fatal(err)
	}
	resp, err := w.cfg.HTTPClient("ops").Do(req)
	if err != nil {
		w.t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		w.t.Fatalf("GET %s: %s %s %v", u, resp.Status, body, err)
	}
	var c sim.Counters
	if err := json.Unmarshal(body, &c); err != nil {
		w.t.Fatalf("GET %s: %v: %s", u, err, body)
	}
	return c
}

// checkCounters asserts how many reboots of the primary and moves of the
// failover IP the simulator accepted in this lab, and that the spare was
// never rebooted.
func (w *world) checkCounters(reboots, moves int) {
	w.t.Helper()
	c := w.counters()
	got := [3]int{c.Reboots[w.cfg.Primary.Server], c.Moves[w.cfg.FailoverIP.String()], c.Reboots[w.cfg.Spare.Server]}
	if want := [3]int{reboots, moves, 0}; got != want {
		w.t.Errorf("simulator counters: %d reboots of the primary, %d moves of %s, %d reboots of the spare; want %v (all: %+v)",
			got[0], got[1], w.cfg.FailoverIP, got[2], want, c)
	}
}

// clientRead reads index.html through the failover IP from the client
// namespace, retrying for a few seconds, and checks it is the primary's
// disk's index.html.
func (w *world) clientRead() {
	w.t.Helper()
	u := "http://" + w.cfg.FailoverIP.Addr().String() + "/index.html"
	hc := w.cfg.HTTPClient("client")
	hc.Timeout = 2 * time.Second
	deadline := time.Now().Add(5 * time.Second)
	var last string
	for {
		resp, err := hc.Get(u)
		if err == nil {
			b, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if rerr == nil && resp.StatusCode == http.StatusOK && string(b) == lab.IndexBody {
				return
			}
			last = fmt.Sprintf("%s %q %v", resp.Status, b, rerr)
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("client cannot read %s: %s", u, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// simRoute is where the simulator says the failover IP is routed.
func (w *world) simRoute() string {
	w.t.Helper()
	var ip struct {
		RoutedTo struct {
			ServiceName *string `json:"serviceName"`
		} `json:"routedTo"`
	}
	if err := w.simAPI.GetWithContext(w.t.Context(), "/ip/"+url.PathEscape(w.cfg.FailoverIP.String()), &ip); err != nil {
		w.t.Fatalf("read the route of %s from the simulator: %v", w.cfg.FailoverIP, err)
	}
	if ip.RoutedTo.ServiceName == nil {
		return ""
	}
	return *ip.RoutedTo.ServiceName
}

// checkRouted asserts where the failover IP goes, as the lab's router
// and the simulator both see it.
func (w *world) checkRouted(server string) {
	w.t.Helper()
	r, err := lab.Status(w.t.Context(), w.cfg)
	if err != nil {
		w.t.Fatalf("lab status: %v", err)
	}
	if r.RoutedTo != server {
		w.t.Errorf("lab router sends %s to %q (via %s), want %s", w.cfg.FailoverIP, r.RoutedTo, r.RoutedVia, server)
	}
	if got := w.simRoute(); got != server {
		w.t.Errorf("simulator routes %s to %q, want %s", w.cfg.FailoverIP, got, server)
	}
}

// primary returns the primary's personality (normal, rescue, off).
func (w *world) primary() string {
	w.t.Helper()
	r, err := lab.Status(w.t.Context(), w.cfg)
	if err != nil {
		w.t.Fatalf("lab status: %v", err)
	}
	return r.Primary
}

// lockFiles reads the local store's lock files as they are on disk, stale
// ones included.
func (w *world) lockFiles() []state.LockInfo {
	w.t.Helper()
	files, err := filepath.Glob(filepath.Join(w.local, "locks", "*.lock"))
	if err != nil {
		w.t.Fatal(err)
	}
	var out []state.LockInfo
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			w.t.Fatal(err)
		}
		var li state.LockInfo
		if err := json.Unmarshal(b, &li); err != nil {
			w.t.Fatalf("lock file %s: %v", f, err)
		}
		out = append(out, li)
	}
	return out
}

// labProcs lists processes named comm running in one of the lab's network
// namespaces.
func (w *world) labProcs(comms ...string) []string {
	w.t.Helper()
	nsIDs := map[string]string{}
	for _, role := range []string{"sw", "client", "primary", "spare", "ops"} {
		fi, err := os.Stat(w.cfg.NSPath(role))
		if err != nil {
			continue
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			nsIDs[fmt.Sprintf("net:[%d]", st.Ino)] = w.cfg.NS(role)
		}
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		w.t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err != nil {
			continue
		}
		name := strings.TrimSpace(string(comm))
		match := false
		for _, c := range comms {
			match = match || name == c
		}
		if !match {
			continue
		}
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
		if ns, ok := nsIDs[link]; err == nil && ok {
			out = append(out, fmt.Sprintf("%s pid %d in %s", name, pid, ns))
		}
	}
	return out
}

// mountsAt lists mount points at or under one of paths.
func mountsAt(t *testing.T, paths ...string) []string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := fields[4]
		for _, p := range paths {
			if mp == p || strings.HasPrefix(mp, p+"/") {
				out = append(out, mp)
			}
		}
	}
	return out
}

// labNamespaces lists network namespaces whose name starts with prefix.
func labNamespaces(t *testing.T, prefix string) []string {
	t.Helper()
	ents, err := os.ReadDir("/run/netns")
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	return out
}

// tearDown removes the lab and checks with the system's own view that
// nothing of it is left: namespaces, mounts under its directory, loop
// devices on its files, the processes it recorded, the directory itself.
func (w *world) tearDown() {
	w.t.Helper()
	st, err := w.lab.State()
	if err != nil {
		w.t.Fatalf("lab state: %v", err)
	}
	t0 := time.Now()
	if err := lab.Down(w.t.Context(), w.cfg); err != nil {
		w.t.Errorf("lab down: %v; holders: %v", err, mountHolders(w.cfg.Dir))
		return
	}
	w.down = true
	took := time.Since(t0)
	r, err := lab.Status(w.t.Context(), w.cfg)
	if err != nil {
		w.t.Errorf("lab status after down: %v", err)
	}
	var left []string
	for _, ns := range labNamespaces(w.t, w.cfg.Prefix) {
		left = append(left, "namespace "+ns)
	}
	for _, m := range append(r.Mounts, mountsAt(w.t, w.cfg.Dir)...) {
		left = append(left, "mount "+m)
	}
	for _, l := range r.Loops {
		left = append(left, "loop "+l.Device+" on "+l.Backing)
	}
	for name, p := range st.Processes {
		// a zombie holds nothing; it waits for a parent that may never reap
		if st, start, ok := procStat(p.PID); ok && st != 'Z' && st != 'X' && start == p.Start {
			left = append(left, fmt.Sprintf("process %s pid %d", name, p.PID))
		}
	}
	if _, err := os.Stat(w.cfg.Dir); err == nil {
		left = append(left, "directory "+w.cfg.Dir)
	}
	if len(left) > 0 {
		w.t.Errorf("lab down left: %v", left)
	}
	w.t.Logf("lab down in %s; scenario took %s", took.Round(time.Millisecond), time.Since(w.start).Round(time.Millisecond))
}

// procStat returns a process's state letter and its start time in clock
// ticks since boot.
func procStat(pid int) (byte, uint64, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0, 0, false
	}
	v, err := strconv.ParseUint(f[19], 10, 64)
	return f[0][0], v, err == nil
}

// mountHolders names processes whose mount namespace has a mount under dir
// (what keeps a loop device on a lab file busy).
func mountHolders(dir string) []string {
	ents, _ := os.ReadDir("/proc")
	var out []string
	seen := map[string]bool{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		mi, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
		if err != nil || !strings.Contains(string(mi), dir) {
			continue
		}
		ns, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid))
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if !seen[ns] || len(out) < 10 {
			out = append(out, fmt.Sprintf("pid %d %s (%s) %s", pid, strings.TrimSpace(string(comm)), ns, strings.ReplaceAll(string(cmdline), "\x00", " ")))
		}
		seen[ns] = true
	}
	return out
}

// watcher polls index.html through the failover IP from the client
// namespace every 50 ms and records the outage windows (first failure to
// next success), as a client would see them.
type watcher struct {
	cancel context.CancelFunc
	done   chan struct{}
	outs   []time.Duration
	open   bool // the last outage had not ended when stopped
}

func (w *world) watchClient() *watcher {
	ctx, cancel := context.WithCancel(w.t.Context())
	cw := &watcher{cancel: cancel, done: make(chan struct{})}
	u := "http://" + w.cfg.FailoverIP.Addr().String() + "/index.html"
	hc := w.cfg.HTTPClient("client")
	hc.Timeout = 300 * time.Millisecond
	go func() {
		defer close(cw.done)
		var from time.Time
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			at := time.Now()
			ok := false
			if req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil); err == nil {
				if resp, err := hc.Do(req); err == nil {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					ok = resp.StatusCode == http.StatusOK && string(b) == lab.IndexBody
				}
			}
			if ctx.Err() != nil {
				cw.open = !from.IsZero()
				return
			}
			switch {
			case !ok && from.IsZero():
				from = at
			case ok && !from.IsZero():
				cw.outs = append(cw.outs, at.Sub(from))
				from = time.Time{}
			}
			select {
			case <-ctx.Done():
				cw.open = !from.IsZero()
				return
			case <-t.C:
			}
		}
	}()
	return cw
}

// stop ends the watch and describes what the client saw.
func (cw *watcher) stop() string {
	cw.cancel()
	<-cw.done
	var parts []string
	for _, d := range cw.outs {
		parts = append(parts, d.Round(10*time.Millisecond).String())
	}
	s := fmt.Sprintf("%d outage window(s) %v", len(cw.outs), parts)
	if cw.open {
		s += " and one still open"
	}
	return s
}
