package lab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/takeover-dev/takeover/provider"
	"github.com/takeover-dev/takeover/provider/sim"
)

var (
	// ErrAlreadyUp is returned by Up when the lab (its state or one of its
	// namespaces) already exists.
	ErrAlreadyUp = errors.New("lab is already up; run takeover lab down")
	// ErrNotUp is returned by Open when the lab has no state.
	ErrNotUp = errors.New("lab is not up; run takeover lab up")
)

// markerFile marks a directory made by the lab; Down only ever removes a
// directory holding it.
const markerFile = ".takeover-lab"

// Lab is a running lab. Its methods are safe for concurrent use, and also
// against other processes using the same lab directory (state.json is
// guarded by a file lock).
type Lab struct {
	cfg   Config
	store *store

	mu        sync.Mutex
	rescueKey func(server string) string
}

// Config returns the lab's configuration, defaults filled in.
func (l *Lab) Config() Config { return l.cfg }

// State reads the lab's current state.json.
func (l *Lab) State() (State, error) { return l.store.get() }

// SetRescueKeySource tells the lab where a rebooting server's rescue key
// comes from (the simulator's rescueSshKey at the moment of the reboot).
// Without a source, a rescue boot accepts no key at all.
func (l *Lab) SetRescueKeySource(f func(server string) string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rescueKey = f
}

func (l *Lab) rescueKeyOf(server string) string {
	l.mu.Lock()
	f := l.rescueKey
	l.mu.Unlock()
	if f == nil {
		return ""
	}
	return f(server)
}

// Up builds the lab described by cfg: namespaces, keys, disk image, the
// primary's normal OS, the spare's sshd, and, when cfg.ServeCommand is set,
// the simulator daemon. If the lab already exists it returns ErrAlreadyUp
// and changes nothing; if building fails half-way it removes what it made.
func Up(ctx context.Context, cfg Config) (*Lab, error) {
	c := cfg.withDefaults()
	if err := c.validate(); err != nil {
		return nil, err
	}
	nss, err := labNamespaces(c.Prefix)
	if err != nil {
		return nil, err
	}
	if exists(c.Paths().State) || len(nss) > 0 {
		return nil, fmt.Errorf("%w (dir %s, namespaces %v)", ErrAlreadyUp, c.Dir, nss)
	}
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create lab dir: %w", err)
	}
	if err := os.Chmod(c.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create lab dir: %w", err)
	}
	if err := os.WriteFile(filepath.Join(c.Dir, markerFile), []byte("made by takeover lab up\n"), 0o600); err != nil {
		return nil, fmt.Errorf("create lab dir: %w", err)
	}
	l := &Lab{cfg: c, store: newStore(c)}
	if err := l.store.write(State{Config: c, Processes: map[string]Proc{}}); err != nil {
		return nil, err
	}
	t0 := time.Now()
	if err := l.up(ctx); err != nil {
		derr := Down(context.WithoutCancel(ctx), c)
		return nil, errors.Join(fmt.Errorf("lab up: %w", err), derr)
	}
	c.Log.Info().Str("dir", c.Dir).Dur("took", time.Since(t0)).Msg("lab up")
	return l, nil
}

func (l *Lab) up(ctx context.Context) error {
	c, p := l.cfg, l.cfg.Paths()
	for _, d := range []string{filepath.Dir(p.OperatorKey), filepath.Join(c.Dir, "primary"), p.SpareMount, p.SpareFUSE, p.Logs} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("create lab dir: %w", err)
		}
	}
	if _, err := writeKeyPair(p.OperatorKey, "operator@takeover-lab"); err != nil {
		return err
	}
	if _, err := writeKeyPair(p.RescueKey, "rescue@takeover-lab"); err != nil {
		return err
	}
	pk, err := writeKeyPair(p.PrimaryHostKey, "root@"+c.Primary.Hostname)
	if err != nil {
		return err
	}
	sk, err := writeKeyPair(p.SpareHostKey, "root@"+c.Spare.Hostname)
	if err != nil {
		return err
	}
	if err := writeKnownHosts(c, pk, sk); err != nil {
		return err
	}
	app, err := sim.GenerateApp()
	if err != nil {
		return err
	}
	if err := writeOVHConf(c, app); err != nil {
		return err
	}
	if err := makeImage(ctx, c); err != nil {
		return err
	}
	if err := guardRoutes(ctx, c, true); err != nil {
		return fmt.Errorf("guard lab subnets in the root namespace: %w", err)
	}
	err = buildNetwork(ctx, c, func(ns string) error {
		return l.store.update(func(st *State) error {
			st.Namespaces = appendUnique(st.Namespaces, ns)
			return nil
		})
	})
	if err != nil {
		return err
	}
	if err := routeFIP(ctx, c, c.FailoverIP, c.Primary.Public.Addr()); err != nil {
		return err
	}
	err = l.store.update(func(st *State) error {
		st.RoutedTo = c.Primary.Server
		if err := l.startSpare(ctx, st); err != nil {
			return err
		}
		if err := l.startNormal(ctx, st); err != nil {
			return err
		}
		st.Complete = true
		return nil
	})
	if err != nil {
		return err
	}
	if len(c.ServeCommand) > 0 {
		return l.startServe(ctx)
	}
	return nil
}

