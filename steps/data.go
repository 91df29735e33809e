package steps

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path"
	"strconv"
	"strings"

	"github.com/takeover-dev/takeover/runbooks"
	"github.com/takeover-dev/takeover/steps/disks"
	"github.com/takeover-dev/takeover/steps/remote"
)

// Where takeover keeps its runtime files on the rescue system and the spare.
const (
	rescueRunDir = "/run/takeover"
	spareRunDir  = "/run/takeover"
)

// ---- disks ----------------------------------------------------------------

// disksStep discovers the primary's disks from the rescue system, assembles
// md arrays as the runbook allows and maps each runbook disk to a device.
// The rescue side never mounts what it exports.
type disksStep struct{}

func (disksStep) Name() string { return StepDisks }

// rescueDevices returns the pinned rescue connection and the devices the
// disks step mapped to the runbook's disks.
func rescueDevices(ctx context.Context, e *Env) (*remote.Client, map[string]string, error) {
	c, err := rescueClient(ctx, e)
	if err != nil {
		return nil, nil, err
	}
	m, err := deviceMap(e)
	return c, m, err
}

func deviceMap(e *Env) (map[string]string, error) {
	m := map[string]string{}
	_, err := e.Load(StepDisks, "devices", &m)
	return m, err
}

func (disksStep) Check(ctx context.Context, e *Env) (bool, error) {
	m, err := deviceMap(e)
	if err != nil || len(m) != len(e.Runbook.Data.Disks) {
		return false, err
	}
	c, err := rescueClient(ctx, e)
	if err != nil {
		return false, err
	}
	for _, d := range e.Runbook.Data.Disks {
		dev := m[d.Name]
		// present, and not mounted on the rescue side (but for the NFS
		// export's own mount: a file-level export needs one)
		check := fmt.Sprintf("test -e %[1]s && ! awk -v d=%[1]s '$1==d{f=1} END{exit !f}' /proc/mounts", shq(dev))
		if e.Runbook.Data.Transport == runbooks.TransportNFS {
			check = fmt.Sprintf("test -e %[1]s && ! awk -v d=%[1]s -v r=%[2]s '$1==d && $2!=r{f=1} END{exit !f}' /proc/mounts", shq(dev), shq(nfsRoot(d)))
		}
		if _, err := c.Run(ctx, check, nil); err != nil {
			return false, nil
		}
	}
	return true, nil
}

func discover(ctx context.Context, c *remote.Client) ([]disks.BlockDevice, []disks.MDArray, error) {
	res, err := c.Run(ctx, disks.LsblkCommand, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("lsblk: %w", err)
	}
	devs, err := disks.ParseLsblk(res.Stdout)
	if err != nil {
		return nil, nil, err
	}
	if res, err := c.Run(ctx, "blkid -o export", nil); err == nil {
		bl, err := disks.ParseBlkid(res.Stdout)
		if err != nil {
			return nil, nil, err
		}
		devs = disks.Merge(devs, bl)
	}
	var arrays []disks.MDArray
	if res, err := c.Run(ctx, "if command -v mdadm >/dev/null; then mdadm --examine --scan -v; fi", nil); err == nil {
		if arrays, err = disks.ParseMdadmExamineScan(res.Stdout); err != nil {
			return nil, nil, err
		}
	}
	return devs, arrays, nil
}

func (disksStep) Do(ctx context.Context, e *Env) error {
	c, err := rescueClient(ctx, e)
	if err != nil {
		return err
	}
	rb := e.Runbook
	var assembled []string
	for round := 0; round < 2; round++ {
		if rb.Data.LVM.Activate {
			// logical volumes appear only once their volume groups are
			// active (again after arrays were assembled)
			if _, err := c.Run(ctx, "if command -v vgchange >/dev/null; then vgchange -ay; fi", nil); err != nil {
				return fmt.Errorf("activate LVM: %w", err)
			}
		}
		devs, arrays, err := discover(ctx, c)
		if err != nil {
			return err
		}
		acts, err := disks.Plan(devs, arrays, rb.Data.Disks, rb.Data.RAID)
		if err != nil {
			return err
		}
		again := false
		for _, a := range acts {
			if a.Cmd != "" {
				e.Printf("          %s: %s", a.Why, a.Cmd)
				if _, err := c.Run(ctx, a.Cmd, nil); err != nil {
					return fmt.Errorf("%s: %w", a.Why, err)
				}
				if strings.HasPrefix(a.Cmd, "mdadm --assemble") {
					assembled = append(assembled, a.Device)
				}
			}
			again = again || a.Rediscover
		}
		if !again {
			if len(assembled) > 0 {
				if err := e.Save(ctx, "assembled", assembled); err != nil {
					return err
				}
			}
			return e.Save(ctx, "devices", disks.Mapping(acts))
		}
	}
	return errors.New("disks still not found after assembling arrays")
}

