package steps_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/takeover-dev/takeover/internal/testenv"
	"github.com/takeover-dev/takeover/provider"
	"github.com/takeover-dev/takeover/provider/ovh"
	"github.com/takeover-dev/takeover/provider/sim"
	"github.com/takeover-dev/takeover/provider/sim/lab"
	"github.com/takeover-dev/takeover/runbooks"
	"github.com/takeover-dev/takeover/steps"
)

// The integration tests of this package build their own lab: prefix
// "tks-", public 10.230.0.0/24, private 10.231.0.0/24, client
// 10.229.0.0/24, so that they never collide with a running lab (tk-,
// 10.199-10.201) or with provider/sim/lab's own tests (tkt-/tkd-,
// 10.209-10.211). They run one after the other (no t.Parallel): they share
// the prefix and the directory.
const (
	labDir   = "/run/takeover-steps-test"
	diskName = "tksdisk" // export name; /run/takeover/*-tksdisk on the hosts
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func labConfig(t *testing.T) lab.Config {
	return lab.Config{
		Prefix:           "tks-",
		Dir:              labDir,
		Router:           pfx("10.230.0.1/24"),
		ClientRouter:     pfx("10.229.0.1/24"),
		Client:           pfx("10.229.0.10/24"),
		Primary:          lab.Host{Public: pfx("10.230.0.11/24"), Private: pfx("10.231.0.11/24")},
		Spare:            lab.Host{Public: pfx("10.230.0.12/24"), Private: pfx("10.231.0.12/24")},
		Ops:              lab.Host{Public: pfx("10.230.0.13/24"), Private: pfx("10.231.0.13/24")},
		FailoverIP:       pfx("10.230.0.100/32"),
		APIPort:          8080,
		TaskStartLatency: 20 * time.Millisecond,
		RebootLatency:    100 * time.Millisecond,
		MoveLatency:      50 * time.Millisecond,
		Log:              zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel),
	}
}

// labEnv is a lab that is up, its simulator served in this process on
// loopback, and what a run needs to work in it.
type labEnv struct {
	cfg   lab.Config
	lab   *lab.Lab
	sim   *sim.Sim
	prov  provider.Provider
	paths lab.Paths
	// rescueKey is the runbook's rescue key: a copy of the lab's that a test
	// may replace.
	rescueKey string
	endpoint  string
}

func needLab(t *testing.T, extra ...string) {
	t.Helper()
	testenv.MustHaveRoot(t)
	testenv.MustHaveCommand(t, append([]string{"sshd", "busybox", "nsenter", "unshare", "losetup", "mkfs.ext4", "ip"}, extra...)...)
	testenv.MustHaveFile(t, "/dev/fuse")
}

// startLab brings the test lab up (after removing debris of a killed
// earlier run) and tears it down at cleanup.
func startLab(t *testing.T) *labEnv {
	t.Helper()
	ctx := t.Context()
	cfg := labConfig(t)
	if err := lab.Down(ctx, cfg); err != nil {
		t.Fatalf("remove an earlier test lab: %v", err)
	}
	removeHostDebris(t)
	t0 := time.Now()
	l, err := lab.Up(ctx, cfg)
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	t.Logf("lab up in %s", time.Since(t0).Round(time.Millisecond))
	t.Cleanup(func() {
		if t.Failed() {
			logs, _ := filepath.Glob(filepath.Join(cfg.Dir, "logs", "*.log"))
			for _, f := range logs {
				if b, err := os.ReadFile(f); err == nil && len(b) > 0 {
					t.Logf("%s:\n%s", filepath.Base(f), tailLines(string(b), 30))
				}
			}
		}
		if err := lab.Down(context.WithoutCancel(ctx), cfg); err != nil {
			t.Errorf("lab down: %v", err)
		}
		removeHostDebris(t)
	})
	s, err := l.NewSim()
	if err != nil {
		t.Fatal(err)
	}
	// The simulator listens on loopback in this (root) namespace; its hooks
	// act on the lab's namespaces.
	srv := httptest.NewServer(s)
	t.Cleanup(func() {
		srv.Close()
		s.Close()
	})
	app, err := cfg.ReadCredentials()
	if err != nil {
		t.Fatal(err)
	}
	e := &labEnv{cfg: l.Config(), lab: l, sim: s, paths: l.Config().Paths(), endpoint: srv.URL + "/1.0"}
	c, err := ovh.New(ovh.Config{Endpoint: e.endpoint, AppKey: app.Key, AppSecret: app.Secret, ConsumerKey: app.Consumer,
		Timeout: 20 * time.Second, Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)})
	if err != nil {
		t.Fatal(err)
	}
	e.prov = c
	e.rescueKey = filepath.Join(t.TempDir(), "rescue_ed25519")
	copyFile(t, e.paths.RescueKey, e.rescueKey)
	return e
}

