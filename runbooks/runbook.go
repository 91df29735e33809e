package runbooks

import (
	"fmt"
	"net/netip"
	"time"

	"gopkg.in/yaml.v3"
)

// Runbook is one named takeover: which server may fail, which spare takes
// over, how the data travels and which services and IPs follow it.
// Field names here are the YAML keys; see runbooks/README.md.
//
// A Runbook returned by [Load] or [Parse] has its defaults applied and has
// passed validation; code that builds one by hand should not assume either.
type Runbook struct {
	Name        string      `yaml:"name"`
	Description string      `yaml:"description,omitempty"`
	Provider    Provider    `yaml:"provider"`
	Primary     Primary     `yaml:"primary"`
	Spare       Spare       `yaml:"spare"`
	Data        Data        `yaml:"data"`
	Services    []Service   `yaml:"services"`
	FailoverIPs []IPBlock   `yaml:"failover_ips"`
	Timeouts    Timeouts    `yaml:"timeouts"`
	TargetRTO   Duration    `yaml:"target_rto,omitempty"` // zero: no target
	Modes       ModeOptions `yaml:"modes"`

	// File is the path the runbook was read from (not a YAML key).
	File string `yaml:"-"`
}

// Provider says which hosting API holds the servers. Credentials are never
// in the runbook: they come from go-ovh's ovh.conf files and OVH_* variables.
type Provider struct {
	Kind     string `yaml:"kind"`               // "ovh"
	Endpoint string `yaml:"endpoint,omitempty"` // ovh-eu, ovh-ca, ... or a URL (the simulator); empty: go-ovh's default lookup
}

// SSH is how takeover reaches a host.
type SSH struct {
	Address    string `yaml:"address"`               // host:port; a missing port defaults to 22
	User       string `yaml:"user"`                  // default root
	Key        string `yaml:"key,omitempty"`         // private key file (may start with ~/); empty: ssh-agent
	KnownHosts string `yaml:"known_hosts,omitempty"` // known_hosts file used to check the host key; default ~/.ssh/known_hosts
}

// Rescue describes the provider's rescue system for the primary.
type Rescue struct {
	Kernel string `yaml:"kernel"` // netboot kernel name, e.g. rescue12-customer (required)
	Key    string `yaml:"key"`    // private key file; its public half becomes rescueSshKey
	User   string `yaml:"user"`   // default root
	Port   int    `yaml:"port"`   // default 22
}

// Primary is the server that may fail.
type Primary struct {
	Server         string     `yaml:"server"`
	Address        netip.Addr `yaml:"address"`         // where rescue SSH is reached; default private_address
	PrivateAddress netip.Addr `yaml:"private_address"` // vRack address; exports listen here only
	Rescue         Rescue     `yaml:"rescue"`
	SSH            *SSH       `yaml:"ssh,omitempty"` // normal OS access, needed by planned mode
}

// Spare is the standby server that takes over.
type Spare struct {
	Server         string     `yaml:"server"`
	PrivateAddress netip.Addr `yaml:"private_address"`
	SSH            SSH        `yaml:"ssh"`
}

// Transports and attach methods.
const (
	TransportNBD = "nbd"
	TransportNFS = "nfs"

	AttachAuto   = "auto"
	AttachKernel = "kernel"
	AttachFUSE   = "fuse"
)

// Data says how the primary's data reaches the spare.
type Data struct {
	Transport string `yaml:"transport"`        // nbd | nfs; default nbd
	NBD       NBD    `yaml:"nbd,omitempty"`    // only with transport nbd
	NFS       NFS    `yaml:"nfs,omitempty"`    // only with transport nfs
	Attach    string `yaml:"attach,omitempty"` // auto | kernel | fuse (nbd only); default auto
	Disks     []Disk `yaml:"disks"`
	RAID      RAID   `yaml:"raid,omitempty"`
	LVM       LVM    `yaml:"lvm,omitempty"`
	Copy      Copy   `yaml:"copy,omitempty"`
}

// NBD configures the block-level export.
type NBD struct {
	Server string `yaml:"server"`            // nbd-server (default) | nbdkit
	Port   int    `yaml:"port"`              // default 10809
	TLSPSK string `yaml:"tls_psk,omitempty"` // path of a PSK file (nbdkit --tls-psk format), never the key itself
}

// NFS configures the file-level export.
type NFS struct {
	Server  string `yaml:"server"`  // kernel | ganesha (required with transport nfs)
	Version int    `yaml:"version"` // 3 or 4; default 4
}

// Disk is one filesystem to carry over.
type Disk struct {
	Name   string   `yaml:"name"`             // export name
	Device string   `yaml:"device"`           // device on the rescue system (/dev/md0, /dev/sda2) or a file in the lab; "auto" to discover by label/uuid
	Label  string   `yaml:"label,omitempty"`  // filesystem label, used by device "auto"
	UUID   string   `yaml:"uuid,omitempty"`   // filesystem UUID, used by device "auto"
	FSType string   `yaml:"fstype,omitempty"` // empty: detected
	Mount  string   `yaml:"mount"`            // mount point on the spare
	Expect []string `yaml:"expect,omitempty"` // paths that must exist on it, relative to its root
}