func (disksStep) Undo(ctx context.Context, e *Env) error {
	var assembled []string
	if ok, err := e.Load("", "assembled", &assembled); err != nil || !ok {
		return ErrNoUndo
	}
	c, err := rescueForUndo(ctx, e)
	if err != nil {
		return err
	}
	for _, md := range assembled {
		if _, err := c.Run(ctx, "test ! -e "+shq(md)+" || mdadm --stop "+shq(md), nil); err != nil {
			return fmt.Errorf("stop array %s: %w", md, err)
		}
	}
	return nil
}

// ---- export ---------------------------------------------------------------

// exportStep serves each disk from the rescue system over NBD on the
// private address only, to the spare's private address only, one client at
// a time (nbdkit with its ip and limit filters), or over NFS.
type exportStep struct{}

func (exportStep) Name() string { return StepExport }

func nbdPort(rb *runbooks.Runbook, i int) int {
	p := rb.Data.NBD.Port
	if p == 0 {
		p = 10809
	}
	return p + i
}

// procAlive is a shell test that process $p runs: it exists and is not a
// zombie (a daemon that exited but whose parent, an init that reaps late,
// has not collected it yet: kill -0 still succeeds on it).
const procAlive = `kill -0 "$p" 2>/dev/null && ! grep -qs '^State:[[:space:]]*Z' /proc/"$p"/status`

func pidAlive(pidfile, comm string) string {
	return fmt.Sprintf(`p=$(cat %s 2>/dev/null) && [ -n "$p" ] && %s && grep -q %s /proc/"$p"/comm`, shq(pidfile), procAlive, shq(comm))
}

func (exportStep) Check(ctx context.Context, e *Env) (bool, error) {
	if e.Runbook.Data.Transport == runbooks.TransportNFS {
		return nfsExportCheck(ctx, e)
	}
	c, err := rescueClient(ctx, e)
	if err != nil {
		return false, err
	}
	for _, d := range e.Runbook.Data.Disks {
		pidfile, comm := nbdPID(e.Runbook, d)
		if _, err := c.Run(ctx, pidAlive(pidfile, comm), nil); err != nil {
			return false, nil
		}
	}
	return true, nil
}

