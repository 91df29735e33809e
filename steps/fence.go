package steps

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/takeover-dev/takeover/provider"
	"github.com/takeover-dev/takeover/runbooks"
	"github.com/takeover-dev/takeover/steps/remote"
	"golang.org/x/crypto/ssh"
)

// Step names used across the plan; they are journal keys and must not change.
const (
	StepPreflight     = "preflight"
	StepConfirm       = "confirm"
	StepStopPrimary   = "stop-primary-services"
	StepSpareReady    = "spare-ready"
	StepFence         = "fence"
	StepConfirmRescue = "confirm-rescue"
	StepDisks         = "disks"
	StepExport        = "export"
	StepImport        = "import"
	StepServices      = "services"
	StepProbe         = "probe"
	StepCommit        = "commit"
	StepRestore       = "restore-provider-settings"
	movePrefix        = "move-ip-"
)

func primaryID(rb *runbooks.Runbook) provider.ServerID { return provider.ServerID(rb.Primary.Server) }
func spareID(rb *runbooks.Runbook) provider.ServerID   { return provider.ServerID(rb.Spare.Server) }
func ipsOf(rb *runbooks.Runbook) []netip.Prefix {
	var out []netip.Prefix
	for _, ip := range rb.FailoverIPs {
		out = append(out, ip.Prefix)
	}
	return out
}

// MoveStepName is the step that moves one failover IP.
func MoveStepName(ip netip.Prefix) string {
	if ip.IsSingleIP() {
		return movePrefix + ip.Addr().String()
	}
	return movePrefix + strings.ReplaceAll(ip.String(), "/", "_")
}

// ---- preflight ------------------------------------------------------------

// preflightStep checks, without side effects, that the runbook matches the
// provider's inventory and that the spare is reachable.
type preflightStep struct{}

func (preflightStep) Name() string { return StepPreflight }

func (preflightStep) Check(ctx context.Context, e *Env) (bool, error) {
	return e.Flag("verified")
}

func (preflightStep) Do(ctx context.Context, e *Env) error {
	drift, err := Drift(ctx, e.Provider, e.Runbook, e.StepDone(StepFence))
	if err != nil {
		return err
	}
	if len(drift) > 0 {
		return &DriftError{Items: drift}
	}
	c, err := e.Hosts.Spare(ctx)
	if err != nil {
		return err
	}
	need := []string{"mount", "losetup"}
	switch e.Runbook.Data.Attach {
	case "kernel":
		need = append(need, "nbd-client")
	case "fuse":
		need = append(need, "nbdfuse")
	}
	if e.Runbook.Data.Transport == "nfs" {
		need = []string{"mount"}
	}
	var missing []string
	for _, n := range need {
		if _, err := c.Run(ctx, "command -v "+n, nil); err != nil {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("spare %s lacks %s: install them there first", e.Runbook.Spare.Server, strings.Join(missing, ", "))
	}
	return e.Save(ctx, "verified", true)
}

func (preflightStep) Undo(ctx context.Context, e *Env) error { return ErrNoUndo }

// DriftItem is one difference between the runbook and the provider.
type DriftItem struct {
	What string `json:"what"`
	Want string `json:"want"`
	Got  string `json:"got"`
	Fix  string `json:"fix,omitempty"`
}

// DriftError lists the differences found by a preflight.
type DriftError struct{ Items []DriftItem }

func (e *DriftError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "the provider's inventory does not match the runbook (%d difference(s)):", len(e.Items))
	for _, d := range e.Items {
		fmt.Fprintf(&b, "\n  - %s\n      runbook:  %s\n      provider: %s", d.What, d.Want, d.Got)
		if d.Fix != "" {
			fmt.Fprintf(&b, "\n      fix:      %s", d.Fix)
		}
	}
	return b.String()
}