// removeHostDebris removes what the steps leave on the hosts' shared
// filesystem for this package's disk: the import's FUSE mount and loop
// device on the spare (outside the lab directory, so lab.Down does not see
// them) and the runtime files under /run/takeover.
func removeHostDebris(t *testing.T) {
	t.Helper()
	dir := "/run/takeover/import/tks/" + diskName // runbook "tks"
	fuseFile := dir + "/fuse/disk"
	if out, err := exec.Command("losetup", "-j", fuseFile).Output(); err == nil {
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if dev, _, ok := strings.Cut(line, ":"); ok && strings.HasPrefix(dev, "/dev/loop") {
				if mps, err := mountsOfDevice(dev); err == nil {
					for _, mp := range mps {
						_ = exec.Command("umount", "-l", mp).Run()
					}
				}
				_ = exec.Command("losetup", "-d", dev).Run()
			}
		}
	}
	if isMounted(dir + "/fuse") {
		if out, err := exec.Command("fusermount3", "-u", "-z", dir+"/fuse").CombinedOutput(); err != nil {
			t.Logf("fusermount3 -u %s/fuse: %v: %s", dir, err, out)
		}
	}
	_ = os.RemoveAll(dir)
	_ = os.Remove("/run/takeover/nfs/" + diskName) // the rescue side's NFS mount point (its mount died with the rescue)
	for _, suffix := range []string{".allow", ".conf", ".log", ".pid"} {
		_ = os.Remove("/run/takeover/nbd-" + diskName + suffix)
	}
}

func mountsOfDevice(dev string) ([]string, error) {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 1 && f[0] == dev {
			out = append(out, f[1])
		}
	}
	return out, nil
}

func isMounted(mp string) bool {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[1] == mp {
			return true
		}
	}
	return false
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// dataSection is the runbook's data: block for the NBD or NFS transport.
func dataSection(transport string) string {
	switch transport {
	case runbooks.TransportNFS:
		return "  transport: nfs\n  nfs:\n    server: ganesha\n    version: 4\n"
	default:
		return "  transport: nbd\n  nbd:\n    server: nbd-server\n  attach: fuse\n"
	}
}

// runbook returns a validated runbook for the lab with the given transport.
func (e *labEnv) runbook(t *testing.T, transport string) *runbooks.Runbook {
	t.Helper()
	c, p := e.cfg, e.paths
	y := fmt.Sprintf(`name: tks
provider:
  kind: ovh
  endpoint: %[1]s
primary:
  server: %[2]s
  address: %[3]s
  private_address: %[4]s
  rescue:
    kernel: %[5]s
    key: %[6]s
  ssh:
    address: %[4]s:22
    key: %[7]s
    known_hosts: %[8]s
spare:
  server: %[9]s
  private_address: %[10]s
  ssh:
    address: %[10]s:22
    key: %[7]s
    known_hosts: %[8]s
data:
%[11]s  disks:
    - name: %[12]s
      device: %[13]s
      fstype: ext4
      mount: %[14]s
      expect: [index.html, data/hello.txt]
services:
  - name: web
    start: "true"
    stop: "true"
    health:
      - command: "test -e %[14]s/index.html"
failover_ips:
  - %[15]s
timeouts:
  fence: 1m
  rescue_ssh: 30s
  ip_move: 30s
  services: 30s
  step: 2m
modes:
  disaster:
    confirm: false
`, e.endpoint, c.Primary.Server, c.Primary.Public.Addr(), c.Primary.Private.Addr(), c.RescueKernel, e.rescueKey,
		p.OperatorKey, p.KnownHosts, c.Spare.Server, c.Spare.Private.Addr(), dataSection(transport), diskName,
		c.RescueDisk, p.SpareMount, c.FailoverIP)
	rb, err := runbooks.Parse("tks.yaml", []byte(y))
	if err != nil {
		t.Fatalf("test runbook:\n%s\n%v", y, err)
	}
	return rb
}