func (exportStep) Do(ctx context.Context, e *Env) error {
	if e.Runbook.Data.Transport == runbooks.TransportNFS {
		return nfsExportDo(ctx, e)
	}
	c, m, err := rescueDevices(ctx, e)
	if err != nil {
		return err
	}
	rb := e.Runbook
	if _, err := c.Run(ctx, "mkdir -p "+rescueRunDir, nil); err != nil {
		return err
	}
	for i, d := range rb.Data.Disks {
		pidfile, comm := nbdPID(rb, d)
		if _, err := c.Run(ctx, pidAlive(pidfile, comm), nil); err == nil {
			continue
		}
		dev := m[d.Name]
		if dev == "" {
			return fmt.Errorf("disk %s has no device (disks step)", d.Name)
		}
		base := rescueRunDir + "/nbd-" + d.Name
		var cmd string
		if rb.Data.NBD.Server == "nbdkit" {
			args := []string{"nbdkit", "--pidfile", shq(pidfile), "-i", rb.Primary.PrivateAddress.String(),
				"-p", strconv.Itoa(nbdPort(rb, i)), "--exportname", shq(d.Name)}
			if rb.Data.NBD.TLSPSK != "" {
				args = append(args, "--tls=require", "--tls-psk="+shq(rb.Data.NBD.TLSPSK))
			}
			// ip filter: only the spare's private address; limit: one client, one writer.
			args = append(args, "--filter=ip", "--filter=limit", "file", shq(dev),
				"allow="+rb.Spare.PrivateAddress.String(), "deny=all", "limit=1")
			cmd = strings.Join(args, " ")
		} else {
			// nbd-server: listen on the private address only; the authfile
			// admits the spare's private address alone (nbd-server 3.24 never frees
			// a maxconnections slot, so one writer is kept by the import instead).
			conf := fmt.Sprintf("[generic]\n\tlistenaddr = %s\n\tport = %d\n\tallowlist = false\n[%s]\n\texportname = %s\n\tauthfile = %s.allow\n\tflush = true\n\tfua = true\n",
				rb.Primary.PrivateAddress, nbdPort(rb, i), d.Name, dev, base)
			if err := c.WriteFile(ctx, base+".allow", []byte(rb.Spare.PrivateAddress.String()+"\n"), 0o600); err != nil {
				return fmt.Errorf("write the allowlist of %s: %w", d.Name, err)
			}
			if err := c.WriteFile(ctx, base+".conf", []byte(conf), 0o600); err != nil {
				return fmt.Errorf("write the nbd-server config of %s: %w", d.Name, err)
			}
			cmd = fmt.Sprintf("nbd-server -C %s.conf -p %s", base, shq(pidfile))
		}
		cmd = fmt.Sprintf("%s </dev/null >%s.log 2>&1 || { cat %s.log >&2; exit 1; }; for i in $(seq 50); do %s && break; sleep 0.1; done; %s",
			cmd, base, base, pidAlive(pidfile, comm), pidAlive(pidfile, comm))
		if _, err := c.Run(ctx, cmd, nil); err != nil {
			return fmt.Errorf("export %s (%s) with %s: %w", d.Name, dev, comm, err)
		}
		e.Printf("          exporting %s (%s) with %s on %s:%d to %s only", d.Name, dev, comm, rb.Primary.PrivateAddress, nbdPort(rb, i), rb.Spare.PrivateAddress)
	}
	return nil
}

// nbdPID is the pid file and process name of disk d's NBD server.
func nbdPID(rb *runbooks.Runbook, d runbooks.Disk) (string, string) {
	comm := "nbd-server"
	if rb.Data.NBD.Server == "nbdkit" {
		comm = "nbdkit"
	}
	return rescueRunDir + "/nbd-" + d.Name + ".pid", comm
}

func (exportStep) Undo(ctx context.Context, e *Env) error {
	if e.Runbook.Data.Transport == runbooks.TransportNFS {
		return nfsExportUndo(ctx, e)
	}
	c, err := rescueForUndo(ctx, e)
	if err != nil {
		return err
	}
	for _, d := range e.Runbook.Data.Disks {
		pidfile, comm := nbdPID(e.Runbook, d)
		base := rescueRunDir + "/nbd-" + d.Name
		// the log stays for a post-mortem; the config and allowlist go
		cmd := fmt.Sprintf(`if %s; then kill "$p"; for i in $(seq 50); do %s || break; sleep 0.1; done; fi; rm -f %s %s.conf %s.allow`,
			pidAlive(pidfile, comm), procAlive, shq(pidfile), base, base)
		if _, err := c.Run(ctx, cmd, nil); err != nil {
			return fmt.Errorf("stop export of %s: %w", d.Name, err)
		}
	}
	return nil
}

// ---- import ---------------------------------------------------------------

// importStep attaches each export on the spare (kernel nbd-client where
// /dev/nbd* exists, else nbdfuse + a loop device), checks the filesystem
// read-only, mounts it read-write and verifies the runbook's expected paths.
type importStep struct{}

func (importStep) Name() string { return StepImport }

// importDir is where disk d of runbook rb is attached on the spare: keyed
// by runbook too, since one spare may stand in for several primaries.
func importDir(rb *runbooks.Runbook, d runbooks.Disk) string {
	return spareRunDir + "/import/" + rb.Name + "/" + d.Name
}

// mountFor is where the import mounts disk d on the spare: its final mount
// point, or a staging directory when planned mode copies the data to the
// spare's own disks first.
func mountFor(e *Env, d runbooks.Disk) runbooks.Disk {
	if copies(e) {
		d.Mount = importDir(e.Runbook, d) + "/mnt"
	}
	return d
}

