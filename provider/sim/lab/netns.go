package lab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ipc runs an ip(8) command.
func ipc(ctx context.Context, args ...string) error {
	_, err := run(ctx, "ip", args...)
	return err
}

// sysctl writes a sysctl inside a network namespace.
func sysctl(ctx context.Context, nsPath, key, value string) error {
	_, err := run(ctx, "nsenter", "--net="+nsPath, "sysctl", "-q", "-w", key+"="+value)
	return err
}

// buildNetwork makes the namespaces, bridges, veths, addresses and routes.
// made is called with each namespace name right after it exists.
func buildNetwork(ctx context.Context, c Config, made func(ns string) error) error {
	sw := c.NS(roleSwitch)
	for _, r := range roles {
		if err := ipc(ctx, "netns", "add", c.NS(r)); err != nil {
			return fmt.Errorf("create namespace: %w", err)
		}
		if err := made(c.NS(r)); err != nil {
			return err
		}
		if err := ipc(ctx, "-n", c.NS(r), "link", "set", "lo", "up"); err != nil {
			return err
		}
	}
	cmds := [][]string{
		{"-n", sw, "link", "add", "brpub", "type", "bridge"},
		{"-n", sw, "link", "add", "brpriv", "type", "bridge"},
		{"-n", sw, "addr", "add", c.Router.String(), "dev", "brpub"},
		{"-n", sw, "link", "set", "brpub", "up"},
		{"-n", sw, "link", "set", "brpriv", "up"},
		// the client leg: a routed link, not on the bridges
		{"link", "add", "eth0", "netns", c.NS(roleClient), "type", "veth", "peer", "name", "cli", "netns", sw},
		{"-n", sw, "addr", "add", c.ClientRouter.String(), "dev", "cli"},
		{"-n", sw, "link", "set", "cli", "up"},
		{"-n", c.NS(roleClient), "addr", "add", c.Client.String(), "dev", "eth0"},
		{"-n", c.NS(roleClient), "link", "set", "eth0", "up"},
		{"-n", c.NS(roleClient), "route", "add", "default", "via", c.ClientRouter.Addr().String()},
	}
	for _, h := range []struct {
		role, short string
		host        Host
	}{{rolePrimary, "pri", c.Primary}, {roleSpare, "spa", c.Spare}, {roleOps, "ops", c.Ops}} {
		ns := c.NS(h.role)
		cmds = append(cmds,
			[]string{"link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", h.short + "-pub", "netns", sw},
			[]string{"link", "add", "eth1", "netns", ns, "type", "veth", "peer", "name", h.short + "-prv", "netns", sw},
			[]string{"-n", sw, "link", "set", h.short + "-pub", "master", "brpub", "up"},
			[]string{"-n", sw, "link", "set", h.short + "-prv", "master", "brpriv", "up"},
			[]string{"-n", ns, "addr", "add", h.host.Public.String(), "dev", "eth0"},
			[]string{"-n", ns, "addr", "add", h.host.Private.String(), "dev", "eth1"},
			[]string{"-n", ns, "link", "set", "eth0", "up"},
			[]string{"-n", ns, "link", "set", "eth1", "up"},
			[]string{"-n", ns, "route", "add", "default", "via", c.Router.Addr().String()},
		)
		if h.role == roleOps {
			// the failover IP is routed, never on-link: go through the router
			cmds = append(cmds, []string{"-n", ns, "route", "add", c.FailoverIP.String(), "via", c.Router.Addr().String()})
		} else {
			cmds = append(cmds, []string{"-n", ns, "addr", "add", c.FailoverIP.String(), "dev", "lo"})
		}
	}
	for _, a := range cmds {
		if err := ipc(ctx, a...); err != nil {
			return fmt.Errorf("build lab network: %w", err)
		}
	}
	sysctls := []struct{ role, key, val string }{
		{roleSwitch, "net.ipv4.ip_forward", "1"},
		// a router that sends redirects would teach hosts a stale next hop
		{roleSwitch, "net.ipv4.conf.all.send_redirects", "0"},
		{roleSwitch, "net.ipv4.conf.brpub.send_redirects", "0"},
		{roleOps, "net.ipv4.conf.all.accept_redirects", "0"},
		// the failover IP sits on lo of both servers: only answer ARP for
		// addresses of the interface asked, or both would claim it
		{rolePrimary, "net.ipv4.conf.all.arp_ignore", "1"},
		{roleSpare, "net.ipv4.conf.all.arp_ignore", "1"},
	}
	for _, s := range sysctls {
		if err := sysctl(ctx, c.NSPath(s.role), s.key, s.val); err != nil {
			return fmt.Errorf("build lab network: %w", err)
		}
	}
	return nil
}

// routeFIP routes ip via the main address of a server in the router
// namespace and checks the kernel picked it up.
func routeFIP(ctx context.Context, c Config, ip netip.Prefix, via netip.Addr) error {
	sw := c.NS(roleSwitch)
	if err := ipc(ctx, "-n", sw, "route", "replace", ip.String(), "via", via.String(), "dev", "brpub"); err != nil {
		return fmt.Errorf("route %s via %s: %w", ip, via, err)
	}
	got, err := routeVia(ctx, c, ip.Addr())
	if err != nil {
		return fmt.Errorf("route %s via %s: %w", ip, via, err)
	}
	if got != via {
		return fmt.Errorf("route %s via %s: the router sends it via %s", ip, via, got)
	}
	return nil
}

// routeVia asks the router which next hop it uses for ip.
func routeVia(ctx context.Context, c Config, ip netip.Addr) (netip.Addr, error) {
	out, err := run(ctx, "ip", "-n", c.NS(roleSwitch), "route", "get", ip.String())
	if err != nil {
		return netip.Addr{}, err
	}
	f := strings.Fields(out)
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "via" {
			return netip.ParseAddr(f[i+1])
		}
	}
	return netip.Addr{}, fmt.Errorf("ip route get %s: no next hop in %q", ip, strings.TrimSpace(out))
}

