package runbooks

import (
	"net/netip"
	"time"
)

// Runbook is one named takeover: which server may fail, which spare takes
// over, how the data travels and which services and IPs follow it.
// Field names here are the YAML keys; see runbooks/README.md.
type Runbook struct {
	Name        string      `yaml:"name"`
	Description string      `yaml:"description"`
	Provider    Provider    `yaml:"provider"`
	Primary     Primary     `yaml:"primary"`
	Spare       Spare       `yaml:"spare"`
	Data        Data        `yaml:"data"`
	Services    []Service   `yaml:"services"`
	FailoverIPs []IPBlock   `yaml:"failover_ips"`
	Timeouts    Timeouts    `yaml:"timeouts"`
	TargetRTO   Duration    `yaml:"target_rto"`
	Modes       ModeOptions `yaml:"modes"`

	// File is the path the runbook was read from (not a YAML key).
	File string `yaml:"-"`
}

// Provider says which hosting API holds the servers. Credentials are never
// in the runbook: they come from go-ovh's ovh.conf files and OVH_* variables.
type Provider struct {
	Kind     string `yaml:"kind"`     // "ovh"
	Endpoint string `yaml:"endpoint"` // ovh-eu, ovh-ca, ... or a URL (the simulator)
}

// SSH is how takeover reaches a host.
type SSH struct {
	Address    string `yaml:"address"`     // host:port
	User       string `yaml:"user"`        // default root
	Key        string `yaml:"key"`         // private key file; empty: ssh-agent
	KnownHosts string `yaml:"known_hosts"` // known_hosts file used to check the host key
}

// Rescue describes the provider's rescue system for the primary.
type Rescue struct {
	Kernel string `yaml:"kernel"` // netboot kernel name, e.g. rescue12-customer
	Key    string `yaml:"key"`    // private key file; its public half becomes rescueSshKey
	User   string `yaml:"user"`   // default root
	Port   int    `yaml:"port"`   // default 22
}

// Primary is the server that may fail.
type Primary struct {
	Server         string     `yaml:"server"`
	Address        netip.Addr `yaml:"address"`         // where rescue SSH is reached (main IP or private IP)
	PrivateAddress netip.Addr `yaml:"private_address"` // vRack address; exports listen here only
	Rescue         Rescue     `yaml:"rescue"`
	SSH            *SSH       `yaml:"ssh"` // normal OS access, needed by planned mode
}

// Spare is the standby server that takes over.
type Spare struct {
	Server         string     `yaml:"server"`
	PrivateAddress netip.Addr `yaml:"private_address"`
	SSH            SSH        `yaml:"ssh"`
}

// Data says how the primary's data reaches the spare.
type Data struct {
	Transport string `yaml:"transport"` // nbd | nfs
	NBD       NBD    `yaml:"nbd"`
	NFS       NFS    `yaml:"nfs"`
	Attach    string `yaml:"attach"` // auto | kernel | fuse
	Disks     []Disk `yaml:"disks"`
	RAID      RAID   `yaml:"raid"`
	LVM       LVM    `yaml:"lvm"`
	Copy      Copy   `yaml:"copy"`
}

// NBD configures the block-level export.
type NBD struct {
	Server string `yaml:"server"` // nbdkit | nbd-server
	Port   int    `yaml:"port"`   // default 10809
	TLSPSK string `yaml:"tls_psk"`
}

// NFS configures the file-level export.
type NFS struct {
	Server  string `yaml:"server"`  // kernel | ganesha
	Version int    `yaml:"version"` // 3 or 4
}

// Disk is one filesystem to carry over.
type Disk struct {
	Name   string   `yaml:"name"`   // export name
	Device string   `yaml:"device"` // device on the rescue system (/dev/md0, /dev/sda2) or a file in the lab; "auto" to discover by label/uuid
	Label  string   `yaml:"label"`
	UUID   string   `yaml:"uuid"`
	FSType string   `yaml:"fstype"`
	Mount  string   `yaml:"mount"`  // mount point on the spare
	Expect []string `yaml:"expect"` // paths that must exist on it, relative to its root
}

// RAID is the md policy.
type RAID struct {
	Assemble      bool `yaml:"assemble"`
	AllowDegraded bool `yaml:"allow_degraded"`
}

// LVM is the LVM policy.
type LVM struct {
	Activate bool `yaml:"activate"`
}

// Copy is the planned-mode data copy to the spare's own disks.
type Copy struct {
	Enabled bool   `yaml:"enabled"`
	Target  string `yaml:"target"`
}

// Service is one service started on the spare (and stopped on the primary
// in planned mode).
type Service struct {
	Name   string   `yaml:"name"`
	Start  string   `yaml:"start"`
	Stop   string   `yaml:"stop"`
	Health []Health `yaml:"health"`
}

// Health is one check; exactly one of HTTP, TCP and Command is set.
type Health struct {
	HTTP    string   `yaml:"http"`
	Status  int      `yaml:"status"` // expected HTTP status, default 200
	TCP     string   `yaml:"tcp"`
	Command string   `yaml:"command"`
	Timeout Duration `yaml:"timeout"`
}

// IPBlock is a failover IP block such as 203.0.113.7/32.
type IPBlock struct{ netip.Prefix }

// Timeouts bound each phase.
type Timeouts struct {
	Fence     Duration `yaml:"fence"`      // reboot task until rescue confirmed
	RescueSSH Duration `yaml:"rescue_ssh"` // waiting for rescue SSH
	IPMove    Duration `yaml:"ip_move"`
	Services  Duration `yaml:"services"`
	Step      Duration `yaml:"step"` // default per step
}

// ModeOptions holds per-mode options.
type ModeOptions struct {
	Disaster DisasterOptions `yaml:"disaster"`
	Planned  PlannedOptions  `yaml:"planned"`
	Drill    DrillOptions    `yaml:"drill"`
}

type DisasterOptions struct {
	Confirm bool `yaml:"confirm"` // ask for a typed confirmation before the fence (default true)
}

type PlannedOptions struct {
	StopPrimaryServices bool `yaml:"stop_primary_services"`
}

type DrillOptions struct {
	Failback bool `yaml:"failback"`
}

// Duration is a time.Duration written as "90s", "5m".
type Duration struct{ time.Duration }