// copies reports whether this run copies the data to the spare's disks:
// planned mode with data.copy enabled (the copy step exists only then).
func copies(e *Env) bool {
	return e.Mode == runbooks.ModePlanned && e.Runbook.Data.Copy.Enabled
}

// mountedCmd reports (in shell) whether mount point m is mounted.
// mountpoint(1) handles paths that /proc/mounts escapes (spaces).
func mountedCmd(m string) string {
	return "mountpoint -q " + shq(m)
}

func expectCmd(d runbooks.Disk) string {
	var parts []string
	for _, p := range d.Expect {
		parts = append(parts, "test -e "+shq(path.Join(d.Mount, p)))
	}
	if len(parts) == 0 {
		return "true"
	}
	return strings.Join(parts, " && ")
}

func (importStep) Check(ctx context.Context, e *Env) (bool, error) {
	c, err := e.Hosts.Spare(ctx)
	if err != nil {
		return false, err
	}
	for _, d := range e.Runbook.Data.Disks { // NBD and NFS alike: mounted, with the expected paths
		if copies(e) && e.StepDone(StepCopy) {
			continue // copied and detached: the import's job is over
		}
		d = mountFor(e, d)
		if _, err := c.Run(ctx, mountedCmd(d.Mount)+" && "+expectCmd(d), nil); err != nil {
			return false, nil
		}
	}
	return true, nil
}

// attachMode picks kernel or fuse on the spare.
func attachMode(ctx context.Context, e *Env, c *remote.Client) (string, error) {
	switch e.Runbook.Data.Attach {
	case runbooks.AttachKernel, runbooks.AttachFUSE:
		return e.Runbook.Data.Attach, nil
	}
	if _, err := c.Run(ctx, "test -b /dev/nbd0 && command -v nbd-client >/dev/null", nil); err == nil {
		return runbooks.AttachKernel, nil
	}
	if _, err := c.Run(ctx, "test -c /dev/fuse && command -v nbdfuse >/dev/null", nil); err == nil {
		return runbooks.AttachFUSE, nil
	}
	return "", fmt.Errorf("spare %s can attach NBD neither with the kernel (/dev/nbd0 + nbd-client) nor with nbdfuse (/dev/fuse + nbdfuse)", e.Runbook.Spare.Server)
}

func (importStep) Do(ctx context.Context, e *Env) error {
	c, err := e.Hosts.Spare(ctx)
	if err != nil {
		return err
	}
	if e.Runbook.Data.Transport == runbooks.TransportNFS {
		return nfsImportDo(ctx, e, c)
	}
	mode, err := attachMode(ctx, e, c)
	if err != nil {
		return err
	}
	if err := e.Save(ctx, "attach", mode); err != nil {
		return err
	}
	rb := e.Runbook
	for i, d := range rb.Data.Disks {
		d = mountFor(e, d)
		if _, err := c.Run(ctx, mountedCmd(d.Mount), nil); err == nil {
			continue
		}
		dev, err := attach(ctx, e, c, mode, i, d)
		if err != nil {
			return err
		}
		fsck := "e2fsck -n " + shq(dev)
		if d.FSType != "" && !strings.HasPrefix(d.FSType, "ext") {
			fsck = "fsck -N " + shq(dev) + " >/dev/null" // no read-only check for this type: only make sure fsck knows it
		}
		if res, err := c.Run(ctx, fsck, nil); err != nil {
			var ee *remote.ExitError
			if !errors.As(err, &ee) || ee.Code >= 4 && !strings.Contains(string(res.Stdout)+ee.Stderr, "recovery") {
				return fmt.Errorf("read-only check of %s (%s) found problems; mount it by hand after a repair, or inspect: %w\n%s", d.Name, dev, err, res.Stdout)
			}
			e.Log.Warn().Str("disk", d.Name).Int("fsck", ee.Code).Msg("filesystem check reported fixable issues (journal recovery); mounting")
		}
		fstype := ""
		if d.FSType != "" {
			fstype = "-t " + shq(d.FSType) + " "
		}
		if mode == runbooks.AttachFUSE {
			fstype += "-o loop "
		}
		if _, err := c.Run(ctx, "mkdir -p "+shq(d.Mount)+" && mount "+fstype+shq(dev)+" "+shq(d.Mount), nil); err != nil {
			return fmt.Errorf("mount %s (%s) on %s: %w", d.Name, dev, d.Mount, err)
		}
		if _, err := c.Run(ctx, expectCmd(d), nil); err != nil {
			return fmt.Errorf("disk %s mounted on %s lacks expected paths %v: wrong disk? %w", d.Name, d.Mount, d.Expect, err)
		}
		e.Printf("          %s mounted on %s (%s, via %s)", d.Name, d.Mount, dev, mode)
	}
	return nil
}