// Drift compares the runbook with the provider's inventory using read-only
// calls: both servers exist, the rescue boot exists, every failover IP is
// routed to the primary (or, when fenced is true, already to the spare) and
// can move to the spare.
func Drift(ctx context.Context, p provider.Provider, rb *runbooks.Runbook, fenced bool) ([]DriftItem, error) {
	var items []DriftItem
	primary, spare := primaryID(rb), spareID(rb)
	for _, s := range []provider.ServerID{primary, spare} {
		if _, err := p.Server(ctx, s); err != nil {
			if errors.Is(err, provider.ErrNotFound) {
				items = append(items, DriftItem{What: "server " + string(s), Want: "exists in the account", Got: "not found",
					Fix: "check the server name (OVH service name) in the runbook and the API credentials' account"})
				continue
			}
			return nil, err
		}
	}
	if len(items) > 0 {
		return items, nil
	}
	boots, err := p.Boots(ctx, primary)
	if err != nil {
		return nil, fmt.Errorf("list boots of %s: %w", primary, err)
	}
	if _, err := provider.FindBoot(boots, rb.Primary.Rescue.Kernel); err != nil {
		var have []string
		for _, b := range boots {
			have = append(have, b.Kernel)
		}
		items = append(items, DriftItem{What: "rescue boot of " + string(primary), Want: "kernel " + rb.Primary.Rescue.Kernel,
			Got: "kernels " + strings.Join(have, ", "), Fix: "set primary.rescue.kernel to one of the rescue kernels listed"})
	}
	for _, ip := range ipsOf(rb) {
		route, err := p.RouteOf(ctx, ip)
		if err != nil {
			if errors.Is(err, provider.ErrNotFound) {
				items = append(items, DriftItem{What: "failover IP " + ip.String(), Want: "exists in the account", Got: "not found"})
				continue
			}
			return nil, fmt.Errorf("read route of %s: %w", ip, err)
		}
		switch {
		case route == primary:
			if err := p.CanMoveIP(ctx, ip, spare); err != nil {
				items = append(items, DriftItem{What: "failover IP " + ip.String(), Want: "movable to " + string(spare),
					Got: err.Error(), Fix: "check the region, vMACs and offer of the spare (OVH ipCanBeMovedTo)"})
			}
		case route == spare && fenced:
		default:
			got := "routed to " + string(route)
			if route == "" {
				got = "parked (routed nowhere)"
			}
			items = append(items, DriftItem{What: "failover IP " + ip.String(), Want: "routed to primary " + string(primary), Got: got,
				Fix: "if a takeover already happened, see \"takeover status\"; otherwise fix the runbook's failover_ips"})
		}
	}
	return items, nil
}

// ---- confirm --------------------------------------------------------------

// confirmStep asks the operator to approve the fence and the IP moves, and
// journals who approved and how long it took.
type confirmStep struct{}

func (confirmStep) Name() string { return StepConfirm }

func (confirmStep) Check(ctx context.Context, e *Env) (bool, error) {
	var a approval
	return e.Load("", "approval", &a)
}

type approval struct {
	How    string        `json:"how"`
	Waited time.Duration `json:"waitedNs"`
}

func (confirmStep) Do(ctx context.Context, e *Env) error {
	if e.Prompter == nil {
		return errors.New("no one can approve the fence: run from a terminal, or pass --yes --accept-risk=fence,ip-move")
	}
	rb := e.Runbook
	var ips []string
	for _, ip := range rb.FailoverIPs {
		ips = append(ips, ip.String())
	}
	q := fmt.Sprintf("About to HARD-REBOOT %s into the rescue system (%s), export its disks to %s,\nstart the services there and move %s to it. Clients lose the primary now.",
		rb.Primary.Server, rb.Primary.Rescue.Kernel, rb.Spare.Server, strings.Join(ips, ", "))
	start := e.Clock()
	how, err := e.Prompter.Confirm(ctx, q, rb.Primary.Server)
	if err != nil {
		return err
	}
	return e.Save(ctx, "approval", approval{How: how, Waited: e.Clock().Sub(start)})
}

