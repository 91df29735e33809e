package lab

import (
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
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ovh/go-ovh/ovh"
	"github.com/rs/zerolog"

	"github.com/takeover-dev/takeover/internal/testenv"
	"github.com/takeover-dev/takeover/provider"
)

const serveEnv = "TAKEOVER_LAB_TEST_SERVE"

// TestMain doubles as the lab's simulator daemon (what `takeover lab serve`
// is) when serveEnv names a lab directory.
func TestMain(m *testing.M) {
	if dir := os.Getenv(serveEnv); dir != "" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
		err := Serve(ctx, Config{Dir: dir, Log: zerolog.New(os.Stderr)})
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// testConfig is a lab that cannot collide with a running "tk-" lab.
func testConfig(t *testing.T) Config {
	return Config{
		Prefix:           "tkt-",
		Dir:              filepath.Join(t.TempDir(), "lab"),
		Router:           pfx("10.210.0.1/24"),
		ClientRouter:     pfx("10.209.0.1/24"),
		Client:           pfx("10.209.0.10/24"),
		Primary:          Host{Public: pfx("10.210.0.11/24"), Private: pfx("10.211.0.11/24")},
		Spare:            Host{Public: pfx("10.210.0.12/24"), Private: pfx("10.211.0.12/24")},
		Ops:              Host{Public: pfx("10.210.0.13/24"), Private: pfx("10.211.0.13/24")},
		FailoverIP:       pfx("10.210.0.100/32"),
		TaskStartLatency: 20 * time.Millisecond,
		RebootLatency:    100 * time.Millisecond,
		MoveLatency:      50 * time.Millisecond,
		Log:              zerolog.New(zerolog.NewTestWriter(t)),
	}.withDefaults()
}

func needLab(t *testing.T) {
	t.Helper()
	testenv.MustHaveRoot(t)
	testenv.MustHaveCommand(t, "sshd", "ssh", "nbdkit", "busybox", "nsenter", "unshare", "losetup", "mkfs.ext4", "ip")
	testenv.MustHaveFile(t, "/dev/fuse")
}

// sshIn runs ssh from the ops namespace and returns its trimmed stdout.
func sshIn(ctx context.Context, c Config, key, knownHosts string, to netip.Addr, command string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", "--net="+c.NSPath(roleOps), "ssh",
		"-i", key, "-o", "UserKnownHostsFile="+knownHosts, "-o", "StrictHostKeyChecking=yes",
		"-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "IdentitiesOnly=yes",
		"root@"+to.String(), command)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("ssh %s %q: %w: %s", to, command, err, stderr.String())
	}
	return strings.TrimSpace(string(out)), nil
}

func get(ctx context.Context, c Config, role, u string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return "", err
	}
	hc := c.HTTPClient(role)
	hc.Timeout = 2 * time.Second
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return string(b), err
}