// startServe starts cfg.ServeCommand in the ops namespace and waits until
// the API port answers.
func (l *Lab) startServe(ctx context.Context) error {
	c := l.cfg
	log := filepath.Join(c.Paths().Logs, procServe+".log")
	pr, err := startDaemon(c.NSPath(roleOps), log, c.ServeCommand...)
	if err != nil {
		return err
	}
	if err := l.store.update(func(st *State) error { st.Processes[procServe] = pr; return nil }); err != nil {
		return err
	}
	addr := netip.AddrPortFrom(c.Ops.Public.Addr(), c.APIPort).String()
	if err := c.waitTCP(ctx, roleOps, addr, 15*time.Second); err != nil {
		if !pr.alive() {
			return fmt.Errorf("start simulator: %s exited (see %s)", c.ServeCommand[0], log)
		}
		return fmt.Errorf("start simulator: %w (see %s)", err, log)
	}
	return nil
}

// Open returns the lab recorded in cfg.Dir (only Dir and Log of cfg are
// used; the rest comes from state.json). No lab there: ErrNotUp.
func Open(cfg Config) (*Lab, error) {
	c := cfg.withDefaults()
	s := newStore(c)
	if !exists(s.path) {
		return nil, fmt.Errorf("%w (no %s)", ErrNotUp, s.path)
	}
	st, err := s.get()
	if err != nil {
		return nil, err
	}
	rc := st.Config.withDefaults()
	rc.Log = cfg.Log
	if len(cfg.ServeCommand) > 0 {
		rc.ServeCommand = cfg.ServeCommand
	}
	return &Lab{cfg: rc, store: newStore(rc)}, nil
}

// Down removes the lab: see [Down].
func (l *Lab) Down(ctx context.Context) error { return Down(ctx, l.cfg) }

// Down removes every namespace (cfg.Prefix*), process, mount and loop device
// the lab made, using state.json when it is readable (its prefix and dir win
// over cfg's) and what it finds otherwise, then the lab directory. It
// returns an error listing anything still left. Down on a lab that is not
// up returns nil.
func Down(ctx context.Context, cfg Config) error {
	c := cfg.withDefaults()
	s := newStore(c)
	st, serr := s.read()
	if serr == nil {
		log := c.Log
		c = st.Config.withDefaults()
		c.Log = log
	}
	if err := c.validate(); err != nil {
		return err
	}
	var errs []error
	// the simulator first: no hook may run while the lab is torn down
	if pr, ok := st.Processes[procServe]; ok {
		if err := pr.stop(ctx, 3*time.Second); err != nil {
			errs = append(errs, err)
		}
		if st2, err := s.read(); err == nil {
			st = st2
		}
	}
	var recorded []Proc
	for _, pr := range st.Processes {
		recorded = append(recorded, pr)
	}
	if err := stopAll(ctx, 3*time.Second, recorded); err != nil {
		errs = append(errs, err)
	}
	nss, err := labNamespaces(c.Prefix)
	if err != nil {
		errs = append(errs, err)
	}
	var inNS []Proc
	for _, ns := range nss {
		ps, err := nsPIDs("/run/netns/" + ns)
		if err != nil {
			errs = append(errs, err)
		}
		inNS = append(inNS, ps...)
	}
	if err := stopAll(ctx, 3*time.Second, inNS); err != nil {
		errs = append(errs, err)
	}
	if err := releaseUnder(ctx, c.Dir, nil); err != nil {
		errs = append(errs, err)
	}
	for _, ns := range nss {
		if err := ipc(ctx, "netns", "del", ns); err != nil {
			errs = append(errs, err)
		}
	}
	_ = guardRoutes(ctx, c, false)
	left := waitLeftovers(ctx, c, append(recorded, inNS...), 3*time.Second)
	if len(left) > 0 {
		errs = append(errs, fmt.Errorf("lab down: left behind: %v", left))
		return errors.Join(errs...)
	}
	if exists(filepath.Join(c.Dir, markerFile)) {
		if err := os.RemoveAll(c.Dir); err != nil {
			errs = append(errs, fmt.Errorf("remove lab dir: %w", err))
		}
	}
	if len(errs) == 0 {
		c.Log.Info().Str("dir", c.Dir).Msg("lab down")
	}
	return errors.Join(errs...)
}

