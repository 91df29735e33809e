package steps

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/takeover-dev/takeover/provider"
	"github.com/takeover-dev/takeover/runbooks"
	"github.com/takeover-dev/takeover/steps/remote"
)

// healthCmd renders one health check as a shell command run on a host.
func healthCmd(h runbooks.Health) string {
	t := h.Timeout.Duration
	if t <= 0 {
		t = 10 * time.Second
	}
	secs := strconv.Itoa(int((t + time.Second - 1) / time.Second))
	switch {
	case h.HTTP != "":
		status := h.Status
		if status == 0 {
			status = 200
		}
		return fmt.Sprintf(`code=$(curl -s -o /dev/null -w '%%{http_code}' --max-time %s %s); [ "$code" = %d ] || { echo "HTTP $code, want %d" >&2; exit 1; }`,
			secs, shq(h.HTTP), status, status)
	case h.TCP != "":
		host, port, _ := net.SplitHostPort(h.TCP)
		return fmt.Sprintf("timeout %s bash -c 'exec 3<>/dev/tcp/%s/%s'", secs, host, port)
	default:
		return fmt.Sprintf("timeout %s sh -c %s", secs, shq(h.Command))
	}
}

func describeHealth(h runbooks.Health) string {
	switch {
	case h.HTTP != "":
		return "http " + h.HTTP
	case h.TCP != "":
		return "tcp " + h.TCP
	}
	return "command " + h.Command
}

// healthy runs every health check of the runbook's services on c once.
func healthy(ctx context.Context, c *remote.Client, svcs []runbooks.Service) error {
	for _, s := range svcs {
		for _, h := range s.Health {
			if _, err := c.Run(ctx, healthCmd(h), nil); err != nil {
				return fmt.Errorf("service %s: health %s: %w", s.Name, describeHealth(h), err)
			}
		}
	}
	return nil
}

// ---- services on the spare --------------------------------------------------

// servicesStep starts the runbook's services on the spare, in order, and
// waits until every health check passes.
type servicesStep struct{}

func (servicesStep) Name() string { return StepServices }

func (servicesStep) Check(ctx context.Context, e *Env) (bool, error) {
	c, err := e.Hosts.Spare(ctx)
	if err != nil {
		return false, err
	}
	return healthy(ctx, c, e.Runbook.Services) == nil, nil
}

func (servicesStep) Do(ctx context.Context, e *Env) error {
	c, err := e.Hosts.Spare(ctx)
	if err != nil {
		return err
	}
	for _, s := range e.Runbook.Services {
		if healthy(ctx, c, []runbooks.Service{s}) == nil {
			continue
		}
		if _, err := c.Run(ctx, s.Start, nil); err != nil {
			return fmt.Errorf("start service %s on the spare: %w", s.Name, err)
		}
	}
	return waitHealthy(ctx, c, e.Runbook, e.Runbook.Services)
}

// waitHealthy retries the health checks until they pass or the runbook's
// services timeout ends.
func waitHealthy(ctx context.Context, c *remote.Client, rb *runbooks.Runbook, svcs []runbooks.Service) error {
	limit := rb.Timeouts.Services.Duration
	if limit <= 0 {
		limit = 2 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	delay := 100 * time.Millisecond
	for {
		err := healthy(ctx, c, svcs)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not healthy after %s: %w", limit, err)
		case <-time.After(delay):
		}
		delay = min(delay*2, 2*time.Second)
	}
}

func (servicesStep) Undo(ctx context.Context, e *Env) error {
	c, err := e.Hosts.Spare(ctx)
	if err != nil {
		return err
	}
	svcs := e.Runbook.Services
	stopped := 0
	for i := len(svcs) - 1; i >= 0; i-- {
		if svcs[i].Stop == "" {
			continue
		}
		if _, err := c.Run(ctx, svcs[i].Stop, nil); err != nil {
			// stopping a service that is not running is fine; one that is still healthy is not
			if healthy(ctx, c, svcs[i:i+1]) == nil {
				return fmt.Errorf("stop service %s on the spare: %w", svcs[i].Name, err)
			}
		}
		stopped++
	}
	if stopped == 0 {
		return ErrNoUndo
	}
	return nil
}

// ---- graceful stop on the primary (planned mode) ------------------------------

// stopPrimaryStep stops the runbook's services on the healthy primary, in
// reverse order, before it is rebooted into rescue. Any error stops the run.
type stopPrimaryStep struct{}

func (stopPrimaryStep) Name() string { return StepStopPrimary }

func (stopPrimaryStep) Check(ctx context.Context, e *Env) (bool, error) {
	return e.Flag("stopped")
}

