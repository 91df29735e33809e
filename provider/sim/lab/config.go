package lab

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// Host is one server of the lab.
type Host struct {
	// Server is the provider's name of the server ("" for the ops host).
	Server string `json:"server,omitempty"`
	// Public is the main address on the public bridge; Private the vRack one.
	Public  netip.Prefix `json:"public"`
	Private netip.Prefix `json:"private"`
	// Hostname is the normal OS's hostname.
	Hostname string `json:"hostname,omitempty"`
}

// Config names everything the lab makes. The zero value of a field takes
// the default shown in [DefaultConfig]; tests set another Prefix, Dir and
// subnets so they never collide with a running lab.
type Config struct {
	Prefix string `json:"prefix"` // namespace name prefix, "tk-"
	Dir    string `json:"dir"`    // lab directory, /run/takeover-lab

	Router       netip.Prefix `json:"router"`        // router on the public bridge, 10.200.0.1/24
	ClientRouter netip.Prefix `json:"client_router"` // router's client leg, 10.199.0.1/24
	Client       netip.Prefix `json:"client"`        // client, 10.199.0.10/24
	Primary      Host         `json:"primary"`
	Spare        Host         `json:"spare"`
	Ops          Host         `json:"ops"`
	FailoverIP   netip.Prefix `json:"failover_ip"` // 10.200.0.100/32, routed to Primary at up
	APIPort      uint16       `json:"api_port"`    // 8080

	Datacenter     string `json:"datacenter"`      // gra1
	RescueHostname string `json:"rescue_hostname"` // rescue-customer-ns1
	RescueKernel   string `json:"rescue_kernel"`   // rescue12-customer
	// RescueDisk is where the rescue system sees the primary's disk image
	// (its own mount namespace; a tmpfs covers the top directory there).
	RescueDisk string `json:"rescue_disk"` // /srv/disk/www.img

	// Simulator latencies (the lab's stated latencies).
	TaskStartLatency time.Duration `json:"task_start_latency"` // 100ms
	RebootLatency    time.Duration `json:"reboot_latency"`     // 1.5s
	MoveLatency      time.Duration `json:"move_latency"`       // 0.5s

	// ServeCommand, when set, is started by Up in the ops namespace as the
	// simulator daemon, e.g. {"/usr/local/bin/takeover", "lab", "serve",
	// "--dir", "/run/takeover-lab"}; that command is expected to call
	// [Serve]. Up waits until the API port answers.
	ServeCommand []string `json:"serve_command,omitempty"`

	// Log receives progress; the zero Logger discards.
	Log zerolog.Logger `json:"-"`
}

// DefaultDir is where the lab lives unless Config.Dir says otherwise.
const DefaultDir = "/run/takeover-lab"

// IndexBody is the body of index.html on the primary's disk image.
const IndexBody = "takeover lab: served from the primary's disk\n"

// DefaultConfig returns the lab's default topology.
func DefaultConfig() Config { return Config{}.withDefaults() }

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func (c Config) withDefaults() Config {
	set := func(p *netip.Prefix, def string) {
		if !p.IsValid() {
			*p = pfx(def)
		}
	}
	str := func(p *string, def string) {
		if *p == "" {
			*p = def
		}
	}
	dur := func(p *time.Duration, def time.Duration) {
		if *p == 0 {
			*p = def
		}
	}
	str(&c.Prefix, "tk-")
	str(&c.Dir, DefaultDir)
	set(&c.Router, "10.200.0.1/24")
	set(&c.ClientRouter, "10.199.0.1/24")
	set(&c.Client, "10.199.0.10/24")
	set(&c.Primary.Public, "10.200.0.11/24")
	set(&c.Primary.Private, "10.201.0.11/24")
	set(&c.Spare.Public, "10.200.0.12/24")
	set(&c.Spare.Private, "10.201.0.12/24")
	set(&c.Ops.Public, "10.200.0.13/24")
	set(&c.Ops.Private, "10.201.0.13/24")
	set(&c.FailoverIP, "10.200.0.100/32")
	str(&c.Primary.Server, serverName("ns1", c.Primary.Public.Addr()))
	str(&c.Spare.Server, serverName("ns2", c.Spare.Public.Addr()))
	str(&c.Primary.Hostname, "web1")
	str(&c.Spare.Hostname, "spare")
	str(&c.Ops.Hostname, "ops")
	str(&c.Datacenter, "gra1")
	str(&c.RescueHostname, "rescue-customer-ns1")
	str(&c.RescueKernel, "rescue12-customer")
	str(&c.RescueDisk, "/srv/disk/www.img")
	if c.APIPort == 0 {
		c.APIPort = 8080
	}
	dur(&c.TaskStartLatency, 100*time.Millisecond)
	dur(&c.RebootLatency, 1500*time.Millisecond)
	dur(&c.MoveLatency, 500*time.Millisecond)
	return c
}

