package sim

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/takeover-dev/takeover/provider"
)

// App is an OVH application (key and secret) together with one validated
// consumer key. Several Apps may share a Key (and then must share the
// Secret) to give an application several consumer keys.
type App struct {
	Key, Secret, Consumer string
	// Rules restricts the consumer key to these calls; empty means every
	// call is granted. A miss answers 403 NOT_GRANTED_CALL.
	Rules []Rule
}

// Rule is one access rule of a consumer key: an HTTP method and a path
// relative to the API base (/1.0) in which "*" matches any characters,
// slashes included ("/dedicated/server/*").
type Rule struct {
	Method string `yaml:"method"`
	Path   string `yaml:"path"`
}

// ServerConfig describes one dedicated server of the simulated account.
type ServerConfig struct {
	Name       string // service name, e.g. "ns1.ip-10-200-0-11.eu"
	IP         string // main IPv4 address, e.g. "10.200.0.11"
	Datacenter string // e.g. "gra3"; default "gra3"
	// Boots are the netboot choices; nil gives DefaultBoots.
	Boots []provider.Boot
	// BootID is the initial netboot; 0 gives 1 (hard disk).
	BootID int64
	// Monitoring is the initial ICMP monitoring flag; nil means true.
	Monitoring     *bool
	NoIntervention bool
	RescueSSHKey   string
	RescueMail     string
}

// IPConfig describes one Additional (failover) IP block.
type IPConfig struct {
	Block    string // "10.200.0.100/32" or "10.200.0.100"
	RoutedTo string // server name; "" means parked
}

// Latency sets how long tasks stay in each phase. Zero values make tasks
// progress as soon as anything looks at them.
type Latency struct {
	// TaskStart is the time from creation to "doing" (a reboot task spends
	// the first half in "init" and the second in "todo"; a move task is
	// "todo" throughout).
	TaskStart time.Duration
	// RebootDoing and MoveDoing are the minimum time a hardReboot or
	// genericMoveFloatingIp task stays in "doing"; a task also stays there
	// until its hook has returned.
	RebootDoing, MoveDoing time.Duration
	// ListLag hides a new task from the task list endpoints for this long
	// (it is readable by id at once), as OVH's lists lag behind.
	ListLag time.Duration
}

// Config configures a simulator.
type Config struct {
	Apps    []App
	Servers []ServerConfig
	IPs     []IPConfig
	Latency Latency
	// Clock is the simulator's time; nil means time.Now. With a custom clock
	// tasks progress only when a request (or a Sim method) observes them;
	// with the real clock timers also move them along.
	Clock func() time.Time
	// Seed seeds the random source of Fault.Rate and of query ids.
	Seed int64
	// SignatureWindow is how far X-Ovh-Timestamp may be from the server's
	// time; 0 gives DefaultSignatureWindow.
	SignatureWindow time.Duration
	Log             zerolog.Logger
}

// DefaultSignatureWindow is the accepted distance between a request's
// X-Ovh-Timestamp and the simulator's (skewed) time.
const DefaultSignatureWindow = 180 * time.Second

// DefaultBoots returns the netboot list a server gets when its config has
// none: hard disk (1), rescue-customer (46371), rescue12-customer (230242)
// and power-off (95083).
func DefaultBoots() []provider.Boot {
	return []provider.Boot{
		{ID: 1, Type: "harddisk", Kernel: "hd", Description: "Boot to disk"},
		{ID: 46371, Type: "rescue", Kernel: "rescue-customer", Description: "Customer rescue system (Linux)"},
		{ID: 230242, Type: "rescue", Kernel: "rescue12-customer", Description: "Customer rescue system (Debian-12-based)"},
		{ID: 95083, Type: "power", Kernel: "poweroff", Description: "Power-off server"},
	}
}

// Counters counts requests the simulator accepted, that is POSTs that
// created a task: Reboots by server name, Moves by IP block ("1.2.3.4/32").
// [CountersPath] serves them as JSON: {"reboots":{...},"moves":{...}}.
type Counters struct {
	Reboots map[string]int `json:"reboots"`
	Moves   map[string]int `json:"moves"`
}

type server struct {
	name           string
	id             int64
	ip             netip.Addr
	datacenter     string
	boots          []provider.Boot
	bootID         int64
	bootScript     *string
	efiPath        *string
	rootDevice     *string
	rescueSSHKey   string
	rescueMail     string
	monitoring     bool
	noIntervention bool
	state          string
	powerState     string
	booted         provider.Boot
	interventions  []intervention
}

