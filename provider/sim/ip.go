package sim

import (
	"fmt"
	"net/http"
	"net/netip"

	"github.com/takeover-dev/takeover/provider"
)

// ip routes /ip[/...]; the caller holds s.mu.
func (s *Sim) ip(req *request, seg []string) *reply {
	get := req.method == http.MethodGet
	post := req.method == http.MethodPost
	if len(seg) == 0 {
		if !get {
			return methodNotAllowed(req.method)
		}
		return s.listIPs(req)
	}
	b, rep := s.lookupBlockPath(seg[0])
	if rep != nil {
		return rep
	}
	rest := seg[1:]
	switch {
	case len(rest) == 0 && get:
		return ok(s.ipJSON(b))
	case len(rest) == 1 && rest[0] == "move" && get:
		return ok(s.destinations(b))
	case len(rest) == 1 && rest[0] == "move" && post:
		var in struct {
			To      *string `json:"to"`
			Nexthop *string `json:"nexthop"`
		}
		if err := decodeStrict(req.body, &in); err != nil || in.To == nil || *in.To == "" {
			return badRequest("Invalid body: expected {\"to\": serviceName, \"nexthop\": string|null}")
		}
		if in.Nexthop != nil && *in.Nexthop != "" {
			return badRequest("Invalid nexthop: a dedicated server destination takes no nexthop")
		}
		if _, found := s.servers[*in.To]; !found {
			return badRequest(fmt.Sprintf("Invalid destination %q: no such service", *in.To))
		}
		return s.postMove(b, *in.To)
	case len(rest) == 1 && rest[0] == "park" && post:
		if len(req.body) > 0 && string(req.body) != "null" && string(req.body) != "{}" {
			return badRequest("Invalid body: park takes no parameter")
		}
		if b.routedTo == "" {
			return badRequest(fmt.Sprintf("IP %s is already parked", b.block))
		}
		return s.postMove(b, "")
	case len(rest) == 1 && rest[0] == "task" && get:
		return ok(s.listTasks(provider.ScopeIP, b.block.String(), req.query.Get("function"), req.query.Get("status")))
	case len(rest) == 2 && rest[0] == "task" && get:
		t, rep := s.lookupTask(provider.ScopeIP, b.block.String(), rest[1], true)
		if rep != nil {
			return rep
		}
		return ok(s.ipTaskJSON(t))
	}
	if len(rest) <= 2 && len(rest) > 0 {
		return methodOrURL(req.method, rest[0])
	}
	if len(rest) == 0 {
		return methodNotAllowed(req.method)
	}
	return invalidURL()
}

func (s *Sim) postMove(b *ipBlock, to string) *reply {
	if to != "" {
		if rep := s.movable(b, to); rep != nil {
			return rep
		}
	} else if b.typ != "failover" {
		return badRequest(fmt.Sprintf("IP %s is not an additional IP and cannot be parked", b.block))
	}
	if t := s.pendingMove(b.block); t != nil {
		return conflict(fmt.Sprintf("A move of IP %s is already pending (task %d)", b.block, t.id))
	}
	t := s.newMove(provider.ScopeIP, b.block.String(), b, to)
	return ok(s.ipTaskJSON(t))
}

// newMove creates a move task of b to server to ("" parks).
func (s *Sim) newMove(scope provider.TaskScope, owner string, b *ipBlock, to string) *task {
	comment := "Move IP " + b.block.String() + " to " + to
	if to == "" {
		comment = "Park IP " + b.block.String()
	}
	t := s.newTask(scope, owner, fnMove, comment, s.lat.MoveDoing, to, b.block)
	s.counters.Moves[b.block.String()]++
	s.advance(t)
	return t
}

// movable says why b cannot move to server to, or nil.
func (s *Sim) movable(b *ipBlock, to string) *reply {
	if b.typ != "failover" {
		return badRequest(fmt.Sprintf("IP %s cannot be moved: it is the main address of server %s", b.block, b.routedTo))
	}
	if b.routedTo == to {
		return badRequest(fmt.Sprintf("IP %s is already routed to %s", b.block, to))
	}
	return nil
}

func (s *Sim) listIPs(req *request) *reply {
	var filter netip.Prefix
	if v := req.query.Get("ip"); v != "" {
		p, err := parseBlock(v)
		if err != nil {
			return badRequest(fmt.Sprintf("Invalid parameter ip: %q", v))
		}
		filter = p
	}
	typ := req.query.Get("type")
	_, wantRoute := req.query["routedTo.serviceName"]
	route := req.query.Get("routedTo.serviceName")
	blocks := []string{}
	for _, b := range s.sortedIPs() {
		if filter.IsValid() && !(b.block.Contains(filter.Addr()) && b.block.Bits() <= filter.Bits()) {
			continue
		}
		if typ != "" && b.typ != typ {
			continue
		}
		if wantRoute && b.routedTo != route {
			continue
		}
		blocks = append(blocks, b.block.String())
	}
	return ok(blocks)
}

func (s *Sim) lookupBlockPath(text string) (*ipBlock, *reply) {
	p, err := parseBlock(text)
	if err != nil {
		return nil, badRequest(fmt.Sprintf("Invalid ip block %q", text))
	}
	b, found := s.ips[p]
	if !found {
		return nil, notFound(fmt.Sprintf("The requested object (ip = %s) does not exist", p))
	}
	return b, nil
}

func (s *Sim) lookupBlockQuery(text string) (*ipBlock, *reply) {
	if text == "" {
		return nil, badRequest("Missing parameter ip")
	}
	return s.lookupBlockPath(text)
}

func (s *Sim) ipJSON(b *ipBlock) map[string]any {
	var svc any
	if b.routedTo != "" {
		svc = b.routedTo
	}
	version := 4
	if b.block.Addr().Is6() {
		version = 6
	}
	return map[string]any{
		"ip":              b.block.String(),
		"type":            b.typ,
		"routedTo":        map[string]any{"serviceName": svc},
		"canBeTerminated": b.typ == "failover",
		"country":         "fr",
		"description":     nil,
		"organisationId":  nil,
		"isAdditionalIp":  b.typ == "failover",
		"bringYourOwnIp":  false,
		"campus":          nil,
		"regions":         nil,
		"rir":             "RIPE",
		"version":         version,
	}
}

func (s *Sim) destinations(b *ipBlock) map[string]any {
	servers := []map[string]any{}
	if b.typ == "failover" {
		for _, name := range sortedKeys(s.servers) {
			if name != b.routedTo {
				servers = append(servers, map[string]any{"service": name, "nexthop": nil})
			}
		}
	}
	empty := func() []any { return []any{} }
	return map[string]any{
		"cloudProject":    empty(),
		"dedicatedCloud":  empty(),
		"dedicatedServer": servers,
		"hostingReseller": empty(),
		"ipLoadbalancing": empty(),
		"vps":             empty(),
	}
}

func (s *Sim) ipTaskJSON(t *task) map[string]any {
	var dest any
	if t.server != "" {
		dest = map[string]any{"serviceName": t.server}
	}
	return map[string]any{
		"taskId":      t.id,
		"function":    t.function,
		"status":      t.status,
		"comment":     t.comment,
		"destination": dest,
		"startDate":   s.date(t.created),
		"lastUpdate":  s.date(t.lastUpdate),
		"doneDate":    s.datePtr(t.doneDate),
	}
}