func (stopPrimaryStep) Do(ctx context.Context, e *Env) error {
	c, err := e.Hosts.Primary(ctx, 30*time.Second)
	if err != nil {
		return err
	}
	svcs := e.Runbook.Services
	for i := len(svcs) - 1; i >= 0; i-- {
		if _, err := c.Run(ctx, svcs[i].Stop, nil); err != nil {
			return fmt.Errorf("stop service %s on the primary: %w", svcs[i].Name, err)
		}
	}
	if _, err := c.Run(ctx, "sync", nil); err != nil {
		return fmt.Errorf("sync on the primary: %w", err)
	}
	return e.Save(ctx, "stopped", true)
}

// Undo restarts the services on the primary when it is still in its own OS.
func (stopPrimaryStep) Undo(ctx context.Context, e *Env) error {
	c, err := e.Hosts.Primary(ctx, 10*time.Second)
	if err != nil {
		return ErrNoUndo // rebooted or gone: the fence's undo brings it back
	}
	for _, s := range e.Runbook.Services {
		if healthy(ctx, c, []runbooks.Service{s}) == nil {
			continue
		}
		if _, err := c.Run(ctx, s.Start, nil); err != nil {
			return fmt.Errorf("restart service %s on the primary: %w", s.Name, err)
		}
	}
	return nil
}

// ---- spare ready ------------------------------------------------------------

// spareReadyStep prepares the spare while the primary reboots: it is
// reachable, nothing is mounted on the target mount points, and none of the
// services answers yet (a spare already serving would mean two writers).
type spareReadyStep struct{}

func (spareReadyStep) Name() string { return StepSpareReady }

func (spareReadyStep) Check(ctx context.Context, e *Env) (bool, error) {
	return e.Flag("ready")
}

func (spareReadyStep) Do(ctx context.Context, e *Env) error {
	c, err := e.Hosts.Spare(ctx)
	if err != nil {
		return err
	}
	for _, s := range e.Runbook.Services {
		if healthy(ctx, c, []runbooks.Service{s}) == nil {
			return fmt.Errorf("service %s already answers on spare %s before the takeover: it would serve its own data, not the primary's; stop it there first", s.Name, e.Runbook.Spare.Server)
		}
	}
	for _, d := range e.Runbook.Data.Disks {
		if _, err := c.Run(ctx, mountedCmd(d.Mount), nil); err == nil {
			return fmt.Errorf("spare %s already has something mounted on %s: unmount it first (two writers must never share a disk)", e.Runbook.Spare.Server, d.Mount)
		}
		if _, err := c.Run(ctx, "mkdir -p "+shq(d.Mount)+" "+spareRunDir, nil); err != nil {
			return err
		}
	}
	return e.Save(ctx, "ready", true)
}

func (spareReadyStep) Undo(ctx context.Context, e *Env) error { return ErrNoUndo }

// ---- IP moves -----------------------------------------------------------------

// moveIPStep routes one failover IP to the spare. It refuses to run unless
// the fence is confirmed in this run; the move is requested once, its task
// polled and the route read back.
type moveIPStep struct{ ip netip.Prefix }

func (s moveIPStep) Name() string { return MoveStepName(s.ip) }

func (s moveIPStep) Check(ctx context.Context, e *Env) (bool, error) {
	r, err := e.Provider.RouteOf(ctx, s.ip)
	if err != nil {
		return false, err
	}
	return r == spareID(e.Runbook), nil
}

// ErrNotFenced is returned by an IP move attempted before the fence is
// confirmed in the same run.
var ErrNotFenced = errors.New("the primary is not confirmed fenced in this run")

func (s moveIPStep) Do(ctx context.Context, e *Env) error {
	if !fenceConfirmed(e) {
		return fmt.Errorf("refusing to move %s to %s: %w (step %s is not done, or was skipped)", s.ip, e.Runbook.Spare.Server, ErrNotFenced, StepConfirmRescue)
	}
	return moveIP(ctx, e, s.ip, "move", spareID(e.Runbook))
}

func moveIP(ctx context.Context, e *Env, ip netip.Prefix, key string, to provider.ServerID) error {
	if r, err := e.Provider.RouteOf(ctx, ip); err != nil {
		return err
	} else if r == to {
		return nil
	}
	ref, err := e.issueOnce(ctx, key, provider.ScopeIP, ip.String(), "genericMoveFloatingIp", func(ctx context.Context) (provider.TaskRef, error) {
		return e.Provider.MoveIP(ctx, ip, to)
	})
	if err != nil {
		return fmt.Errorf("move %s to %s: %w", ip, to, err)
	}
	if ref.ID == 0 {
		return nil
	}
	_, err = e.waitTask(ctx, ref, func(ctx context.Context) (bool, error) {
		r, err := e.Provider.RouteOf(ctx, ip)
		return r == to, err
	})
	if err != nil {
		if errors.Is(err, provider.ErrTaskFailed) {
			_ = e.forget(ctx, key)
		}
		return err
	}
	if r, err := e.Provider.RouteOf(ctx, ip); err != nil {
		return err
	} else if r != to {
		return fmt.Errorf("move of %s finished but it is routed to %q, not %s", ip, r, to)
	}
	e.Printf("          %s now routed to %s", ip, to)
	return nil
}