// labNamespaces lists existing namespaces whose name starts with prefix.
func labNamespaces(prefix string) ([]string, error) {
	ents, err := os.ReadDir("/run/netns")
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list network namespaces: %w", err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// mountsUnder lists mount points at or below dir, in mount order.
func mountsUnder(dir string) ([]string, error) {
	dir = filepath.Clean(dir)
	return scanMounts(func(mp, _ string) bool { return mp == dir || strings.HasPrefix(mp, dir+"/") })
}

// mountsOf lists mount points whose source is one of devs, in mount order.
func mountsOf(devs []string) ([]string, error) {
	if len(devs) == 0 {
		return nil, nil
	}
	return scanMounts(func(_, src string) bool {
		for _, d := range devs {
			if src == d {
				return true
			}
		}
		return false
	})
}

// scanMounts lists the mount points of /proc/self/mountinfo that match.
func scanMounts(match func(point, source string) bool) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("list mounts: %w", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent maj:min root point options [optional...] - fstype source superopts
		line := sc.Text()
		fs := strings.Fields(line)
		if len(fs) < 5 {
			continue
		}
		src := ""
		if _, rest, ok := strings.Cut(line, " - "); ok {
			if f := strings.Fields(rest); len(f) >= 2 {
				src = unescapeMount(f[1])
			}
		}
		if mp := unescapeMount(fs[4]); match(mp, src) {
			out = append(out, mp)
		}
	}
	return out, sc.Err()
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// unmount unmounts mp, lazily when it is busy.
func unmount(mp string) error {
	err := unix.Unmount(mp, 0)
	if err == unix.EBUSY {
		err = unix.Unmount(mp, unix.MNT_DETACH)
	}
	if err != nil && err != unix.EINVAL && err != unix.ENOENT {
		return fmt.Errorf("unmount %s: %w", mp, err)
	}
	return nil
}

// loopsUnder lists loop devices whose backing file is under dir.
func loopsUnder(dir string) ([]Loop, error) {
	files, err := filepath.Glob("/sys/block/loop*/loop/backing_file")
	if err != nil {
		return nil, err
	}
	dir = filepath.Clean(dir)
	var out []Loop
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // detached meanwhile
		}
		back := strings.TrimSuffix(strings.TrimSpace(string(b)), " (deleted)")
		if strings.HasPrefix(back, dir+"/") {
			dev := "/dev/" + filepath.Base(filepath.Dir(filepath.Dir(f)))
			out = append(out, Loop{Device: dev, Backing: back})
		}
	}
	return out, nil
}

// inNetns runs fn on an OS thread switched into the network namespace at
// nsPath. Sockets created by fn belong to that namespace for good.
func inNetns(nsPath string, fn func() error) error {
	target, err := os.Open(nsPath)
	if err != nil {
		return fmt.Errorf("enter %s: %w", nsPath, err)
	}
	defer target.Close()
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter %s: %w", nsPath, err)
	}
	defer orig.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter %s: %w", nsPath, err)
	}
	ferr := fn()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err == nil {
		runtime.UnlockOSThread()
	} // else: leave the thread locked; it exits with the goroutine
	return ferr
}

// DialContext dials address from inside the lab namespace of role ("client",
// "ops", "spare", ...). The connection's socket lives in that namespace.
func (c Config) DialContext(ctx context.Context, role, network, address string) (net.Conn, error) {
	var conn net.Conn
	err := inNetns(c.NSPath(role), func() error {
		var d net.Dialer
		var err error
		conn, err = d.DialContext(ctx, network, address)
		return err
	})
	return conn, err
}

// listen listens on address inside the namespace of role.
func (c Config) listen(role, address string) (net.Listener, error) {
	var l net.Listener
	err := inNetns(c.NSPath(role), func() error {
		var err error
		l, err = net.Listen("tcp", address)
		return err
	})
	return l, err
}

// waitTCP waits until address accepts TCP connections from role's namespace.
func (c Config) waitTCP(ctx context.Context, role, address string, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	for {
		dctx, dcancel := context.WithTimeout(ctx, 500*time.Millisecond)
		conn, err := c.DialContext(dctx, role, "tcp", address)
		dcancel()
		if err == nil {
			conn.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s from %s: %w", address, c.NS(role), err)
		case <-time.After(30 * time.Millisecond):
		}
	}
}

// guardedSubnets are the lab's subnets, made unreachable from the root
// namespace while the lab is up: a command run there by mistake (instead of
// inside the ops namespace) fails at once instead of sending lab traffic out
// through the host's default route.
func guardedSubnets(c Config) []netip.Prefix {
	seen := map[netip.Prefix]bool{}
	var out []netip.Prefix
	for _, p := range []netip.Prefix{c.Router, c.ClientRouter, c.Client, c.Primary.Public, c.Primary.Private, c.FailoverIP} {
		if !p.IsValid() {
			continue
		}
		m := p.Masked()
		if !seen[m] {
			seen[m] = true
			out = append(out, m)
		}
	}
	return out
}

// guardRoutes adds (or removes) unreachable routes for the lab's subnets in
// the root namespace.
func guardRoutes(ctx context.Context, c Config, add bool) error {
	var errs []error
	for _, p := range guardedSubnets(c) {
		if add {
			if err := ipc(ctx, "route", "replace", "unreachable", p.String()); err != nil {
				errs = append(errs, err)
			}
		} else {
			_ = ipc(ctx, "route", "del", "unreachable", p.String())
		}
	}
	return errors.Join(errs...)
}