// serverName builds an OVH-style service name, ns1.ip-10-200-0-11.eu.
func serverName(short string, a netip.Addr) string {
	b := a.As4()
	return fmt.Sprintf("%s.ip-%d-%d-%d-%d.eu", short, b[0], b[1], b[2], b[3])
}

var prefixRE = regexp.MustCompile(`^[a-z][a-z0-9]{0,5}-$`)

func (c Config) validate() error {
	if !prefixRE.MatchString(c.Prefix) {
		return fmt.Errorf("lab prefix %q: want 1-6 lower-case letters or digits and a trailing '-'", c.Prefix)
	}
	if d := filepath.Clean(c.RescueDisk); !filepath.IsAbs(d) || strings.Count(d, "/") < 2 {
		return fmt.Errorf("lab rescue disk %q: want an absolute path at least two levels deep", c.RescueDisk)
	}
	if !filepath.IsAbs(c.Dir) || filepath.Clean(c.Dir) == "/" {
		return fmt.Errorf("lab dir %q: want an absolute path other than /", c.Dir)
	}
	for _, p := range []netip.Prefix{c.Router, c.ClientRouter, c.Client, c.Primary.Public, c.Primary.Private,
		c.Spare.Public, c.Spare.Private, c.Ops.Public, c.Ops.Private, c.FailoverIP} {
		if !p.Addr().Is4() {
			return fmt.Errorf("lab address %s: want IPv4", p)
		}
	}
	if c.Primary.Server == c.Spare.Server {
		return fmt.Errorf("lab servers: primary and spare are both named %q", c.Primary.Server)
	}
	return nil
}

// Namespace roles.
const (
	roleSwitch  = "sw"
	roleClient  = "client"
	rolePrimary = "primary"
	roleSpare   = "spare"
	roleOps     = "ops"
)

var roles = []string{roleSwitch, roleClient, rolePrimary, roleSpare, roleOps}

// NS returns the network namespace name of a role: "sw", "client",
// "primary", "spare" or "ops" (e.g. "tk-primary").
func (c Config) NS(role string) string { return c.Prefix + role }

// NSPath returns the namespace's bind mount, /run/netns/<name>.
func (c Config) NSPath(role string) string { return "/run/netns/" + c.NS(role) }

// Endpoint is the simulator's API base URL, http://10.200.0.13:8080/1.0.
func (c Config) Endpoint() string {
	return fmt.Sprintf("http://%s/1.0", netip.AddrPortFrom(c.Ops.Public.Addr(), c.APIPort))
}

// Paths of the files the lab makes, all under Dir.
type Paths struct {
	Dir            string // the lab directory (0700)
	State          string // state.json
	OVHConf        string // ovh.conf: go-ovh credentials for the simulator, 0600
	OperatorKey    string // keys/admin_ed25519: client key accepted by the spare and the primary's normal OS
	RescueKey      string // keys/rescue_ed25519: key pair for the runbook's primary.rescue.key (.pub beside it)
	KnownHosts     string // known_hosts: spare and primary normal OS host keys, by public and private IP
	PrimaryHostKey string // keys/primary_host_ed25519_key (.pub): the normal OS's fixed host key
	SpareHostKey   string // keys/spare_host_ed25519_key (.pub)
	Image          string // primary/www.img: the primary's disk (ext4, label "labwww")
	PrimaryMount   string // primary/www: where the normal OS mounts the image
	Rescue         string // primary/rescue: the current rescue boot's host key, authorized_keys, fake /proc files
	SpareMount     string // spare/mnt/www: mount point for the imported disk on the spare
	SpareFUSE      string // spare/nbd: directory for nbdfuse's file on the spare
	Logs           string // logs: one log file per daemon
}

// Paths returns where the lab keeps its files.
func (c Config) Paths() Paths {
	j := func(p ...string) string { return filepath.Join(append([]string{c.Dir}, p...)...) }
	return Paths{
		Dir:            c.Dir,
		State:          j("state.json"),
		OVHConf:        j("ovh.conf"),
		OperatorKey:    j("keys", "admin_ed25519"),
		RescueKey:      j("keys", "rescue_ed25519"),
		KnownHosts:     j("known_hosts"),
		PrimaryHostKey: j("keys", "primary_host_ed25519_key"),
		SpareHostKey:   j("keys", "spare_host_ed25519_key"),
		Image:          j("primary", "www.img"),
		PrimaryMount:   j("primary", "www"),
		Rescue:         j("primary", "rescue"),
		SpareMount:     j("spare", "mnt", "www"),
		SpareFUSE:      j("spare", "nbd"),
		Logs:           j("logs"),
	}
}