type intervention struct {
	id   int64
	date time.Time
	typ  string
}

type ipBlock struct {
	block    netip.Prefix
	typ      string // failover | dedicated
	routedTo string
}

type credential struct {
	app     string
	rules   []Rule
	revoked bool
}

// Sim is an in-memory OVH API v1 simulator. It implements http.Handler
// with the API under /1.0 (and its alias /v1). It is safe for concurrent
// use; hooks and knobs must be set before serving.
type Sim struct {
	log    zerolog.Logger
	clock  func() time.Time
	real   bool
	lat    Latency
	window time.Duration
	ctx    context.Context
	cancel context.CancelFunc
	hooks  sync.WaitGroup
	paris  *time.Location

	mu        sync.Mutex
	secrets   map[string]string // application key -> secret
	creds     map[string]*credential
	servers   map[string]*server
	ips       map[netip.Prefix]*ipBlock
	tasks     map[int64]*task
	nextTask  int64
	nextInter int64
	skew      time.Duration
	counters  Counters
	failNext  map[string][]string
	trans404  int
	onReboot  func(ctx context.Context, server string, boot provider.Boot) error
	onMove    func(ctx context.Context, ip netip.Prefix, from, to string) error
	timers    []*time.Timer
	closed    bool

	fmu     sync.Mutex
	faults  []*faultState
	rnd     *rand.Rand
	queries uint64
	started int64
}

