package runbooks

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Defaults applied to keys that are absent (or null). README.md lists them.
const (
	DefaultUser          = "root"
	DefaultSSHPort       = 22
	DefaultKnownHosts    = "~/.ssh/known_hosts"
	DefaultTransport     = TransportNBD
	DefaultAttach        = AttachAuto
	DefaultNBDServer     = "nbd-server"
	DefaultNBDPort       = 10809
	DefaultNFSVersion    = 4
	DefaultHTTPStatus    = 200
	DefaultHealthTimeout = 10 * time.Second
	DefaultFenceTimeout  = 10 * time.Minute
	DefaultRescueSSH     = 5 * time.Minute
	DefaultIPMoveTimeout = 5 * time.Minute
	DefaultServicesWait  = 2 * time.Minute
	DefaultStepTimeout   = 15 * time.Minute

	// MaxDuration bounds every duration in a runbook.
	MaxDuration = 24 * time.Hour
)

// Endpoints are the go-ovh endpoint names accepted besides http(s) URLs.
var endpoints = []string{"ovh-eu", "ovh-ca", "ovh-us", "kimsufi-eu", "kimsufi-ca", "soyoustart-eu", "soyoustart-ca"}

var (
	nameRE     = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	serverRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$`)
	kernelRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
	userRE     = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}$`)
	exportRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	serviceRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$`)
	fstypeRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,31}$`)
	hostnameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\.?$`)
)

type validator struct {
	d  *decoder
	rb *Runbook
}

func (v *validator) present(p string) bool { return v.d.values[p] != nil }

// pos returns where to report a problem with path: its value if it is a
// scalar, its key if it is a section, and for an absent key the key of the
// nearest section that is present.
func (d *decoder) pos(p string) (line, col int) {
	if n := d.values[p]; n != nil {
		if k := d.keys[p]; k != nil && n.Kind != yaml.ScalarNode {
			return nodePos(k)
		}
		return nodePos(n)
	}
	for ; p != ""; p = parentPath(p) {
		if k := d.keys[p]; k != nil {
			return nodePos(k)
		}
		if n := d.values[p]; n != nil {
			return nodePos(n)
		}
	}
	return nodePos(d.root)
}

func (v *validator) errf(p, hint, format string, args ...any) {
	if v.d.isBad(p) {
		return
	}
	line, col := v.d.pos(p)
	v.d.add(line, col, prefix(p)+fmt.Sprintf(format, args...), hint)
	v.d.markBad(p)
}

func (v *validator) required(p, hint string) bool {
	if v.present(p) {
		return true
	}
	v.errf(p, hint, "required")
	return false
}

func (v *validator) enum(p, val string, allowed ...string) {
	if slices.Contains(allowed, val) {
		return
	}
	hint := "one of: " + strings.Join(allowed, ", ")
	if s := suggest(val, allowed); s != "" {
		hint = fmt.Sprintf("did you mean %q?", s)
	}
	v.errf(p, hint, "unknown value %q", val)
}

func (v *validator) defaults() {
	rb := v.rb
	str := func(p string, s *string, def string) {
		if !v.present(p) {
			*s = def
		}
	}
	num := func(p string, i *int, def int) {
		if !v.present(p) {
			*i = def
		}
	}
	dur := func(p string, d *Duration, def time.Duration) {
		if !v.present(p) {
			d.Duration = def
		}
	}
	boolean := func(p string, b *bool, def bool) {
		if !v.present(p) {
			*b = def
		}
	}
	sshDefaults := func(p string, s *SSH) {
		str(p+".user", &s.User, DefaultUser)
		str(p+".known_hosts", &s.KnownHosts, DefaultKnownHosts)
	}

	if !v.present("primary.address") {
		rb.Primary.Address = rb.Primary.PrivateAddress
	}
	str("primary.rescue.user", &rb.Primary.Rescue.User, DefaultUser)
	num("primary.rescue.port", &rb.Primary.Rescue.Port, DefaultSSHPort)
	if rb.Primary.SSH != nil {
		sshDefaults("primary.ssh", rb.Primary.SSH)
	}
	sshDefaults("spare.ssh", &rb.Spare.SSH)

	str("data.transport", &rb.Data.Transport, DefaultTransport)
	switch rb.Data.Transport {
	case TransportNBD:
		str("data.attach", &rb.Data.Attach, DefaultAttach)
		str("data.nbd.server", &rb.Data.NBD.Server, DefaultNBDServer)
		num("data.nbd.port", &rb.Data.NBD.Port, DefaultNBDPort)
	case TransportNFS:
		num("data.nfs.version", &rb.Data.NFS.Version, DefaultNFSVersion)
	}
	for i := range rb.Services {
		for j := range rb.Services[i].Health {
			h := &rb.Services[i].Health[j]
			p := fmt.Sprintf("services[%d].health[%d]", i, j)
			if h.HTTP != "" {
				num(p+".status", &h.Status, DefaultHTTPStatus)
			}
			dur(p+".timeout", &h.Timeout, DefaultHealthTimeout)
		}
	}
	t := &rb.Timeouts
	dur("timeouts.fence", &t.Fence, DefaultFenceTimeout)
	dur("timeouts.rescue_ssh", &t.RescueSSH, DefaultRescueSSH)
	dur("timeouts.ip_move", &t.IPMove, DefaultIPMoveTimeout)
	dur("timeouts.services", &t.Services, DefaultServicesWait)
	dur("timeouts.step", &t.Step, DefaultStepTimeout)
	boolean("modes.disaster.confirm", &rb.Modes.Disaster.Confirm, true)
	boolean("modes.drill.failback", &rb.Modes.Drill.Failback, true)
}

func (v *validator) validate() {
	rb := v.rb
	if v.required("name", "a short id such as web-gra") && !nameRE.MatchString(rb.Name) {
		v.errf("name", "lower-case letters, digits and '-', starting with a letter or digit, at most 63", "invalid name %q", rb.Name)
	}

	// provider
	if v.required("provider", "") && v.required("provider.kind", `kind: ovh`) {
		v.enum("provider.kind", rb.Provider.Kind, "ovh")
	}
	if v.present("provider.endpoint") {
		v.endpoint("provider.endpoint", rb.Provider.Endpoint)
	}

	// primary
	if v.required("primary", "") {
		v.server("primary.server", rb.Primary.Server)
		v.privateAddr("primary.private_address", rb.Primary.PrivateAddress)
		if v.present("primary.address") && !usable(rb.Primary.Address) {
			v.errf("primary.address", "", "%s is not a usable host address", rb.Primary.Address)
		}
		r := rb.Primary.Rescue
		if v.required("primary.rescue", "the rescue netboot is how the primary is fenced") {
			if v.required("primary.rescue.kernel", "name the netboot kernel, e.g. rescue12-customer: the boot choice is never guessed") && !kernelRE.MatchString(r.Kernel) {
				v.errf("primary.rescue.kernel", "", "invalid kernel name %q", r.Kernel)
			}
			if v.required("primary.rescue.key", "the private key whose public half is set as rescueSshKey") {
				v.keyFile("primary.rescue.key", r.Key)
			}
			v.user("primary.rescue.user", r.User)
			v.port("primary.rescue.port", r.Port)
		}
		if rb.Primary.SSH != nil {
			v.ssh("primary.ssh", rb.Primary.SSH)
		}
	}

	// spare
	if v.required("spare", "") {
		if v.server("spare.server", rb.Spare.Server) && rb.Spare.Server == rb.Primary.Server {
			v.errf("spare.server", "the spare must be another server", "same server as primary.server")
		}
		if v.privateAddr("spare.private_address", rb.Spare.PrivateAddress) && rb.Primary.PrivateAddress.IsValid() && !v.d.isBad("primary.private_address") {
			a, b := rb.Primary.PrivateAddress, rb.Spare.PrivateAddress
			switch {
			case a == b:
				v.errf("spare.private_address", "", "same address as primary.private_address")
			case a.Is4() != b.Is4():
				v.errf("spare.private_address", "", "%s and primary.private_address %s are not the same IP family", b, a)
			}
		}
		if v.required("spare.ssh", "how takeover reaches the spare") {
			v.ssh("spare.ssh", &rb.Spare.SSH)
		}
	}

	v.data()
	v.services()
	v.failoverIPs()

	for _, d := range []struct {
		p string
		v Duration
	}{
		{"timeouts.fence", rb.Timeouts.Fence},
		{"timeouts.rescue_ssh", rb.Timeouts.RescueSSH},
		{"timeouts.ip_move", rb.Timeouts.IPMove},
		{"timeouts.services", rb.Timeouts.Services},
		{"timeouts.step", rb.Timeouts.Step},
	} {
		v.duration(d.p, d.v)
	}
	if v.present("target_rto") {
		v.duration("target_rto", rb.TargetRTO)
	}
	if rb.Modes.Planned.StopPrimaryServices && rb.Primary.SSH == nil {
		v.errf("modes.planned.stop_primary_services", "add primary.ssh, or set this to false", "needs primary.ssh to reach the primary's own system")
	}
}

func (v *validator) data() {
	rb := v.rb
	d := &rb.Data
	if !v.required("data", "") {
		return
	}
	v.enum("data.transport", d.Transport, TransportNBD, TransportNFS)
	switch d.Transport {
	case TransportNBD:
		if v.present("data.nfs") {
			v.errf("data.nfs", "remove it, or set data.transport: nfs", "only allowed with transport nfs")
		}
		v.enum("data.attach", d.Attach, AttachAuto, AttachKernel, AttachFUSE)
		v.enum("data.nbd.server", d.NBD.Server, "nbdkit", "nbd-server")
		v.port("data.nbd.port", d.NBD.Port)
		if v.present("data.nbd.tls_psk") {
			v.keyFile("data.nbd.tls_psk", d.NBD.TLSPSK)
		}
	case TransportNFS:
		if v.present("data.nbd") {
			v.errf("data.nbd", "remove it, or set data.transport: nbd", "only allowed with transport nbd")
		}
		if v.present("data.attach") {
			v.errf("data.attach", "remove it: NFS is mounted, not attached", "only allowed with transport nbd")
		}
		if v.required("data.nfs", "nfs: {server: kernel}") && v.required("data.nfs.server", "kernel or ganesha") {
			v.enum("data.nfs.server", d.NFS.Server, "kernel", "ganesha")
		}
		if d.NFS.Version != 3 && d.NFS.Version != 4 {
			v.errf("data.nfs.version", "", "unknown NFS version %d, want 3 or 4", d.NFS.Version)
		} else if d.NFS.Version == 3 && d.NFS.Server == "ganesha" {
			v.errf("data.nfs.version", "use version 4, or nfs.server: kernel for NFSv3",
				"nfs-ganesha exports are NFSv4 only (NFSv3 needs rpcbind, which rescue systems do not run)")
		}
	}

	if len(d.Disks) == 0 {
		v.errf("data.disks", "list the filesystems to carry over", "at least one disk is required")
	}
	names := map[string]string{}
	mounts := map[string]string{}
	for i, disk := range d.Disks {
		p := fmt.Sprintf("data.disks[%d]", i)
		if !v.present(p) {
			v.errf(p, "", "empty entry")
			continue
		}
		if v.required(p+".name", "the export name") {
			if !exportRE.MatchString(disk.Name) {
				v.errf(p+".name", "letters, digits, '.', '_' and '-'", "invalid disk name %q", disk.Name)
			} else if first, dup := names[disk.Name]; dup {
				v.errf(p+".name", "", "duplicate disk name %q (also %s)", disk.Name, first)
			} else {
				names[disk.Name] = p
			}
		}
		if v.required(p+".device", `a device such as /dev/md0, or "auto" with a label or uuid`) {
			switch {
			case disk.Device == "auto":
				if disk.Label == "" && disk.UUID == "" {
					v.errf(p+".device", "add label or uuid", `device "auto" needs a label or a uuid to find the filesystem`)
				}
			case !absClean(disk.Device):
				v.errf(p+".device", `an absolute path such as /dev/md0, or "auto"`, "invalid device %q", disk.Device)
			}
		}
		if v.present(p+".fstype") && !fstypeRE.MatchString(disk.FSType) {
			v.errf(p+".fstype", "such as ext4 or xfs", "invalid filesystem type %q", disk.FSType)
		}
		if v.required(p+".mount", "the mount point on the spare") {
			switch {
			case !absClean(disk.Mount):
				v.errf(p+".mount", "an absolute, clean path such as /srv/www", "invalid mount point %q", disk.Mount)
			case disk.Mount == "/":
				v.errf(p+".mount", "the spare's own root stays in place", "cannot mount over /")
			case hiddenSystemDir(disk.Mount) != "":
				v.errf(p+".mount", "mount imports on a directory of their own, such as /srv/www; the spare's system directories stay in place",
					"cannot mount over %s: it would hide the spare's %s", disk.Mount, hiddenSystemDir(disk.Mount))
			default:
				if first, dup := mounts[disk.Mount]; dup {
					v.errf(p+".mount", "", "duplicate mount point %q (also %s)", disk.Mount, first)
				} else {
					mounts[disk.Mount] = p
				}
			}
		}
		for j, e := range disk.Expect {
			ep := fmt.Sprintf("%s.expect[%d]", p, j)
			switch {
			case e == "":
				v.errf(ep, "", "empty path")
			case strings.HasPrefix(e, "/"):
				v.errf(ep, fmt.Sprintf("relative to the disk's root: %q", strings.TrimLeft(e, "/")), "path %q must be relative", e)
			case path.Clean(e) != e || e == "." || e == ".." || strings.HasPrefix(e, "../"):
				v.errf(ep, "", "path %q must be clean and stay inside the disk", e)
			}
		}
	}
	if d.RAID.AllowDegraded && !d.RAID.Assemble {
		v.errf("data.raid.allow_degraded", "set data.raid.assemble: true", "only meaningful when md arrays are assembled")
	}
	if d.Copy.Enabled {
		v.required("data.copy.target", "a directory on the spare's own disks")
		if d.Transport == TransportNFS {
			v.errf("data.copy.enabled", "use transport nbd for a planned copy, or copy by hand from the NFS mount",
				"the planned-mode copy works with transport nbd only (an NFS import is mounted in place)")
		}
	}
	if v.present("data.copy.target") {
		v.copyTarget()
	}
}

const copyHint = "the copy runs rsync --delete into target/<disk name>: use a directory of its own on the spare's disks, such as /srv/takeover-copy"

// copyTarget checks data.copy.target: the copy step mirrors each disk into
// target/<disk name> with rsync --delete, so neither the target nor any of
// those directories may touch a system directory or a disk's mount point.
func (v *validator) copyTarget() {
	d := &v.rb.Data
	t := d.Copy.Target
	if !absClean(t) {
		v.errf("data.copy.target", "", "invalid target %q: want an absolute, clean path", t)
		return
	}
	if t == "/" {
		v.errf("data.copy.target", copyHint, "copy target cannot be /")
		return
	}
	if s := systemOverlap(t); s != "" {
		v.errf("data.copy.target", copyHint, "copy target %q overlaps the spare's system directory %s", t, s)
		return
	}
	for i, disk := range d.Disks {
		if !exportRE.MatchString(disk.Name) || v.d.isBad(fmt.Sprintf("data.disks[%d].name", i)) {
			continue
		}
		dst := path.Join(t, disk.Name)
		for j, m := range d.Disks {
			if !absClean(m.Mount) || v.d.isBad(fmt.Sprintf("data.disks[%d].mount", j)) {
				continue
			}
			if within(dst, m.Mount) || within(m.Mount, dst) {
				v.errf("data.copy.target", copyHint, "the copy of disk %s (%s) overlaps data.disks[%d].mount %s", disk.Name, dst, j, m.Mount)
				return
			}
		}
	}
}

// systemDirs are the spare's own system directories: no copy target may
// overlap them and no mount point may hide them. "/lib*" stands for every
// top-level directory whose name starts with "lib" (/lib, /lib64, /libx32).
// README.md lists them.
var systemDirs = []string{"/bin", "/boot", "/dev", "/etc", "/lib*", "/proc", "/run", "/sbin", "/sys", "/usr", "/var/lib"}

// within reports whether clean absolute path p is dir or inside it.
func within(p, dir string) bool {
	return p == dir || dir == "/" || strings.HasPrefix(p, dir+"/")
}

// systemOverlap returns a system directory that p is, is inside or holds,
// or "".
func systemOverlap(p string) string {
	top, _, _ := strings.Cut(strings.TrimPrefix(p, "/"), "/")
	for _, d := range systemDirs {
		if d == "/lib*" {
			if strings.HasPrefix(top, "lib") {
				return "/" + top
			}
			continue
		}
		if within(p, d) || within(d, p) {
			return d
		}
	}
	return ""
}

// hiddenSystemDir returns a system directory that a mount on p would hide
// (p itself, or one below it), or "". Mounts inside a system directory, such
// as /var/lib/postgresql, are allowed.
func hiddenSystemDir(p string) string {
	top, rest, _ := strings.Cut(strings.TrimPrefix(p, "/"), "/")
	for _, d := range systemDirs {
		if d == "/lib*" {
			if rest == "" && strings.HasPrefix(top, "lib") {
				return "/" + top
			}
			continue
		}
		if within(d, p) {
			return d
		}
	}
	return ""
}

func (v *validator) services() {
	rb := v.rb
	if len(rb.Services) == 0 {
		v.errf("services", "list what the spare must run", "at least one service is required")
	}
	var stopReason string
	switch {
	case rb.Modes.Drill.Failback:
		stopReason = "failback stops services on the spare (modes.drill.failback)"
	case rb.Modes.Planned.StopPrimaryServices:
		stopReason = "planned mode stops services on the primary (modes.planned.stop_primary_services)"
	}
	names := map[string]string{}
	for i, s := range rb.Services {
		p := fmt.Sprintf("services[%d]", i)
		if !v.present(p) {
			v.errf(p, "", "empty entry")
			continue
		}
		if v.required(p+".name", "") {
			if !serviceRE.MatchString(s.Name) {
				v.errf(p+".name", "letters, digits, '.', '_', '@' and '-'", "invalid service name %q", s.Name)
			} else if first, dup := names[s.Name]; dup {
				v.errf(p+".name", "", "duplicate service name %q (also %s)", s.Name, first)
			} else {
				names[s.Name] = p
			}
		}
		if v.required(p+".start", "the command that starts the service on the spare") && strings.TrimSpace(s.Start) == "" {
			v.errf(p+".start", "", "empty command")
		}
		if v.present(p + ".stop") {
			if strings.TrimSpace(s.Stop) == "" {
				v.errf(p+".stop", "", "empty command")
			}
		} else if stopReason != "" {
			v.errf(p+".stop", "", "required: %s", stopReason)
		}
		if len(s.Health) == 0 {
			v.errf(p+".health", "the IPs move only after the services pass their checks", "at least one health check is required")
		}
		for j, h := range s.Health {
			v.health(fmt.Sprintf("%s.health[%d]", p, j), h)
		}
	}
}

func (v *validator) health(p string, h Health) {
	if !v.present(p) {
		v.errf(p, "", "empty entry")
		return
	}
	var set []string
	for _, k := range []string{"http", "tcp", "command"} {
		if v.present(p + "." + k) {
			set = append(set, k)
		}
	}
	switch len(set) {
	case 0:
		v.errf(p, "", "needs one of http, tcp or command")
		return
	case 1:
	default:
		v.errf(p+"."+set[1], "", "set only one of http, tcp and command (%s is set too)", set[0])
		return
	}
	switch set[0] {
	case "http":
		u, err := url.Parse(h.HTTP)
		shown := redactURL(h.HTTP)
		switch {
		case err != nil:
			v.errf(p+".http", "a URL such as http://127.0.0.1/health", "invalid URL %q", shown)
		case u.User != nil:
			v.errf(p+".http", "health URLs reach the journal, the output and the spare's process list: check a URL that needs no credentials, or use a command check that reads them from a file on the spare",
				"URL %q carries credentials (user:password@)", shown)
		case u.Scheme != "http" && u.Scheme != "https":
			v.errf(p+".http", "a URL such as http://127.0.0.1/health", "URL %q: scheme must be http or https", shown)
		case u.Host == "" || u.Hostname() == "":
			v.errf(p+".http", "a URL such as http://127.0.0.1/health", "URL %q has no host", shown)
		}
		if h.Status < 100 || h.Status > 599 {
			v.errf(p+".status", "", "HTTP status %d out of range 100-599", h.Status)
		}
	case "tcp":
		if _, err := hostPort(h.TCP, false); err != nil {
			v.errf(p+".tcp", "host:port such as 127.0.0.1:5432", "invalid address %q: %v", h.TCP, err)
		}
	case "command":
		if strings.TrimSpace(h.Command) == "" {
			v.errf(p+".command", "", "empty command")
		}
	}
	if v.present(p+".status") && set[0] != "http" {
		v.errf(p+".status", "", "only allowed with http")
	}
	v.duration(p+".timeout", h.Timeout)
}

func (v *validator) failoverIPs() {
	rb := v.rb
	if len(rb.FailoverIPs) == 0 {
		v.errf("failover_ips", "clients reach the service through them", "at least one failover IP is required")
		return
	}
	for i, b := range rb.FailoverIPs {
		p := fmt.Sprintf("failover_ips[%d]", i)
		if !v.present(p) {
			v.errf(p, "", "empty entry")
			continue
		}
		if !b.IsValid() {
			continue // reported while decoding
		}
		if m := b.Masked(); m != b.Prefix {
			v.errf(p, fmt.Sprintf("did you mean %s?", m), "%s has host bits set", b)
			continue
		}
		for j := range i {
			o := rb.FailoverIPs[j]
			if !o.IsValid() || v.d.isBad(fmt.Sprintf("failover_ips[%d]", j)) {
				continue
			}
			if o.Prefix == b.Prefix {
				v.errf(p, "", "duplicate of failover_ips[%d]", j)
				break
			}
			if o.Overlaps(b.Prefix) {
				v.errf(p, "", "%s overlaps failover_ips[%d] %s", b, j, o)
				break
			}
		}
		for _, a := range []struct {
			name string
			addr netip.Addr
		}{{"primary.private_address", rb.Primary.PrivateAddress}, {"spare.private_address", rb.Spare.PrivateAddress}} {
			if a.addr.IsValid() && b.Contains(a.addr) {
				v.errf(p, "", "%s contains %s %s", b, a.name, a.addr)
			}
		}
	}
}

func (v *validator) duration(p string, d Duration) {
	switch {
	case d.Duration <= 0:
		v.errf(p, "", "duration %s must be positive", d)
	case d.Duration > MaxDuration:
		v.errf(p, "at most 24h", "duration %s is too long", d)
	}
}

func (v *validator) server(p, s string) bool {
	if !v.required(p, "the provider's service name, e.g. ns3956771.ip-169-254-10.eu") {
		return false
	}
	if !serverRE.MatchString(s) {
		v.errf(p, "", "invalid server name %q", s)
		return false
	}
	return true
}

func (v *validator) privateAddr(p string, a netip.Addr) bool {
	if !v.required(p, "the vRack (private network) address") {
		return false
	}
	if !usable(a) {
		v.errf(p, "", "%s is not a usable host address", a)
		return false
	}
	return !v.d.isBad(p)
}

func usable(a netip.Addr) bool {
	return a.IsValid() && !a.IsUnspecified() && !a.IsMulticast() && a != netip.AddrFrom4([4]byte{255, 255, 255, 255})
}

func (v *validator) ssh(p string, s *SSH) {
	if v.required(p+".address", "host:port, the port defaults to 22") {
		hp, err := hostPort(s.Address, true)
		if err != nil {
			v.errf(p+".address", "host:port such as 10.201.0.12:22", "invalid address %q: %v", s.Address, err)
		} else {
			s.Address = hp
		}
	}
	v.user(p+".user", s.User)
	if v.present(p + ".key") {
		v.keyFile(p+".key", s.Key)
	}
	v.keyFile(p+".known_hosts", s.KnownHosts)
}

func (v *validator) user(p, u string) {
	if !userRE.MatchString(u) {
		v.errf(p, "", "invalid user name %q", u)
	}
}

func (v *validator) port(p string, port int) {
	if port < 1 || port > 65535 {
		v.errf(p, "", "port %d out of range 1-65535", port)
	}
}

// keyFile checks a file path on the machine running takeover: absolute, or
// starting with ~/ (expanded at use time by [ExpandPath]).
func (v *validator) keyFile(p, f string) {
	if !strings.HasPrefix(f, "/") && !strings.HasPrefix(f, "~/") {
		v.errf(p, "write an absolute path or one starting with ~/", "invalid file path %q", f)
	}
}

func (v *validator) endpoint(p, e string) {
	if !strings.Contains(e, "/") {
		v.enum(p, e, endpoints...)
		return
	}
	u, err := url.Parse(e)
	shown := redactURL(e)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		v.errf(p, "an endpoint name such as ovh-eu, or a URL such as https://eu.api.ovh.com/1.0", "invalid endpoint %q", shown)
	case u.User != nil:
		v.errf(p, secretHint, "endpoint %q carries credentials (user:password@)", shown)
	case u.RawQuery != "" || u.ForceQuery || strings.Contains(e, "#"):
		v.errf(p, "remove it: an endpoint is scheme://host[:port]/path, such as https://eu.api.ovh.com/1.0", "endpoint %q has a query or fragment", shown)
	case strings.HasSuffix(e, "/"):
		v.errf(p, "remove the trailing slash", "endpoint %q ends with /", e)
	case u.Scheme == "http" && !localAddr(u.Hostname()):
		v.errf(p, "use https; plain http is for the simulator and the lab, on a loopback or private (RFC 1918 or ULA) IP address",
			"plain-http endpoint %q would send the application and consumer keys in clear", e)
	}
}

// localAddr reports whether host is a loopback or private (RFC 1918, ULA)
// IP address. Host names do not count: what they resolve to can change.
func localAddr(host string) bool {
	a, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	a = a.Unmap()
	return a.IsLoopback() || a.IsPrivate()
}

// redactURL hides the userinfo of a URL-like string, so that messages
// never repeat a password.
func redactURL(s string) string {
	_, rest, ok := strings.Cut(s, "://")
	if !ok {
		return s
	}
	start := len(s) - len(rest)
	end := len(rest)
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		end = i
	}
	at := strings.LastIndexByte(rest[:end], '@')
	if at < 0 {
		return s
	}
	return s[:start] + "xxxxx" + s[start+at:]
}

func absClean(p string) bool { return strings.HasPrefix(p, "/") && path.Clean(p) == p }

// hostPort checks "host:port" and returns it with the port filled in when
// it may default to 22.
func hostPort(s string, defaultPort bool) (string, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		if !defaultPort {
			return "", fmt.Errorf("want host:port")
		}
		if a, e := netip.ParseAddr(s); e == nil {
			host = a.String()
		} else if !strings.Contains(s, ":") {
			host = s
		} else {
			return "", fmt.Errorf("want host or host:port")
		}
		port = strconv.Itoa(DefaultSSHPort)
	}
	if host == "" {
		return "", fmt.Errorf("no host")
	}
	if _, e := netip.ParseAddr(host); e != nil && !hostnameRE.MatchString(host) {
		return "", fmt.Errorf("invalid host %q", host)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("invalid port %q", port)
	}
	return net.JoinHostPort(host, port), nil
}