// attach makes disk i's export available on the spare and returns what to
// check and mount: a /dev/nbdN device, or the nbdfuse file (mounted -o loop).
func attach(ctx context.Context, e *Env, c *remote.Client, mode string, i int, d runbooks.Disk) (string, error) {
	rb := e.Runbook
	host, port := rb.Primary.PrivateAddress.String(), nbdPort(rb, i)
	dir := importDir(e.Runbook, d)
	if mode == runbooks.AttachKernel {
		// The device this run attached is journalled before it is connected;
		// a resumed run reuses it. Otherwise take a free one: never one that
		// another import (another runbook on this spare) is using.
		var dev string
		if _, err := e.Load(StepImport, "nbd."+d.Name, &dev); err != nil {
			return "", err
		}
		if dev != "" {
			if _, err := c.Run(ctx, "nbd-client -c "+shq(dev)+" >/dev/null", nil); err == nil {
				return dev, nil
			}
		} else {
			res, err := c.Run(ctx, `for b in /sys/block/nbd*; do d=/dev/${b##*/}; if ! nbd-client -c "$d" >/dev/null 2>&1 && [ "$(cat "$b/size")" = 0 ]; then echo "$d"; exit 0; fi; done; echo "no free /dev/nbd* device" >&2; exit 1`, nil)
			if err != nil {
				return "", fmt.Errorf("attach %s: %w", d.Name, err)
			}
			dev = strings.TrimSpace(string(res.Stdout))
			if err := e.Save(ctx, "nbd."+d.Name, dev); err != nil {
				return "", err
			}
		}
		cmd := fmt.Sprintf("nbd-client -N %s %s %d %s", shq(d.Name), host, port, shq(dev))
		if _, err := c.Run(ctx, cmd, nil); err != nil {
			return "", fmt.Errorf("attach %s with nbd-client on %s: %w", d.Name, dev, err)
		}
		return dev, nil
	}
	file := dir + "/fuse/disk"
	uri := fmt.Sprintf("nbd://%s/%s", netip.AddrPortFrom(rb.Primary.PrivateAddress, uint16(port)), d.Name)
	start := fmt.Sprintf(`mkdir -p %[1]s/fuse
if ! { %[2]s; }; then
  setsid nbdfuse -P %[1]s/nbdfuse.pid %[3]s %[4]s </dev/null >%[1]s/nbdfuse.log 2>&1 &
  for i in $(seq 100); do [ -s %[3]s ] && break; sleep 0.1; done
fi
[ -s %[3]s ] || { cat %[1]s/nbdfuse.log >&2; exit 1; }`, dir, pidAlive(dir+"/nbdfuse.pid", "nbdfuse"), file, uri)
	if _, err := c.Run(ctx, start, nil); err != nil {
		return "", fmt.Errorf("attach %s with nbdfuse from %s: %w", d.Name, uri, err)
	}
	// the file is checked as it is and mounted with -o loop: the loop
	// device is set to clear itself when unmounted, so none is left behind
	return file, nil
}