// New builds a simulator from cfg. It panics if cfg is invalid (see
// Config.Validate); LoadConfig validates, so only a programming error can
// reach the panic.
func New(cfg Config) *Sim {
	if err := cfg.Validate(); err != nil {
		panic(fmt.Sprintf("sim.New: %v", err))
	}
	s := &Sim{
		log:      cfg.Log,
		clock:    cfg.Clock,
		lat:      cfg.Latency,
		window:   cfg.SignatureWindow,
		secrets:  map[string]string{},
		creds:    map[string]*credential{},
		servers:  map[string]*server{},
		ips:      map[netip.Prefix]*ipBlock{},
		tasks:    map[int64]*task{},
		nextTask: 4200001,
		failNext: map[string][]string{},
		counters: Counters{Reboots: map[string]int{}, Moves: map[string]int{}},
		rnd:      rand.New(rand.NewPCG(uint64(cfg.Seed), 0x5eed)),
	}
	if s.clock == nil {
		s.clock = time.Now
		s.real = true
	}
	if s.window == 0 {
		s.window = DefaultSignatureWindow
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.paris = parisLocation()
	s.started = s.clock().Unix()
	for _, a := range cfg.Apps {
		s.secrets[a.Key] = a.Secret
		s.creds[a.Consumer] = &credential{app: a.Key, rules: a.Rules}
	}
	for i, sc := range cfg.Servers {
		srv := &server{
			name:           sc.Name,
			id:             int64(100001 + i),
			ip:             netip.MustParseAddr(sc.IP),
			datacenter:     sc.Datacenter,
			boots:          sc.Boots,
			bootID:         sc.BootID,
			rescueSSHKey:   sc.RescueSSHKey,
			rescueMail:     sc.RescueMail,
			monitoring:     sc.Monitoring == nil || *sc.Monitoring,
			noIntervention: sc.NoIntervention,
			state:          "ok",
			powerState:     "poweron",
		}
		if srv.datacenter == "" {
			srv.datacenter = "gra3"
		}
		if srv.boots == nil {
			srv.boots = DefaultBoots()
		}
		if srv.bootID == 0 {
			srv.bootID = 1
		}
		srv.booted, _ = srv.boot(srv.bootID)
		s.servers[srv.name] = srv
		p := netip.PrefixFrom(srv.ip, srv.ip.BitLen())
		s.ips[p] = &ipBlock{block: p, typ: "dedicated", routedTo: srv.name}
	}
	for _, ic := range cfg.IPs {
		p, _ := parseBlock(ic.Block)
		s.ips[p] = &ipBlock{block: p, typ: "failover", routedTo: ic.RoutedTo}
	}
	return s
}

// Validate checks that names are unique and well formed and that every
// reference (boot id, route) resolves.
func (c Config) Validate() error {
	keys := map[string]string{}
	cks := map[string]bool{}
	for _, a := range c.Apps {
		if a.Key == "" || a.Secret == "" || a.Consumer == "" {
			return fmt.Errorf("app %q: key, secret and consumer are all required", a.Key)
		}
		if sec, ok := keys[a.Key]; ok && sec != a.Secret {
			return fmt.Errorf("app %q: listed twice with different secrets", a.Key)
		}
		keys[a.Key] = a.Secret
		if cks[a.Consumer] {
			return fmt.Errorf("app %q: consumer key listed twice", a.Key)
		}
		cks[a.Consumer] = true
	}
	names := map[string]bool{}
	addrs := map[netip.Prefix]bool{}
	for _, sc := range c.Servers {
		if sc.Name == "" {
			return fmt.Errorf("server with ip %q: name is required", sc.IP)
		}
		if names[sc.Name] {
			return fmt.Errorf("server %q: listed twice", sc.Name)
		}
		names[sc.Name] = true
		a, err := netip.ParseAddr(sc.IP)
		if err != nil {
			return fmt.Errorf("server %q: ip: %w", sc.Name, err)
		}
		addrs[netip.PrefixFrom(a, a.BitLen())] = true
		boots := sc.Boots
		if boots == nil {
			boots = DefaultBoots()
		}
		ids := map[int64]bool{}
		for _, b := range boots {
			if ids[b.ID] {
				return fmt.Errorf("server %q: boot id %d listed twice", sc.Name, b.ID)
			}
			ids[b.ID] = true
		}
		if id := sc.BootID; id != 0 && !ids[id] {
			return fmt.Errorf("server %q: boot id %d is not one of its boots", sc.Name, id)
		}
		if sc.BootID == 0 && !ids[1] {
			return fmt.Errorf("server %q: no bootId given and no boot with id 1", sc.Name)
		}
	}
	for _, ic := range c.IPs {
		p, err := parseBlock(ic.Block)
		if err != nil {
			return fmt.Errorf("ip %q: %w", ic.Block, err)
		}
		if addrs[p] {
			return fmt.Errorf("ip %q: listed twice or is a server's main address", ic.Block)
		}
		addrs[p] = true
		if ic.RoutedTo != "" && !names[ic.RoutedTo] {
			return fmt.Errorf("ip %q: routed to unknown server %q", ic.Block, ic.RoutedTo)
		}
	}
	return nil
}

func (srv *server) boot(id int64) (provider.Boot, bool) {
	for _, b := range srv.boots {
		if b.ID == id {
			return b, true
		}
	}
	return provider.Boot{}, false
}

// parseBlock accepts "1.2.3.4", "1.2.3.4/32" or an IPv6 equivalent and
// returns the masked prefix.
func parseBlock(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		if p.Masked() != p {
			return netip.Prefix{}, fmt.Errorf("parse ip block %q: host bits set", s)
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("parse ip block %q: not an address or a prefix", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func parisLocation() *time.Location {
	if loc, err := time.LoadLocation("Europe/Paris"); err == nil {
		return loc
	}
	return time.FixedZone("CET", 3600)
}

func (s *Sim) now() time.Time { return s.clock() }

// OnReboot sets the function run when a hardReboot task passes into
// "doing", with the netboot set on the server at that moment. It runs once
// per task, in its own goroutine, without the simulator's locks held; the
// task stays "doing" until it returns, and ends in "ovhError" if it returns
// an error. Its ctx is cancelled by Close.
func (s *Sim) OnReboot(fn func(ctx context.Context, server string, boot provider.Boot) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onReboot = fn
}

// OnMove sets the function run when an IP move task passes into "doing",
// with the block, the server it is routed to at that moment ("" if parked)
// and the destination. Same execution rules as OnReboot; the route flips
// only when the task reaches "done", after fn returned nil.
func (s *Sim) OnMove(fn func(ctx context.Context, ip netip.Prefix, from, to string) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onMove = fn
}

// WaitHooks blocks until no hook is running. Tests use it after a request
// that started one.
func (s *Sim) WaitHooks() { s.hooks.Wait() }

// Close cancels the ctx of running hooks, stops the simulator's timers and
// waits for the hooks to return. The handler keeps answering afterwards.
func (s *Sim) Close() {
	s.mu.Lock()
	s.closed = true
	for _, t := range s.timers {
		t.Stop()
	}
	s.timers = nil
	s.mu.Unlock()
	s.cancel()
	s.hooks.Wait()
}

// Counters returns a copy of the accepted-request counters.
func (s *Sim) Counters() Counters {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := Counters{Reboots: map[string]int{}, Moves: map[string]int{}}
	for k, v := range s.counters.Reboots {
		c.Reboots[k] = v
	}
	for k, v := range s.counters.Moves {
		c.Moves[k] = v
	}
	return c
}

// Server returns a snapshot of a server's settings.
func (s *Sim) Server(name string) (provider.Server, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advanceAll()
	srv, ok := s.servers[name]
	if !ok {
		return provider.Server{}, false
	}
	return provider.Server{
		ID:             provider.ServerID(srv.name),
		IP:             srv.ip,
		BootID:         srv.bootID,
		RescueSSHKey:   srv.rescueSSHKey,
		Monitoring:     srv.monitoring,
		NoIntervention: srv.noIntervention,
		PowerState:     srv.powerState,
		State:          srv.state,
		Datacenter:     srv.datacenter,
	}, true
}

// Booted returns the netboot the server last (re)started into: its
// configured boot at start, then the boot of its last successful reboot.
func (s *Sim) Booted(name string) (provider.Boot, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advanceAll()
	srv, ok := s.servers[name]
	if !ok {
		return provider.Boot{}, false
	}
	return srv.booted, true
}

// Route returns the server an IP block ("1.2.3.4" or "1.2.3.4/32") is
// routed to, "" when parked or unknown.
func (s *Sim) Route(ip string) string {
	p, err := parseBlock(ip)
	if err != nil {
		return ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advanceAll()
	if b, ok := s.ips[p]; ok {
		return b.routedTo
	}
	return ""
}

// SetRoute routes an IP block to a server ("" parks it) at once, without a
// task or a hook; an unknown block is added as a failover IP. For test and
// lab setup.
func (s *Sim) SetRoute(ip, server string) {
	p, err := parseBlock(ip)
	if err != nil {
		s.log.Error().Err(err).Msg("set route")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.ips[p]
	if !ok {
		b = &ipBlock{block: p, typ: "failover"}
		s.ips[p] = b
	}
	b.routedTo = server
}

// RevokeConsumer makes a consumer key invalid (as when it expires): calls
// signed with it get 403 INVALID_CREDENTIAL.
func (s *Sim) RevokeConsumer(ck string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.creds[ck]; ok {
		c.revoked = true
	}
}

// AddIntervention records a datacenter intervention on a server (as when
// OVH staff acted on it) and returns its id.
func (s *Sim) AddIntervention(server, typ string) (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	srv, ok := s.servers[server]
	if !ok {
		return 0, false
	}
	s.nextInter++
	id := 900000 + s.nextInter
	srv.interventions = append(srv.interventions, intervention{id: id, date: s.now(), typ: typ})
	return id, true
}

// SetClockSkew shifts the simulator's API time by d: /auth/time answers
// the shifted time and signature timestamps are checked against it. A
// client that cached its time delta before the change is refused.
func (s *Sim) SetClockSkew(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.skew = d
}

func (s *Sim) apiNow() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.now().Add(s.skew)
}

// PurgeTask makes a task vanish: it answers 404 from now on and leaves the
// lists. A pending purged task still runs to its end (hooks included).
func (s *Sim) PurgeTask(scope provider.TaskScope, owner string, id int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.tasks[id]; ok && t.scope == scope && sameOwner(t, owner) {
		t.purged = true
	}
}

func sameOwner(t *task, owner string) bool {
	if t.scope == provider.ScopeIP {
		p, err := parseBlock(owner)
		return err == nil && p == t.ip
	}
	return t.owner == owner
}

// FailNextTask makes the next task created with this function
// ("hardReboot", "genericMoveFloatingIp") end in status (ovhError,
// customerError) instead of running: its hook is not called and nothing
// changes on the server or the route.
func (s *Sim) FailNextTask(function string, status string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failNext[function] = append(s.failNext[function], status)
}

// TransientTask404 makes the next n task reads by id (GET
// .../task/{id} in either scope) answer 404, after which they behave.
func (s *Sim) TransientTask404(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.trans404 += n
}

// Task returns a snapshot of a task, purged ones included.
func (s *Sim) Task(ref provider.TaskRef) (provider.Task, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advanceAll()
	t, ok := s.tasks[ref.ID]
	if !ok || t.scope != ref.Scope || !sameOwner(t, ref.Owner) {
		return provider.Task{}, false
	}
	pt := provider.Task{
		Ref:       provider.TaskRef{Scope: t.scope, Owner: t.owner, ID: t.id},
		Function:  t.function,
		Status:    t.status,
		Comment:   t.comment,
		StartDate: t.created,
	}
	lu := t.lastUpdate
	pt.LastUpdate = &lu
	if t.doneDate != nil {
		d := *t.doneDate
		pt.DoneDate = &d
	}
	return pt, true
}

func sortedKeys[M ~map[string]V, V any](m M) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