// RAID is the md policy.
type RAID struct {
	Assemble      bool `yaml:"assemble,omitempty"`
	AllowDegraded bool `yaml:"allow_degraded,omitempty"`
}

// LVM is the LVM policy.
type LVM struct {
	Activate bool `yaml:"activate,omitempty"`
}

// Copy is the planned-mode data copy to the spare's own disks.
type Copy struct {
	Enabled bool   `yaml:"enabled,omitempty"`
	Target  string `yaml:"target,omitempty"` // absolute directory on the spare
}

// Service is one service started on the spare (and stopped on the primary
// in planned mode).
type Service struct {
	Name   string   `yaml:"name"`
	Start  string   `yaml:"start"`
	Stop   string   `yaml:"stop,omitempty"`
	Health []Health `yaml:"health"`
}

// Health is one check, run on the spare; exactly one of HTTP, TCP and
// Command is set.
type Health struct {
	HTTP    string   `yaml:"http,omitempty"`    // URL; passes on the expected status
	Status  int      `yaml:"status,omitempty"`  // expected HTTP status, default 200 (http only)
	TCP     string   `yaml:"tcp,omitempty"`     // host:port; passes when a connection opens
	Command string   `yaml:"command,omitempty"` // shell command; passes on exit status 0
	Timeout Duration `yaml:"timeout"`           // default 10s
}

// IPBlock is a failover IP block such as 203.0.113.7/32. In YAML a bare
// address means the single-address block (/32 or /128).
type IPBlock struct{ netip.Prefix }

// Timeouts bound each phase.
type Timeouts struct {
	Fence     Duration `yaml:"fence"`      // reboot task until rescue confirmed; default 10m
	RescueSSH Duration `yaml:"rescue_ssh"` // waiting for rescue SSH; default 5m
	IPMove    Duration `yaml:"ip_move"`    // default 5m
	Services  Duration `yaml:"services"`   // default 2m
	Step      Duration `yaml:"step"`       // default per step; default 15m
}

// ModeOptions holds per-mode options.
type ModeOptions struct {
	Disaster DisasterOptions `yaml:"disaster"`
	Planned  PlannedOptions  `yaml:"planned"`
	Drill    DrillOptions    `yaml:"drill"`
}

// DisasterOptions tune disaster mode.
type DisasterOptions struct {
	Confirm bool `yaml:"confirm"` // ask for a typed confirmation before the fence (default true)
}

// PlannedOptions tune planned mode.
type PlannedOptions struct {
	StopPrimaryServices bool `yaml:"stop_primary_services"` // stop services on the primary first; needs primary.ssh (default false)
}

// DrillOptions tune drill mode.
type DrillOptions struct {
	Failback bool `yaml:"failback"` // fail back automatically after the drill (default true)
}

// Duration is a time.Duration written as "90s", "5m".
type Duration struct{ time.Duration }

// String returns the duration as time.Duration does ("5m0s").
func (d Duration) String() string { return d.Duration.String() }

// MarshalText implements encoding.TextMarshaler (JSON, the journal).
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.Duration.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler with time.ParseDuration.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("parse duration %q: %w", b, err)
	}
	d.Duration = v
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return d.Duration.String(), nil }

// UnmarshalYAML implements yaml.Unmarshaler. It is lenient decoding for
// other users of the types; runbook files go through [Parse].
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: expected a duration such as 90s or 5m", n.Line)
	}
	return d.UnmarshalText([]byte(n.Value))
}

// MarshalYAML implements yaml.Marshaler.
func (b IPBlock) MarshalYAML() (any, error) { return b.Prefix.String(), nil }

// UnmarshalYAML implements yaml.Unmarshaler; it accepts a prefix or a bare
// address.
func (b *IPBlock) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: expected an IP block such as 203.0.113.7/32", n.Line)
	}
	p, err := ParseIPBlock(n.Value)
	if err != nil {
		return err
	}
	*b = p
	return nil
}

// ParseIPBlock parses "203.0.113.7/32" or a bare address, which means the
// single-address block.
func ParseIPBlock(s string) (IPBlock, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Zone() != "" {
			return IPBlock{}, fmt.Errorf("parse IP block %q: zones are not allowed", s)
		}
		return IPBlock{netip.PrefixFrom(a, a.BitLen())}, nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return IPBlock{}, fmt.Errorf("parse IP block %q: %w", s, err)
	}
	return IPBlock{p}, nil
}

// Mode is how a run executes a runbook.
type Mode string

// The three modes; see runbooks/README.md.
const (
	ModeDisaster Mode = "disaster" // primary dead or sick: fence first, no graceful stop
	ModePlanned  Mode = "planned"  // primary healthy: stop it gracefully, optional copy
	ModeDrill    Mode = "drill"    // rehearsal: full run, failback, report
)

// Modes lists every mode in a stable order.
func Modes() []Mode { return []Mode{ModeDisaster, ModePlanned, ModeDrill} }

// ParseMode returns the Mode named s.
func ParseMode(s string) (Mode, error) {
	for _, m := range Modes() {
		if string(m) == s {
			return m, nil
		}
	}
	return "", fmt.Errorf("unknown mode %q: want disaster, planned or drill", s)
}