// Undo routes the IP back to the primary (once). A move still in flight
// (the orchestrator died while it ran) is waited for first: reading the
// route before it lands would leave the IP on the spare afterwards.
func (s moveIPStep) Undo(ctx context.Context, e *Env) error {
	inflight, found, err := e.settle(ctx, "move", provider.ScopeIP, s.ip.String(), "genericMoveFloatingIp")
	if err != nil {
		return err
	}
	if found {
		purgedIsFinished := func(context.Context) (bool, error) { return true, nil }
		if _, err := e.waitTask(ctx, inflight, purgedIsFinished); err != nil && !errors.Is(err, provider.ErrTaskFailed) {
			return fmt.Errorf("wait for the move of %s in flight: %w", s.ip, err)
		}
	}
	r, err := e.Provider.RouteOf(ctx, s.ip)
	if err != nil {
		return err
	}
	if r == primaryID(e.Runbook) {
		return ErrNoUndo
	}
	return moveIP(ctx, e, s.ip, "move-back", primaryID(e.Runbook))
}

// ---- probe through the IPs -------------------------------------------------------

// probeStep reaches each HTTP or TCP health endpoint through each failover
// IP from where takeover runs, proving clients can reach the spare.
type probeStep struct{}

func (probeStep) Name() string { return StepProbe }

// probeTargets maps each failover IP × HTTP/TCP health check to a URL or
// address that goes through the IP.
func probeTargets(rb *runbooks.Runbook) (urls []string, addrs []string) {
	for _, ip := range rb.FailoverIPs {
		if !ip.IsSingleIP() {
			continue
		}
		a := ip.Addr().String()
		for _, s := range rb.Services {
			for _, h := range s.Health {
				switch {
				case h.HTTP != "":
					u, err := url.Parse(h.HTTP)
					if err != nil {
						continue
					}
					if p := u.Port(); p != "" {
						u.Host = net.JoinHostPort(a, p)
					} else {
						u.Host = a
						if ip.Addr().Is6() {
							u.Host = "[" + a + "]"
						}
					}
					urls = append(urls, u.String())
				case h.TCP != "":
					_, port, err := net.SplitHostPort(h.TCP)
					if err == nil {
						addrs = append(addrs, net.JoinHostPort(a, port))
					}
				}
			}
		}
	}
	return urls, addrs
}

func probeOnce(ctx context.Context, urls, addrs []string) error {
	cl := &http.Client{Timeout: 5 * time.Second}
	for _, u := range urls {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return err
		}
		resp, err := cl.Do(req)
		if err != nil {
			return fmt.Errorf("probe %s: %w", u, err)
		}
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			return fmt.Errorf("probe %s: HTTP %d", u, resp.StatusCode)
		}
	}
	for _, a := range addrs {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", a)
		if err != nil {
			return fmt.Errorf("probe %s: %w", a, err)
		}
		c.Close()
	}
	return nil
}

func (probeStep) Check(ctx context.Context, e *Env) (bool, error) {
	return e.Flag("reached")
}

func (probeStep) Do(ctx context.Context, e *Env) error {
	urls, addrs := probeTargets(e.Runbook)
	if len(urls)+len(addrs) == 0 {
		e.Printf("          no HTTP or TCP health check to probe through the failover IPs")
		return e.Save(ctx, "reached", true)
	}
	limit := e.Runbook.Timeouts.IPMove.Duration
	if limit <= 0 {
		limit = 5 * time.Minute
	}
	pctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	delay := 100 * time.Millisecond
	for {
		err := probeOnce(pctx, urls, addrs)
		if err == nil {
			break
		}
		select {
		case <-pctx.Done():
			return fmt.Errorf("service not reachable through the failover IPs after %s: %w", limit, err)
		case <-time.After(delay):
		}
		delay = min(delay*2, 2*time.Second)
	}
	e.Printf("          reached %s", strings.Join(append(urls, addrs...), ", "))
	return e.Save(ctx, "reached", true)
}

func (probeStep) Undo(ctx context.Context, e *Env) error { return ErrNoUndo }

// ---- commit -----------------------------------------------------------------------

// commitStep marks the takeover as complete.
type commitStep struct{}

func (commitStep) Name() string { return StepCommit }
func (commitStep) Check(ctx context.Context, e *Env) (bool, error) {
	var at time.Time
	return e.Load("", "committed", &at)
}
func (commitStep) Do(ctx context.Context, e *Env) error {
	return e.Save(ctx, "committed", e.Clock().UTC())
}
func (commitStep) Undo(ctx context.Context, e *Env) error { return ErrNoUndo }