func (confirmStep) Undo(ctx context.Context, e *Env) error { return ErrNoUndo }

// ---- fence ----------------------------------------------------------------

// fenceStep selects the rescue netboot by kernel name, sets the rescue SSH
// key, turns monitoring off and hard-reboots the primary, once. OVH keeps
// the netboot across reboots, so a stray reboot lands in rescue again.
type fenceStep struct{}

// serverBefore is what the fence changes, recorded to be restored.
type serverBefore struct {
	BootID         int64  `json:"bootId"`
	RescueSSHKey   string `json:"rescueSshKey"`
	Monitoring     bool   `json:"monitoring"`
	NoIntervention bool   `json:"noIntervention"`
}

func (fenceStep) Name() string { return StepFence }

func rescueBoot(ctx context.Context, e *Env) (provider.Boot, error) {
	boots, err := e.Provider.Boots(ctx, primaryID(e.Runbook))
	if err != nil {
		return provider.Boot{}, fmt.Errorf("list boots: %w", err)
	}
	return provider.FindBoot(boots, e.Runbook.Primary.Rescue.Kernel)
}

func (fenceStep) Check(ctx context.Context, e *Env) (bool, error) {
	srv, err := e.Provider.Server(ctx, primaryID(e.Runbook))
	if err != nil {
		return false, err
	}
	boot, err := rescueBoot(ctx, e)
	if err != nil {
		return false, err
	}
	if srv.BootID != boot.ID {
		return false, nil
	}
	var ref provider.TaskRef
	if ok, err := e.Load("", "reboot.task", &ref); err != nil || !ok || ref.ID == 0 {
		return false, err
	}
	t, err := e.Provider.Task(ctx, ref)
	if errors.Is(err, provider.ErrNotFound) {
		return true, nil // purged by the provider: old and finished
	}
	if err != nil {
		return false, err
	}
	return t.Status == provider.TaskDone, nil
}

func (fenceStep) Do(ctx context.Context, e *Env) error {
	id := primaryID(e.Runbook)
	srv, err := e.Provider.Server(ctx, id)
	if err != nil {
		return err
	}
	var before serverBefore
	if ok, err := e.Load("", "before", &before); err != nil {
		return err
	} else if !ok {
		before = serverBefore{BootID: srv.BootID, RescueSSHKey: srv.RescueSSHKey, Monitoring: srv.Monitoring, NoIntervention: srv.NoIntervention}
		if err := e.Save(ctx, "before", before); err != nil {
			return err
		}
	}
	boot, err := rescueBoot(ctx, e)
	if err != nil {
		return err
	}
	pub, err := remote.PublicKeyOf(expand(e.Runbook.Primary.Rescue.Key))
	if err != nil {
		return fmt.Errorf("rescue key: %w", err)
	}
	var u provider.ServerUpdate
	if srv.BootID != boot.ID {
		u.BootID = &boot.ID
	}
	if strings.TrimSpace(srv.RescueSSHKey) != strings.TrimSpace(pub) {
		u.RescueSSHKey = &pub
	}
	if srv.Monitoring {
		off := false
		u.Monitoring = &off
	}
	if u != (provider.ServerUpdate{}) {
		if err := e.Provider.UpdateServer(ctx, id, u); err != nil {
			return fmt.Errorf("select rescue boot %s (id %d) and rescue key: %w", boot.Kernel, boot.ID, err)
		}
	}
	e.Hosts.DropPrimary()
	ref, err := e.issueOnce(ctx, "reboot", provider.ScopeServer, string(id), "hardReboot", func(ctx context.Context) (provider.TaskRef, error) {
		// the time of the request that really goes out: confirm-rescue
		// checks the rescue booted after it
		if err := e.Save(ctx, "reboot.requestedAt", e.Clock().UTC()); err != nil {
			return provider.TaskRef{}, err
		}
		return e.Provider.Reboot(ctx, id)
	})
	if err != nil {
		return fmt.Errorf("hard reboot: %w", err)
	}
	e.Printf("          reboot of %s into %s requested (%s)", id, boot.Kernel, ref)
	if _, err := e.waitTask(ctx, ref, nil); err != nil {
		if errors.Is(err, provider.ErrTaskFailed) {
			_ = e.forget(ctx, "reboot")
		}
		return err
	}
	return nil
}