// waitTask polls an OVH task until it is done.
func waitTask(ctx context.Context, t *testing.T, api *ovh.Client, path string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for {
		var task struct {
			Status string `json:"status"`
		}
		if err := api.GetWithContext(ctx, path, &task); err != nil {
			t.Fatalf("read task %s: %v", path, err)
		}
		switch task.Status {
		case "done":
			return
		case "cancelled", "customerError", "ovhError":
			t.Fatalf("task %s ended %s", path, task.Status)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("task %s: still %s: %v", path, task.Status, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestLabTakeoverStory(t *testing.T) {
	needLab(t)
	ctx := t.Context()
	cfg := testConfig(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// the simulator daemon: this test binary again, see TestMain
	cfg.ServeCommand = []string{"env", serveEnv + "=" + cfg.Dir, exe}
	// debris of an earlier, killed run of this test
	if err := Down(ctx, cfg); err != nil {
		t.Fatalf("clean earlier test lab: %v", err)
	}
	t0 := time.Now()
	l, err := Up(ctx, cfg)
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	t.Logf("up in %s", time.Since(t0))
	t.Cleanup(func() {
		if t.Failed() {
			logs, _ := filepath.Glob(filepath.Join(cfg.Paths().Logs, "*.log"))
			for _, f := range logs {
				b, _ := os.ReadFile(f)
				t.Logf("%s:\n%s", filepath.Base(f), b)
			}
		}
		Down(context.WithoutCancel(ctx), cfg) //nolint:errcheck // best effort after a failure
	})
	p := cfg.Paths()

	if _, err := Up(ctx, cfg); !errors.Is(err, ErrAlreadyUp) {
		t.Fatalf("second Up: got %v, want ErrAlreadyUp", err)
	}
	if fi, err := os.Stat(p.OVHConf); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("ovh.conf: %v, mode %v", err, fi.Mode())
	}

	fip := "http://" + cfg.FailoverIP.Addr().String() + "/index.html"
	if body, err := get(ctx, cfg, roleClient, fip); err != nil || body != IndexBody {
		t.Fatalf("client GET failover IP on the normal OS: %q, %v", body, err)
	}
	normal, err := sshIn(ctx, cfg, p.OperatorKey, p.KnownHosts, cfg.Primary.Public.Addr(), "hostname; cat /proc/sys/kernel/random/boot_id")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(normal, "web1\n") {
		t.Fatalf("primary normal OS: hostname/boot_id %q", normal)
	}

	t.Logf("%s: normal OS checked", time.Since(t0))
	app, err := cfg.ReadCredentials()
	if err != nil {
		t.Fatal(err)
	}
	api, err := ovh.NewClient(cfg.Endpoint(), app.Key, app.Secret, app.Consumer)
	if err != nil {
		t.Fatal(err)
	}
	api.Client = cfg.HTTPClient(roleOps)

	t.Logf("%s: fence", time.Since(t0))
	// Fence: netboot rescue with the runbook's rescue key, hard reboot.
	rescuePub := readFile(t, p.RescueKey+".pub")
	srvPath := "/dedicated/server/" + cfg.Primary.Server
	if err := api.PutWithContext(ctx, srvPath, map[string]any{"bootId": 230242, "rescueSshKey": rescuePub}, nil); err != nil {
		t.Fatalf("set rescue netboot: %v", err)
	}
	var task struct {
		TaskID int64 `json:"taskId"`
	}
	if err := api.PostWithContext(ctx, srvPath+"/reboot", nil, &task); err != nil {
		t.Fatalf("reboot: %v", err)
	}
	waitTask(ctx, t, api, fmt.Sprintf("%s/task/%d", srvPath, task.TaskID))

	if body, err := get(ctx, cfg, roleClient, fip); err == nil {
		t.Fatalf("client GET failover IP with the primary in rescue: got %q, want an error", body)
	}
	rescueKH := filepath.Join(t.TempDir(), "known_hosts")
	hostPub := readFile(t, filepath.Join(p.Rescue, "ssh_host_ed25519_key.pub"))
	if hostPub == readFile(t, p.PrimaryHostKey+".pub") {
		t.Fatal("rescue host key equals the normal OS host key")
	}
	f := strings.Fields(hostPub)
	if err := os.WriteFile(rescueKH, []byte(cfg.Primary.Public.Addr().String()+" "+f[0]+" "+f[1]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := sshIn(ctx, cfg, p.RescueKey, rescueKH, cfg.Primary.Public.Addr(),
		"hostname; cat /proc/cmdline /proc/sys/kernel/random/boot_id; cmp "+p.Image+" "+cfg.RescueDisk+" && echo disk-readable")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(out, "\n")
	if len(lines) != 4 || lines[0] != cfg.RescueHostname || !strings.Contains(lines[1], "rescue") ||
		lines[2] == strings.Split(normal, "\n")[1] || lines[3] != "disk-readable" {
		t.Fatalf("rescue system says %q", out)
	}
	if _, err := sshIn(ctx, cfg, p.OperatorKey, rescueKH, cfg.Primary.Public.Addr(), "true"); err == nil {
		t.Fatal("rescue accepted the operator key; only the rescue key may log in")
	}
	t.Logf("%s: rescue checked", time.Since(t0))
	// Something the rescue starts must die with the next reboot.
	nbdPID, err := sshIn(ctx, cfg, p.RescueKey, rescueKH, cfg.Primary.Public.Addr(),
		"nbdkit -r -P /srv/nbdkit.pid -i "+cfg.Primary.Private.Addr().String()+" file "+cfg.RescueDisk+
			" && for i in $(seq 50); do [ -s /srv/nbdkit.pid ] && break; sleep 0.1; done; cat /srv/nbdkit.pid")
	if err != nil {
		t.Fatal(err)
	}
	st, err := Status(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if st.Primary != PersonalityRescue || len(st.Mounts) != 0 || len(st.Loops) != 0 {
		t.Fatalf("status in rescue: %+v", st)
	}

	t.Logf("%s: rescue nbdkit started", time.Since(t0))
	// The spare starts the service, then the failover IP moves to it.
	svc := filepath.Join(cfg.Dir, "spare", "svc")
	if err := os.MkdirAll(svc, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(svc, "index.html"), []byte("from the spare\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := sshIn(ctx, cfg, p.OperatorKey, p.KnownHosts, cfg.Spare.Public.Addr(), "hostname; busybox httpd -p 80 -h "+svc); err != nil || out != "spare" {
		t.Fatalf("start service on spare: %q, %v", out, err)
	}
	ipPath := "/ip/" + url.PathEscape(cfg.FailoverIP.String())
	var mv struct {
		TaskID int64 `json:"taskId"`
	}
	if err := api.PostWithContext(ctx, ipPath+"/move", map[string]any{"to": cfg.Spare.Server, "nexthop": nil}, &mv); err != nil {
		t.Fatalf("move failover IP: %v", err)
	}
	waitTask(ctx, t, api, fmt.Sprintf("%s/task/%d", ipPath, mv.TaskID))
	if body, err := get(ctx, cfg, roleClient, fip); err != nil || body != "from the spare\n" {
		t.Fatalf("client GET failover IP after the move: %q, %v", body, err)
	}
	if st, _ := Status(ctx, cfg); st.RoutedTo != cfg.Spare.Server {
		t.Fatalf("status routed to %q, want the spare", st.RoutedTo)
	}

	t.Logf("%s: moved to spare", time.Since(t0))
	// Power-off stops everything, rescue's children included.
	if err := l.RebootHook(ctx, cfg.Primary.Server, provider.Boot{ID: 95083, Type: "power", Kernel: "poweroff"}); err != nil {
		t.Fatal(err)
	}
	if pid, _ := strconv.Atoi(nbdPID); pid == 0 || (Proc{PID: pid}).alive() {
		t.Fatalf("nbdkit %s started by the rescue survived the power-off", nbdPID)
	}
	if ps, err := nsPIDs(cfg.NSPath(rolePrimary)); err != nil || len(ps) != 0 {
		t.Fatalf("processes on the powered-off primary: %v, %v", ps, err)
	}
	if st, _ := Status(ctx, cfg); st.Primary != PersonalityOff {
		t.Fatalf("status after power-off: primary %q", st.Primary)
	}

	// Failback: the primary boots its disk again (hook called directly).
	if err := l.RebootHook(ctx, cfg.Primary.Server, provider.Boot{ID: 1, Type: "harddisk", Kernel: "hd"}); err != nil {
		t.Fatal(err)
	}
	if body, err := get(ctx, cfg, roleClient, "http://"+cfg.Primary.Public.Addr().String()+"/index.html"); err != nil || body != IndexBody {
		t.Fatalf("client GET primary after failback: %q, %v", body, err)
	}
	if err := l.MoveHook(ctx, cfg.FailoverIP, cfg.Spare.Server, cfg.Primary.Server); err != nil {
		t.Fatal(err)
	}
	if body, err := get(ctx, cfg, roleClient, fip); err != nil || body != IndexBody {
		t.Fatalf("client GET failover IP after failback: %q, %v", body, err)
	}
	if out, err := sshIn(ctx, cfg, p.OperatorKey, p.KnownHosts, cfg.Primary.Public.Addr(), "hostname"); err != nil || out != "web1" {
		t.Fatalf("primary after failback: %q, %v", out, err)
	}
	st, err = Status(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if st.Primary != PersonalityNormal || len(st.Mounts) != 1 || len(st.Loops) != 1 || st.RoutedTo != cfg.Primary.Server {
		t.Fatalf("status after failback: %+v", st)
	}

	t.Logf("%s: failed back", time.Since(t0))
	// Down leaves nothing.
	state, err := l.State()
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Down(ctx); err != nil {
		t.Fatalf("Down: %v", err)
	}
	assertGone(t, cfg, state)
}

// assertGone checks with the system's own tools that nothing of the lab is left.
func assertGone(t *testing.T, cfg Config, st State) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, cfg.Prefix) {
			t.Errorf("namespace left: %s", l)
		}
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(mi), cfg.Dir) {
		t.Errorf("mounts left under %s", cfg.Dir)
	}
	out, err = exec.Command("losetup", "-J").Output()
	if err != nil {
		t.Fatal(err)
	}
	var loops struct {
		Loopdevices []struct {
			Name     string `json:"name"`
			BackFile string `json:"back-file"`
		} `json:"loopdevices"`
	}
	if len(strings.TrimSpace(string(out))) > 0 {
		if err := json.Unmarshal(out, &loops); err != nil {
			t.Fatal(err)
		}
	}
	for _, lp := range loops.Loopdevices {
		if strings.HasPrefix(lp.BackFile, cfg.Dir) {
			t.Errorf("loop device left: %s on %s", lp.Name, lp.BackFile)
		}
	}
	if len(st.Processes) == 0 {
		t.Error("state recorded no processes")
	}
	for name, pr := range st.Processes {
		if pr.alive() && pr.PID != os.Getpid() {
			t.Errorf("process left: %s pid %d", name, pr.PID)
		}
	}
	if _, err := os.Stat(cfg.Dir); err == nil {
		t.Errorf("lab dir %s left", cfg.Dir)
	}
}

func TestDownRemovesPartialLab(t *testing.T) {
	needLab(t)
	ctx := t.Context()
	cfg := testConfig(t)
	cfg.Prefix = "tkd-"
	if err := Down(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	// A lab half made by hand: a namespace with a process in it, a mounted
	// loop device, and no state.json at all.
	if err := os.MkdirAll(filepath.Join(cfg.Dir, "primary", "www"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfg.Dir, markerFile), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := makeImage(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if err := ipc(ctx, "netns", "add", cfg.NS(roleSpare)); err != nil {
		t.Fatal(err)
	}
	pr, err := startDaemon(cfg.NSPath(roleSpare), filepath.Join(cfg.Dir, "logs", "sleep.log"), "sleep", "600")
	if err != nil {
		t.Fatal(err)
	}
	dev, err := run(ctx, "losetup", "-f", "--show", cfg.Paths().Image)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := run(ctx, "mount", strings.TrimSpace(dev), cfg.Paths().PrimaryMount); err != nil {
		t.Fatal(err)
	}
	st, err := Status(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{cfg.NS(roleSpare)}, st.Namespaces); diff != "" || st.Up || len(st.Mounts) != 1 || len(st.Loops) != 1 {
		t.Fatalf("status of the partial lab: %+v %s", st, diff)
	}
	if err := Down(ctx, cfg); err != nil {
		t.Fatalf("Down: %v", err)
	}
	assertGone(t, cfg, State{Processes: map[string]Proc{"sleep": pr}})
}

func TestConfigDefaultsAndValues(t *testing.T) {
	c := DefaultConfig()
	want := map[string]string{
		"ns":       "tk-primary",
		"endpoint": "http://10.200.0.13:8080/1.0",
		"primary":  "ns1.ip-10-200-0-11.eu",
		"spare":    "ns2.ip-10-200-0-12.eu",
		"image":    "/srv/disk/www.img",
		"rescue":   "/run/takeover-lab/keys/rescue_ed25519",
	}
	v := c.RunbookValues()
	got := map[string]string{
		"ns":       c.NS(rolePrimary),
		"endpoint": v["provider.endpoint"],
		"primary":  v["primary.server"],
		"spare":    v["spare.server"],
		"image":    v["data.disks.device"],
		"rescue":   v["primary.rescue.key"],
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
	for _, bad := range []Config{{Prefix: "x"}, {Prefix: "Tk-"}, {Dir: "relative"}, {Dir: "/"}} {
		if err := bad.withDefaults().validate(); err == nil {
			t.Errorf("config %+v: validate accepted it", bad)
		}
	}
}
