package steps

import (
	"fmt"
	"time"

	"github.com/takeover-dev/takeover/runbooks"
)

// LockNames are the leases a run of rb holds: both servers and every
// failover IP, so two runs can never act on the same machine or address.
func LockNames(rb *runbooks.Runbook) []string {
	names := []string{"server/" + rb.Primary.Server, "server/" + rb.Spare.Server}
	for _, ip := range rb.FailoverIPs {
		names = append(names, "ip/"+ip.String())
	}
	return names
}

// BuildPlan turns a runbook and a mode into the steps of a takeover.
//
// disaster: preflight → confirm → fence → confirm-rescue → disks → export →
// import → services → move-ip-* (in parallel) → probe → commit; the spare is
// prepared while the primary reboots.
// planned: as disaster, with the services stopped gracefully on the
// primary before the fence and, when data.copy is enabled, the data copied to
// the spare's own disks before the services start.
// drill: the disaster steps; the CLI then fails back (rolls the run back)
// and reports. Every mode ends with the restore-provider-settings finalizer.
func BuildPlan(rb *runbooks.Runbook, mode runbooks.Mode) (Plan, error) {
	switch mode {
	case runbooks.ModeDisaster, runbooks.ModePlanned, runbooks.ModeDrill:
	default:
		return Plan{}, fmt.Errorf("unknown mode %q (want disaster, planned or drill)", mode)
	}
	t := rb.Timeouts
	var nodes []Node
	add := func(n Node) { nodes = append(nodes, n) }
	primary, spare := rb.Primary.Server, rb.Spare.Server

	add(Node{Step: preflightStep{}, Timeout: 2 * time.Minute, Doc: Doc{
		Summary:  "check the runbook against the provider's inventory and reach the spare",
		Calls:    []string{"GET /dedicated/server/{primary,spare}", "GET /dedicated/server/{primary}/boot", "GET /ip/{ip} (routedTo)", "GET /dedicated/server/{spare}/ipCanBeMovedTo?ip=", "ssh spare: command -v nbdfuse/nbd-client, mount, losetup"},
		Checks:   "servers exist, rescue kernel " + rb.Primary.Rescue.Kernel + " exists, every IP routed to the primary and movable to the spare",
		Expected: 5 * time.Second}})
	gate := StepPreflight
	if rb.Modes.Disaster.Confirm {
		add(Node{Step: confirmStep{}, After: []string{StepPreflight}, Timeout: 24 * time.Hour, Doc: Doc{
			Summary: "ask the operator to type the primary's name (or --yes --accept-risk=fence,ip-move)",
			Checks:  "an approval is journalled (who, how long the wait took)"}})
		gate = StepConfirm
	}
	fenceAfter := []string{gate}
	if mode == runbooks.ModePlanned && rb.Modes.Planned.StopPrimaryServices {
		add(Node{Step: stopPrimaryStep{}, After: []string{gate}, Server: primary, Timeout: t.Services.Duration, Doc: Doc{
			Summary:  "stop the services gracefully on the healthy primary, then sync",
			Calls:    []string{"ssh primary: each service's stop command, sync"},
			Checks:   "the stop is journalled",
			Expected: 10 * time.Second}})
		fenceAfter = []string{StepStopPrimary}
	}
	add(Node{Step: fenceStep{}, After: fenceAfter, Server: primary, Timeout: t.Fence.Duration, Doc: Doc{
		Summary:  "select the rescue netboot " + rb.Primary.Rescue.Kernel + ", set the rescue key, monitoring off, hard reboot (once)",
		Calls:    []string{"PUT /dedicated/server/{primary} {bootId, rescueSshKey, monitoring}", "POST /dedicated/server/{primary}/reboot", "GET /dedicated/server/{primary}/task/{id}"},
		Checks:   "bootId is the rescue boot and our reboot task is done",
		Expected: 3 * time.Minute}})
	add(Node{Step: spareReadyStep{}, After: []string{StepPreflight}, Server: spare, Timeout: time.Minute, Doc: Doc{
		Summary:  "prepare the spare while the primary reboots: mount points free, directories made",
		Calls:    []string{"ssh spare: /proc/mounts, mkdir"},
		Checks:   "journalled ready",
		Expected: time.Second}})
	add(Node{Step: confirmRescueStep{}, After: []string{StepFence}, Server: primary, Timeout: t.RescueSSH.Duration + time.Minute, Doc: Doc{
		Summary:  "prove the fence: rescue key works, host key new (pinned for the run), hostname/cmdline say rescue, booted after our request",
		Calls:    []string{"ssh rescue: hostname, /proc/cmdline, boot_id, /proc/uptime"},
		Checks:   "same boot id and pinned host key as when confirmed",
		Expected: 30 * time.Second}})
	add(Node{Step: disksStep{}, After: []string{StepConfirmRescue}, Server: primary, Doc: Doc{
		Summary:  "discover disks (lsblk, blkid, mdadm --examine), assemble arrays per policy, map each runbook disk to a device",
		Calls:    []string{"ssh rescue: " + "lsblk -J -b, blkid -o export, mdadm --examine --scan -v, mdadm --assemble, vgchange -ay"},
		Checks:   "each device exists and is not mounted on the rescue side",
		Expected: 5 * time.Second}})
	exportCall := "ssh rescue: nbd-server -C CONF (listenaddr PRIVATE, authfile = SPARE only)"
	if rb.Data.NBD.Server == "nbdkit" {
		exportCall = "ssh rescue: nbdkit -i PRIVATE --filter=ip --filter=limit file DEV allow=SPARE deny=all limit=1"
	}
	exportDoc := Doc{Summary: "export each disk over NBD (" + rb.Data.NBD.Server + ") on " + rb.Primary.PrivateAddress.String() + " to " + rb.Spare.PrivateAddress.String() + " only, one client",
		Calls: []string{exportCall}, Checks: "each NBD server process alive", Expected: 2 * time.Second}
	importDoc := Doc{Summary: "attach each export on the spare (nbd-client, or nbdfuse + loop), e2fsck -n, mount, verify expected paths",
		Calls: []string{"ssh spare: nbd-client | nbdfuse + losetup, e2fsck -n, mount"}, Checks: "each mount point mounted and its expected paths present", Expected: 10 * time.Second}
	if rb.Data.Transport == runbooks.TransportNFS {
		exportDoc = Doc{Summary: "mount each disk on the rescue system and export it over NFS (" + rb.Data.NFS.Server + ") to " + rb.Spare.PrivateAddress.String() + " only",
			Calls: []string{"ssh rescue: mount, exportfs or ganesha.nfsd"}, Checks: "exports alive", Expected: 3 * time.Second}
		importDoc = Doc{Summary: "mount each NFS export on the spare, verify expected paths",
			Calls: []string{"ssh spare: mount -t nfs"}, Checks: "each mount point mounted and its expected paths present", Expected: 5 * time.Second}
	}
	add(Node{Step: exportStep{}, After: []string{StepDisks}, Server: primary, Doc: exportDoc})
	add(Node{Step: importStep{}, After: []string{StepExport, StepSpareReady}, Server: spare, Doc: importDoc})
	servicesAfter := StepImport
	if mode == runbooks.ModePlanned && rb.Data.Copy.Enabled {
		add(Node{Step: copyStep{}, After: []string{StepImport}, Server: spare, Doc: Doc{
			Summary: "copy the data to the spare's own disks (" + rb.Data.Copy.Target + "), bind it in place, detach the import",
			Calls:   []string{"ssh spare: rsync -aHAX | cp -a, mount --bind, umount, losetup -d"},
			Checks:  "mount points backed by the copy, import detached", Expected: time.Minute}})
		servicesAfter = StepCopy
	}
	add(Node{Step: servicesStep{}, After: []string{servicesAfter}, Server: spare, Timeout: t.Services.Duration + time.Minute, Doc: Doc{
		Summary:  "start the services on the spare and wait for their health checks",
		Calls:    []string{"ssh spare: each service's start command, health checks"},
		Checks:   "every health check passes",
		Expected: 10 * time.Second}})
	var moves []string
	for _, ip := range rb.FailoverIPs {
		s := moveIPStep{ip: ip.Prefix}
		moves = append(moves, s.Name())
		add(Node{Step: s, After: []string{StepServices, StepConfirmRescue}, Server: spare, Timeout: t.IPMove.Duration, Doc: Doc{
			Summary:  "route " + ip.String() + " to the spare (once), poll the task, read the route back",
			Calls:    []string{"POST /ip/" + ip.String() + "/move {to: spare}", "GET /ip/{ip}/task/{id}", "GET /ip/{ip}"},
			Checks:   "routedTo is the spare",
			Expected: time.Minute}})
	}
	add(Node{Step: probeStep{}, After: moves, Timeout: t.IPMove.Duration + time.Minute, Doc: Doc{
		Summary:  "reach the services through the failover IPs",
		Calls:    []string{"HTTP/TCP to each health endpoint via each failover IP"},
		Checks:   "journalled reached",
		Expected: 2 * time.Second}})
	add(Node{Step: commitStep{}, After: []string{StepProbe}, Doc: Doc{Summary: "mark the takeover complete", Checks: "journalled"}})
	add(Node{Step: restoreStep{}, Finalizer: true, Server: primary, Doc: Doc{
		Summary: "finalizer: on rollback, put back the primary's previous rescue SSH key",
		Calls:   []string{"PUT /dedicated/server/{primary} {rescueSshKey}"},
		Checks:  "rescueSshKey as before the run (rollback only)"}})
	p := Plan{Nodes: nodes}
	return p, p.Validate()
}

// Expected is the forecast of a plan: the longest chain of expected step
// durations through the dependencies.
func (p Plan) Expected() time.Duration {
	memo := map[string]time.Duration{}
	var finish func(n Node) time.Duration
	finish = func(n Node) time.Duration {
		if d, ok := memo[n.Step.Name()]; ok {
			return d
		}
		var start time.Duration
		for _, a := range n.After {
			if dep, ok := p.Node(a); ok {
				start = max(start, finish(dep))
			}
		}
		memo[n.Step.Name()] = start + n.Doc.Expected
		return memo[n.Step.Name()]
	}
	var total time.Duration
	for _, n := range p.Nodes {
		total = max(total, finish(n))
	}
	return total
}