// leftovers lists what of the lab still exists.
func leftovers(c Config, procs []Proc) []string {
	var left []string
	nss, _ := labNamespaces(c.Prefix)
	for _, ns := range nss {
		left = append(left, "namespace "+ns)
	}
	mps, _ := mountsUnder(c.Dir)
	for _, m := range mps {
		left = append(left, "mount "+m)
	}
	loops, _ := loopsUnder(c.Dir)
	for _, lp := range loops {
		left = append(left, "loop "+lp.Device+" ("+lp.Backing+")")
	}
	for _, p := range procs {
		if p.alive() && p.PID != os.Getpid() {
			left = append(left, "pid "+strconv.Itoa(p.PID)+" ("+p.Cmd+")")
		}
	}
	return left
}

func waitLeftovers(ctx context.Context, c Config, procs []Proc, d time.Duration) []string {
	deadline := time.Now().Add(d)
	for {
		left := leftovers(c, procs)
		if len(left) == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			return left
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ProcStatus is one recorded process.
type ProcStatus struct {
	Name  string `json:"name"`
	PID   int    `json:"pid"`
	Alive bool   `json:"alive"`
	Cmd   string `json:"cmd"`
}

// Report is what `takeover lab status` shows.
type Report struct {
	Dir        string       `json:"dir"`
	Up         bool         `json:"up"` // state.json says Up completed
	Endpoint   string       `json:"endpoint"`
	Namespaces []string     `json:"namespaces"`
	Processes  []ProcStatus `json:"processes"`
	Mounts     []string     `json:"mounts"`
	Loops      []Loop       `json:"loops"`
	Primary    string       `json:"primary"` // normal | rescue | off
	Spare      string       `json:"spare"`   // normal | off
	FailoverIP string       `json:"failover_ip"`
	RoutedVia  string       `json:"routed_via,omitempty"` // next hop the router uses now
	RoutedTo   string       `json:"routed_to,omitempty"`  // server owning that next hop
}

// Status observes the lab: namespaces and mounts as they are, processes
// from state.json checked for life, the failover IP's route as the router
// has it. A lab that is not up gives a Report with Up false and no error.
func Status(ctx context.Context, cfg Config) (Report, error) {
	c := cfg.withDefaults()
	s := newStore(c)
	st, serr := s.read()
	if serr == nil {
		c = st.Config.withDefaults()
	}
	out := Report{Dir: c.Dir, Up: serr == nil && st.Complete, Endpoint: c.Endpoint(),
		Primary: st.Primary, Spare: st.Spare, FailoverIP: c.FailoverIP.String()}
	var errs []error
	var err error
	if out.Namespaces, err = labNamespaces(c.Prefix); err != nil {
		errs = append(errs, err)
	}
	if out.Mounts, err = mountsUnder(c.Dir); err != nil {
		errs = append(errs, err)
	}
	if out.Loops, err = loopsUnder(c.Dir); err != nil {
		errs = append(errs, err)
	}
	for name, pr := range st.Processes {
		out.Processes = append(out.Processes, ProcStatus{Name: name, PID: pr.PID, Alive: pr.alive(), Cmd: pr.Cmd})
	}
	sort.Slice(out.Processes, func(i, j int) bool { return out.Processes[i].Name < out.Processes[j].Name })
	if exists(c.NSPath(roleSwitch)) {
		if via, err := routeVia(ctx, c, c.FailoverIP.Addr()); err == nil {
			out.RoutedVia = via.String()
			out.RoutedTo = c.serverByAddr(via)
		}
	}
	return out, errors.Join(errs...)
}

func (c Config) serverByAddr(a netip.Addr) string {
	switch a {
	case c.Primary.Public.Addr():
		return c.Primary.Server
	case c.Spare.Public.Addr():
		return c.Spare.Server
	}
	return ""
}

func (c Config) hostByServer(server string) (Host, string, bool) {
	switch server {
	case c.Primary.Server:
		return c.Primary, rolePrimary, true
	case c.Spare.Server:
		return c.Spare, roleSpare, true
	}
	return Host{}, "", false
}

// RebootHook makes a simulator reboot real: every process of the server's
// namespace stops, its mounts and loop devices are released, then it boots
// what boot says. Primary: "harddisk" starts the normal OS, "rescue" the
// rescue system (fresh host key, the rescue key from the key source),
// "power" leaves it off. Spare: "harddisk" restarts its sshd, "power" leaves
// it off; rescue is not modelled for the spare.
func (l *Lab) RebootHook(ctx context.Context, server string, boot provider.Boot) error {
	c := l.cfg
	_, role, ok := c.hostByServer(server)
	if !ok {
		return fmt.Errorf("lab reboot %s: %w", server, provider.ErrNotFound)
	}
	t0 := time.Now()
	err := l.store.update(func(st *State) error {
		switch role {
		case rolePrimary:
			if err := l.stopHost(ctx, st, rolePrimary, procPrimarySSHD, procPrimaryHTTPD, procRescueSSHD); err != nil {
				return err
			}
			st.Primary, st.PrimaryBoot = PersonalityOff, boot.ID
			switch boot.Type {
			case "harddisk":
				return l.startNormal(ctx, st)
			case "rescue":
				return l.startRescue(ctx, st, boot.Kernel, l.rescueKeyOf(server))
			case "power":
				return nil
			}
		case roleSpare:
			if err := l.stopHost(ctx, st, roleSpare, procSpareSSHD); err != nil {
				return err
			}
			st.Spare = PersonalityOff
			switch boot.Type {
			case "harddisk":
				return l.startSpare(ctx, st)
			case "power":
				return nil
			}
		}
		return fmt.Errorf("boot type %q (kernel %q) is not modelled for %s", boot.Type, boot.Kernel, role)
	})
	if err != nil {
		return fmt.Errorf("lab reboot %s into %s: %w", server, boot.Type, err)
	}
	c.Log.Info().Str("server", server).Str("boot", boot.Type).Dur("took", time.Since(t0)).Msg("lab reboot")
	return nil
}

// MoveHook makes a simulator IP move real: the router sends ip via the
// main address of server to from now on, checked with `ip route get`.
func (l *Lab) MoveHook(ctx context.Context, ip netip.Prefix, from, to string) error {
	h, _, ok := l.cfg.hostByServer(to)
	if !ok {
		return fmt.Errorf("lab move %s to %s: %w", ip, to, provider.ErrNotFound)
	}
	err := l.store.update(func(st *State) error {
		if err := routeFIP(ctx, l.cfg, ip, h.Public.Addr()); err != nil {
			return err
		}
		if ip == l.cfg.FailoverIP {
			st.RoutedTo = to
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("lab move %s from %s to %s: %w", ip, from, to, err)
	}
	l.cfg.Log.Info().Str("ip", ip.String()).Str("from", from).Str("to", to).Msg("lab move")
	return nil
}

// RunbookValues returns the values a runbook for this lab needs, keyed by
// their runbook path (the package documentation lists the files):
//
//	provider.endpoint, ovh_conf, primary.server, primary.address,
//	primary.private_address, primary.rescue.key, primary.rescue.kernel,
//	primary.ssh.address, primary.ssh.key, primary.ssh.known_hosts,
//	spare.server, spare.private_address, spare.ssh.address, spare.ssh.key,
//	spare.ssh.known_hosts, data.disks.device, data.disks.label,
//	lab.image, data.disks.fstype, data.disks.mount, data.disks.expect, data.fuse_dir,
//	services.start, services.health.http, failover_ip, index_body
func (l *Lab) RunbookValues() map[string]string { return l.cfg.RunbookValues() }

// RunbookValues is [Lab.RunbookValues] for a lab that need not be up.
func (c Config) RunbookValues() map[string]string {
	c = c.withDefaults()
	p := c.Paths()
	return map[string]string{
		"provider.endpoint":       c.Endpoint(),
		"ovh_conf":                p.OVHConf,
		"primary.server":          c.Primary.Server,
		"primary.address":         c.Primary.Public.Addr().String(),
		"primary.private_address": c.Primary.Private.Addr().String(),
		"primary.rescue.key":      p.RescueKey,
		"primary.rescue.kernel":   c.RescueKernel,
		"primary.ssh.address":     hostAddr(c.Primary, 22),
		"primary.ssh.key":         p.OperatorKey,
		"primary.ssh.known_hosts": p.KnownHosts,
		"spare.server":            c.Spare.Server,
		"spare.private_address":   c.Spare.Private.Addr().String(),
		"spare.ssh.address":       hostAddr(c.Spare, 22),
		"spare.ssh.key":           p.OperatorKey,
		"spare.ssh.known_hosts":   p.KnownHosts,
		"data.disks.device":       c.RescueDisk,
		"lab.image":               p.Image,
		"data.disks.label":        "labwww",
		"data.disks.fstype":       "ext4",
		"data.disks.mount":        p.SpareMount,
		"data.disks.expect":       "index.html,data/hello.txt",
		"data.fuse_dir":           p.SpareFUSE,
		"services.start":          "busybox httpd -p 80 -h " + p.SpareMount,
		"services.health.http":    "http://" + c.FailoverIP.Addr().String() + "/index.html",
		"failover_ip":             c.FailoverIP.String(),
		"index_body":              IndexBody,
	}
}