// env returns the Env of a run in the lab: SSH from the ops namespace,
// provider calls to the in-process simulator, short task polls.
func (e *labEnv) env(t *testing.T, rb *runbooks.Runbook) *steps.Env {
	t.Helper()
	log := zerolog.New(zerolog.NewTestWriter(t))
	hosts := steps.NewHosts(rb, log)
	cfg := e.cfg
	hosts.Dialer = func(ctx context.Context, network, addr string) (net.Conn, error) {
		return cfg.DialContext(ctx, "ops", network, addr)
	}
	t.Cleanup(hosts.Close)
	return &steps.Env{
		Provider: e.prov, Runbook: rb, Mode: runbooks.ModeDisaster, Hosts: hosts, Log: log,
		Out:  testOut{t},
		Poll: provider.WaitOptions{Initial: 30 * time.Millisecond, Min: 30 * time.Millisecond, Max: 100 * time.Millisecond, Deadline: time.Minute},
	}
}

// inNS runs a command in the network namespace of role ("ops", "spare",
// "client") and returns its combined output.
func (e *labEnv) inNS(ctx context.Context, role string, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	args := append([]string{"--net=" + e.cfg.NSPath(role)}, argv...)
	out, err := exec.CommandContext(ctx, "nsenter", args...).CombinedOutput()
	return string(out), err
}

// reachable reports whether a TCP connection from role's namespace to addr opens.
func (e *labEnv) reachable(ctx context.Context, role, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	c, err := e.cfg.DialContext(ctx, role, "tcp", addr)
	if err != nil {
		return err
	}
	return c.Close()
}

type testOut struct{ t *testing.T }

func (o testOut) Write(p []byte) (int, error) {
	o.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// subPlan keeps the named nodes of plan, in plan order, with their
// dependencies on the dropped ones removed.
func subPlan(t *testing.T, plan steps.Plan, names ...string) steps.Plan {
	t.Helper()
	var out steps.Plan
	for _, n := range plan.Nodes {
		if !slices.Contains(names, n.Step.Name()) {
			continue
		}
		var after []string
		for _, a := range n.After {
			if slices.Contains(names, a) {
				after = append(after, a)
			}
		}
		n.After = after
		out.Nodes = append(out.Nodes, n)
	}
	if len(out.Nodes) != len(names) {
		t.Fatalf("plan lacks some of %v (has %s)", names, planNames(plan))
	}
	if err := out.Validate(); err != nil {
		t.Fatal(err)
	}
	return out
}

func planNames(p steps.Plan) []string {
	var s []string
	for _, n := range p.Nodes {
		s = append(s, n.Step.Name())
	}
	return s
}

// keepFence is the fence step without its undo, so that a rollback leaves
// the primary in its rescue system (and its disk image unmounted) for the
// test to inspect.
type keepFence struct{ steps.Step }

func (keepFence) Undo(context.Context, *steps.Env) error { return steps.ErrNoUndo }

func withoutFenceUndo(p steps.Plan) steps.Plan {
	out := steps.Plan{Nodes: slices.Clone(p.Nodes)}
	for i, n := range out.Nodes {
		if n.Step.Name() == steps.StepFence {
			out.Nodes[i].Step = keepFence{n.Step}
		}
	}
	return out
}

// events records the runner's step transitions.
type events struct {
	mu  sync.Mutex
	evs []steps.Event
	// on, if set, is called with each event (from the runner's goroutines).
	on func(steps.Event)
}

func (r *events) add(ev steps.Event) {
	r.mu.Lock()
	r.evs = append(r.evs, ev)
	on := r.on
	r.mu.Unlock()
	if on != nil {
		on(ev)
	}
}

// elapsed is how long the last done attempt of step took.
func (r *events) elapsed(step string) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	var d time.Duration
	for _, ev := range r.evs {
		if ev.Step == step && ev.State == steps.StateDone && !ev.Rollback {
			d = ev.Elapsed
		}
	}
	return d
}

func newLabRunner(t *testing.T, evs *events) *steps.Runner {
	return &steps.Runner{Store: newStore(t), Log: zerolog.New(zerolog.NewTestWriter(t)), Events: evs.add, StepTimeout: 2 * time.Minute}
}

// stepErr returns the *StepError in err, failing the test when there is none.
func stepErr(t *testing.T, err error) *steps.StepError {
	t.Helper()
	var se *steps.StepError
	if !errors.As(err, &se) {
		t.Fatalf("error %v: no step error in it", err)
	}
	return se
}