func (importStep) Undo(ctx context.Context, e *Env) error {
	c, err := e.Hosts.Spare(ctx)
	if err != nil {
		return err
	}
	if e.Runbook.Data.Transport == runbooks.TransportNFS {
		return nfsImportUndo(ctx, e, c)
	}
	for _, d := range e.Runbook.Data.Disks {
		d = mountFor(e, d)
		dir := importDir(e.Runbook, d)
		// The loop device under a FUSE import was set up by mount -o loop
		// and clears itself on umount.
		cmd := fmt.Sprintf(`set -e
if %[1]s; then
  umount %[2]s
fi
# a detached loop device lets go of its file asynchronously: retry while busy
if grep -qs ' %[3]s/fuse ' /proc/mounts; then for i in $(seq 50); do fusermount3 -u %[3]s/fuse 2>/dev/null && break; sleep 0.1; done; fi
if grep -qs ' %[3]s/fuse ' /proc/mounts; then fusermount3 -u %[3]s/fuse; fi
if %[4]s; then kill "$p"; fi`,
			mountedCmd(d.Mount), shq(d.Mount), dir, pidAlive(dir+"/nbdfuse.pid", "nbdfuse"))
		// the kernel NBD device this run attached, and only that one
		var dev string
		if _, err := e.Load(StepImport, "nbd."+d.Name, &dev); err != nil {
			return err
		}
		if dev != "" {
			cmd += fmt.Sprintf("\nif nbd-client -c %[1]s >/dev/null 2>&1; then nbd-client -d %[1]s >/dev/null; fi", shq(dev))
		}
		if _, err := c.Run(ctx, cmd, nil); err != nil {
			return fmt.Errorf("detach %s from the spare: %w", d.Name, err)
		}
	}
	return nil
}

// ---- copy (planned mode) -----------------------------------------------------

// copyStep copies each imported disk to the spare's own disks
// (data.copy.target/<disk>), bind-mounts the copy on the disk's mount point
// and detaches the import, so the primary may be cut off afterwards.
type copyStep struct{}

// StepCopy is the planned-mode copy step.
const StepCopy = "copy"

func (copyStep) Name() string { return StepCopy }

func copyDir(rb *runbooks.Runbook, d runbooks.Disk) string {
	return path.Join(rb.Data.Copy.Target, d.Name)
}

func (copyStep) Check(ctx context.Context, e *Env) (bool, error) {
	c, err := e.Hosts.Spare(ctx)
	if err != nil {
		return false, err
	}
	for _, d := range e.Runbook.Data.Disks {
		if _, err := c.Run(ctx, mountedCmd(d.Mount)+" && "+expectCmd(d)+" && ! "+mountedCmd(mountFor(e, d).Mount), nil); err != nil {
			return false, nil
		}
	}
	return true, nil
}

func (copyStep) Do(ctx context.Context, e *Env) error {
	c, err := e.Hosts.Spare(ctx)
	if err != nil {
		return err
	}
	rb := e.Runbook
	for _, d := range rb.Data.Disks {
		src, dst := mountFor(e, d).Mount, copyDir(rb, d)
		if _, err := c.Run(ctx, mountedCmd(d.Mount), nil); err == nil {
			continue
		}
		cp := fmt.Sprintf("mkdir -p %[2]s && if command -v rsync >/dev/null; then rsync -aHAX --delete %[1]s/ %[2]s/; else cp -a %[1]s/. %[2]s/; fi && sync", shq(src), shq(dst))
		if _, err := c.Run(ctx, cp, nil); err != nil {
			return fmt.Errorf("copy %s to the spare's disks (%s): %w", d.Name, dst, err)
		}
		if _, err := c.Run(ctx, "mkdir -p "+shq(d.Mount)+" && mount --bind "+shq(dst)+" "+shq(d.Mount), nil); err != nil {
			return fmt.Errorf("bind %s on %s: %w", dst, d.Mount, err)
		}
		e.Printf("          %s copied to %s and mounted on %s", d.Name, dst, d.Mount)
	}
	// The copy is in place: detach the import so the primary can go.
	return importStep{}.Undo(ctx, e)
}

// Undo unbinds the copies; the copied data stays on the spare's disks.
func (copyStep) Undo(ctx context.Context, e *Env) error {
	c, err := e.Hosts.Spare(ctx)
	if err != nil {
		return err
	}
	for _, d := range e.Runbook.Data.Disks {
		if _, err := c.Run(ctx, fmt.Sprintf("if %s; then umount %s; fi", mountedCmd(d.Mount), shq(d.Mount)), nil); err != nil {
			return fmt.Errorf("unmount the copy of %s: %w", d.Name, err)
		}
	}
	return nil
}