// Undo sets the netboot back to what it was, restores monitoring and
// reboots the primary into its own OS (once), then waits for it.
func (fenceStep) Undo(ctx context.Context, e *Env) error {
	id := primaryID(e.Runbook)
	var before serverBefore
	ok, err := e.Load("", "before", &before)
	if err != nil {
		return err
	}
	if !ok {
		return ErrNoUndo
	}
	srv, err := e.Provider.Server(ctx, id)
	if err != nil {
		return err
	}
	var u provider.ServerUpdate
	if srv.BootID != before.BootID {
		u.BootID = &before.BootID
	}
	if srv.Monitoring != before.Monitoring {
		u.Monitoring = &before.Monitoring
	}
	if u != (provider.ServerUpdate{}) {
		if err := e.Provider.UpdateServer(ctx, id, u); err != nil {
			return fmt.Errorf("set netboot of %s back to boot %d: %w", id, before.BootID, err)
		}
	}
	// A reboot whose reply was lost counts: look for its task too.
	if _, rebooted, err := e.settle(ctx, "reboot", provider.ScopeServer, string(id), "hardReboot"); err != nil {
		return err
	} else if !rebooted {
		return nil // never rebooted: nothing more to undo
	}
	e.Hosts.DropRescue()
	ref, err := e.issueOnce(ctx, "unfence-reboot", provider.ScopeServer, string(id), "hardReboot", func(ctx context.Context) (provider.TaskRef, error) {
		return e.Provider.Reboot(ctx, id)
	})
	if err != nil {
		return fmt.Errorf("reboot %s into its own OS: %w", id, err)
	}
	if _, err := e.waitTask(ctx, ref, nil); err != nil {
		if errors.Is(err, provider.ErrTaskFailed) {
			_ = e.forget(ctx, "unfence-reboot")
		}
		return err
	}
	if e.Runbook.Primary.SSH != nil {
		if _, err := e.Hosts.Primary(ctx, e.Runbook.Timeouts.RescueSSH.Duration); err != nil {
			return fmt.Errorf("primary rebooted but its OS does not answer: %w", err)
		}
	}
	return nil
}

// ---- confirm rescue ------------------------------------------------------

// confirmRescueStep proves the primary is fenced: the rescue key works, the
// host key is not the primary's normal one, the system says it is a rescue
// system, and it booted after our reboot request. Mere reachability is not
// proof. The host key seen first is journalled and pinned for the run.
type confirmRescueStep struct{}

func (confirmRescueStep) Name() string { return StepConfirmRescue }

type rescueProof struct {
	Hostname    string  `json:"hostname"`
	BootID      string  `json:"bootId"`
	Cmdline     string  `json:"cmdline"`
	UptimeS     float64 `json:"uptimeSeconds"`
	HostKey     string  `json:"hostKey"`
	Fingerprint string  `json:"fingerprint"`
}

// pinnedRescueKey reads the rescue host key journalled by confirm-rescue.
func pinnedRescueKey(e *Env) (ssh.PublicKey, error) {
	var s string
	ok, err := e.Load(StepConfirmRescue, "hostKey", &s)
	if err != nil || !ok {
		return nil, err
	}
	return remote.ParseAuthorizedKey(s)
}

// fenceConfirmed reports whether confirm-rescue proved the fence in this
// run: done, with its proof journalled. A confirm-rescue skipped by the
// operator (resume --skip) counts as done for the runner but proves nothing.
func fenceConfirmed(e *Env) bool {
	var p rescueProof
	ok, err := e.Load(StepConfirmRescue, "proof", &p)
	return e.StepDone(StepConfirmRescue) && ok && err == nil
}

