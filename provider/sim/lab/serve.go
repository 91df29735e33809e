package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"time"

	"github.com/takeover-dev/takeover/provider/sim"
)

// SimConfig returns the simulator configuration of the lab as it stands:
// the application from ovh.conf, ns1 and ns2 with their main IPs and the
// default netboots, the primary's netboot as last booted, the failover IP
// routed where the router sends it, and the lab's latencies.
func (l *Lab) SimConfig() (sim.Config, error) {
	c := l.cfg
	app, err := c.ReadCredentials()
	if err != nil {
		return sim.Config{}, err
	}
	st, err := l.store.get()
	if err != nil {
		return sim.Config{}, err
	}
	routed := st.RoutedTo
	if routed == "" {
		routed = c.Primary.Server
	}
	return sim.Config{
		Apps: []sim.App{app},
		Servers: []sim.ServerConfig{
			{Name: c.Primary.Server, IP: c.Primary.Public.Addr().String(), Datacenter: c.Datacenter, BootID: st.PrimaryBoot},
			{Name: c.Spare.Server, IP: c.Spare.Public.Addr().String(), Datacenter: c.Datacenter},
		},
		IPs: []sim.IPConfig{{Block: c.FailoverIP.String(), RoutedTo: routed}},
		Latency: sim.Latency{
			TaskStart:   c.TaskStartLatency,
			RebootDoing: c.RebootLatency,
			MoveDoing:   c.MoveLatency,
		},
		Seed: time.Now().UnixNano(),
		Log:  c.Log,
	}, nil
}

// NewSim builds the lab's simulator with the lab's hooks wired: reboots
// and IP moves become real, and a rescue boot gets the server's
// rescueSshKey at that moment. The caller serves it and Closes it.
func (l *Lab) NewSim() (*sim.Sim, error) {
	cfg, err := l.SimConfig()
	if err != nil {
		return nil, err
	}
	s := sim.New(cfg)
	s.OnReboot(l.RebootHook)
	s.OnMove(l.MoveHook)
	l.SetRescueKeySource(func(server string) string {
		srv, _ := s.Server(server)
		return srv.RescueSSHKey
	})
	return s, nil
}

// Serve runs the lab's simulator (see [Lab.NewSim]) on the ops host's
// public address, Config.Endpoint(), until ctx is cancelled. It opens the
// lab in cfg.Dir and works from any network namespace: its listening socket
// is made inside the ops namespace. This is `takeover lab serve`.
func Serve(ctx context.Context, cfg Config) error {
	l, err := Open(cfg)
	if err != nil {
		return fmt.Errorf("serve lab simulator: %w", err)
	}
	return l.Serve(ctx)
}

// Serve is [Serve] for an open lab.
func (l *Lab) Serve(ctx context.Context) error {
	c := l.cfg
	s, err := l.NewSim()
	if err != nil {
		return fmt.Errorf("serve lab simulator: %w", err)
	}
	defer s.Close()
	addr := netip.AddrPortFrom(c.Ops.Public.Addr(), c.APIPort).String()
	ln, err := c.listen(roleOps, addr)
	if err != nil {
		return fmt.Errorf("serve lab simulator: listen on %s in %s: %w", addr, c.NS(roleOps), err)
	}
	// record ourselves when started by hand rather than by Up
	pid := os.Getpid()
	err = l.store.update(func(st *State) error {
		if pr, ok := st.Processes[procServe]; !ok || !pr.alive() {
			start, _ := procStart(pid)
			st.Processes[procServe] = Proc{PID: pid, Start: start, Cmd: "lab serve"}
		}
		return nil
	})
	if err != nil {
		ln.Close()
		return fmt.Errorf("serve lab simulator: %w", err)
	}
	hs := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- hs.Serve(ln) }()
	c.Log.Info().Str("endpoint", c.Endpoint()).Msg("lab simulator serving")
	select {
	case err := <-done:
		return fmt.Errorf("serve lab simulator: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		return fmt.Errorf("serve lab simulator: shut down: %w", err)
	}
	if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve lab simulator: %w", err)
	}
	return nil
}

// HTTPClient returns an HTTP client whose connections are made from inside
// the lab namespace of role ("client", "ops", ...), for tests and drills run
// from the root namespace.
func (c Config) HTTPClient(role string) *http.Client {
	c = c.withDefaults()
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, address string) (net.Conn, error) {
			return c.DialContext(ctx, role, network, address)
		},
		DisableKeepAlives: true,
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}