// rescueClient returns the pinned rescue connection for steps after
// confirm-rescue; it refuses when the fence is not confirmed in this run.
func rescueClient(ctx context.Context, e *Env) (*remote.Client, error) {
	if !fenceConfirmed(e) {
		return nil, fmt.Errorf("the rescue system of %s is not confirmed in this run: refusing to touch it", e.Runbook.Primary.Server)
	}
	key, err := pinnedRescueKey(e)
	if err != nil {
		return nil, err
	}
	if key == nil {
		return nil, errors.New("no rescue host key in the journal")
	}
	return e.Hosts.Rescue(ctx, key, nil, 30*time.Second)
}

// rescueForUndo is rescueClient for compensations: when the fence was
// never confirmed nothing was done on the rescue system, and when the
// rescue system has rebooted since (its host key changed) what this run
// started there (exports, arrays) went away with that boot. Both are
// ErrNoUndo, so a rollback is not stuck on a rescue system that moved on.
func rescueForUndo(ctx context.Context, e *Env) (*remote.Client, error) {
	if !fenceConfirmed(e) {
		return nil, ErrNoUndo
	}
	c, err := rescueClient(ctx, e)
	if errors.Is(err, remote.ErrHostKeyMismatch) {
		e.Log.Warn().Err(err).Msg("the rescue system rebooted since it was confirmed: what this run started there is gone with that boot")
		e.Printf("          the rescue system rebooted since it was confirmed: nothing of this run left there")
		return nil, ErrNoUndo
	}
	if err != nil {
		// Unreachable: the fence's own undo reboots the primary, which ends
		// whatever this run started on the rescue system; do not let the
		// rollback be stuck before it gets there.
		var ref provider.TaskRef
		if ok, _ := e.Load(StepFence, "reboot.task", &ref); ok && ref.ID != 0 {
			e.Log.Warn().Err(err).Msg("rescue system unreachable: its exports and arrays end with the reboot the fence's undo makes")
			e.Printf("          rescue system unreachable (%v): left to the reboot that undoes the fence", err)
			return nil, ErrNoUndo
		}
	}
	return c, err
}

const probeScript = `hostname; echo '--'; cat /proc/cmdline; echo '--'; cat /proc/sys/kernel/random/boot_id; echo '--'; cut -d' ' -f1 /proc/uptime`

func (confirmRescueStep) probe(ctx context.Context, e *Env, c *remote.Client) (rescueProof, error) {
	res, err := c.Run(ctx, probeScript, nil)
	if err != nil {
		return rescueProof{}, fmt.Errorf("probe rescue system: %w", err)
	}
	parts := strings.Split(string(res.Stdout), "--\n")
	if len(parts) != 4 {
		return rescueProof{}, fmt.Errorf("probe rescue system: unexpected output %q", res.Stdout)
	}
	up, err := strconv.ParseFloat(strings.TrimSpace(parts[3]), 64)
	if err != nil {
		return rescueProof{}, fmt.Errorf("probe rescue system: uptime %q: %w", parts[3], err)
	}
	k := c.HostKey()
	return rescueProof{
		Hostname: strings.TrimSpace(parts[0]), Cmdline: strings.TrimSpace(parts[1]), BootID: strings.TrimSpace(parts[2]),
		UptimeS: up, HostKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k))), Fingerprint: remote.Fingerprint(k),
	}, nil
}

// verify checks the proof against the reboot request time.
func (s confirmRescueStep) verify(e *Env, p rescueProof) error {
	if !strings.Contains(p.Hostname, "rescue") && !strings.Contains(p.Cmdline, "rescue") {
		return fmt.Errorf("%s answers with the rescue key but is not a rescue system (hostname %q, kernel command line %q): NOT fenced; refusing to go on",
			e.Runbook.Primary.Server, p.Hostname, p.Cmdline)
	}
	var req time.Time
	if ok, err := e.Load(StepFence, "reboot.requestedAt", &req); err != nil {
		return err
	} else if ok {
		booted := e.Clock().Add(-time.Duration(p.UptimeS * float64(time.Second)))
		const skew = 2 * time.Minute
		if booted.Before(req.Add(-skew)) {
			return fmt.Errorf("the rescue system of %s booted at %s, before our reboot request at %s: this is not the boot we asked for; refusing to go on",
				e.Runbook.Primary.Server, booted.UTC().Format(time.RFC3339), req.UTC().Format(time.RFC3339))
		}
	}
	return nil
}

func (s confirmRescueStep) Check(ctx context.Context, e *Env) (bool, error) {
	var proof rescueProof
	if ok, err := e.Load("", "proof", &proof); err != nil || !ok {
		return false, err
	}
	key, err := pinnedRescueKey(e)
	if err != nil || key == nil {
		return false, err
	}
	c, err := e.Hosts.Rescue(ctx, key, nil, 10*time.Second)
	if err != nil {
		return false, err
	}
	p, err := s.probe(ctx, e, c)
	if err != nil {
		return false, err
	}
	if p.BootID != proof.BootID {
		return false, fmt.Errorf("the rescue system of %s rebooted since it was confirmed (boot id %s, was %s): exports and imports must be redone; roll back or investigate",
			e.Runbook.Primary.Server, p.BootID, proof.BootID)
	}
	return true, nil
}

func (s confirmRescueStep) Do(ctx context.Context, e *Env) error {
	if !e.StepDone(StepFence) {
		return errors.New("the fence step is not done in this run")
	}
	pinned, err := pinnedRescueKey(e)
	if err != nil {
		return err
	}
	onFirst := func(k ssh.PublicKey) error {
		return e.Save(ctx, "hostKey", strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k))))
	}
	wait := e.Runbook.Timeouts.RescueSSH.Duration
	c, err := e.Hosts.Rescue(ctx, pinned, onFirst, wait)
	if err != nil {
		return err
	}
	p, err := s.probe(ctx, e, c)
	if err != nil {
		return err
	}
	if err := s.verify(e, p); err != nil {
		return err
	}
	e.Printf("          rescue confirmed: hostname %s, host key %s, up %.0fs", p.Hostname, p.Fingerprint, p.UptimeS)
	return e.Save(ctx, "proof", p)
}

func (confirmRescueStep) Undo(ctx context.Context, e *Env) error {
	e.Hosts.DropRescue()
	return ErrNoUndo
}

// ---- restore provider settings (finalizer) ---------------------------------

// restoreStep is a finalizer: when a run is rolled back it puts back the
// rescue SSH key the primary had before the run (the temporary key goes).
// A completed takeover keeps it: failback needs the rescue system.
type restoreStep struct{}

func (restoreStep) Name() string { return StepRestore }

func (restoreStep) Check(ctx context.Context, e *Env) (bool, error) {
	if !e.RollingBack() {
		return true, nil
	}
	var before serverBefore
	ok, err := e.Load(StepFence, "before", &before)
	if err != nil || !ok {
		return true, err
	}
	srv, err := e.Provider.Server(ctx, primaryID(e.Runbook))
	if err != nil {
		return false, err
	}
	return strings.TrimSpace(srv.RescueSSHKey) == strings.TrimSpace(before.RescueSSHKey), nil
}

func (restoreStep) Do(ctx context.Context, e *Env) error {
	var before serverBefore
	if _, err := e.Load(StepFence, "before", &before); err != nil {
		return err
	}
	return e.Provider.UpdateServer(ctx, primaryID(e.Runbook), provider.ServerUpdate{RescueSSHKey: &before.RescueSSHKey})
}

func (restoreStep) Undo(ctx context.Context, e *Env) error { return ErrNoUndo }
