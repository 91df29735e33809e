package sim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/takeover-dev/takeover/provider"
)

// dedicated routes /dedicated/server[/...]; the caller holds s.mu.
func (s *Sim) dedicated(req *request, seg []string) *reply {
	if len(seg) == 0 {
		if req.method != http.MethodGet {
			return methodNotAllowed(req.method)
		}
		return ok(sortedKeys(s.servers))
	}
	srv, found := s.servers[seg[0]]
	if !found {
		return notFound("This service does not exist")
	}
	rest := seg[1:]
	if len(rest) == 0 {
		switch req.method {
		case http.MethodGet:
			return ok(s.serverJSON(srv))
		case http.MethodPut:
			return s.putServer(srv, req.body)
		}
		return methodNotAllowed(req.method)
	}
	get := req.method == http.MethodGet
	post := req.method == http.MethodPost
	switch {
	case rest[0] == "boot" && len(rest) == 1 && get:
		ids := []int64{}
		for _, b := range srv.boots {
			if t := req.query.Get("bootType"); t == "" || t == b.Type {
				ids = append(ids, b.ID)
			}
		}
		return ok(ids)
	case rest[0] == "boot" && len(rest) == 2 && get:
		id, err := strconv.ParseInt(rest[1], 10, 64)
		if err != nil {
			return badRequest(fmt.Sprintf("Invalid bootId %q", rest[1]))
		}
		b, found := srv.boot(id)
		if !found {
			return notFound(fmt.Sprintf("The requested object (bootId = %d) does not exist", id))
		}
		return ok(map[string]any{"bootId": b.ID, "bootType": b.Type, "kernel": b.Kernel, "description": b.Description})
	case rest[0] == "reboot" && len(rest) == 1 && post:
		return s.reboot(srv)
	case rest[0] == "task" && len(rest) == 1 && get:
		return ok(s.listTasks(provider.ScopeServer, srv.name, req.query.Get("function"), req.query.Get("status")))
	case rest[0] == "task" && len(rest) == 2 && get:
		t, rep := s.lookupTask(provider.ScopeServer, srv.name, rest[1], true)
		if rep != nil {
			return rep
		}
		return ok(s.serverTaskJSON(t))
	case rest[0] == "task" && len(rest) == 3 && rest[2] == "cancel" && post:
		t, rep := s.lookupTask(provider.ScopeServer, srv.name, rest[1], false)
		if rep != nil {
			return rep
		}
		if !s.cancelTask(t) {
			return badRequest(fmt.Sprintf("Task %d cannot be cancelled in status %s", t.id, t.status))
		}
		return ok(nil)
	case rest[0] == "ips" && len(rest) == 1 && get:
		blocks := []string{}
		for _, b := range s.sortedIPs() {
			if b.routedTo == srv.name {
				blocks = append(blocks, b.block.String())
			}
		}
		return ok(blocks)
	case rest[0] == "ipCanBeMovedTo" && len(rest) == 1 && get:
		b, rep := s.lookupBlockQuery(req.query.Get("ip"))
		if rep != nil {
			return rep
		}
		if rep := s.movable(b, srv.name); rep != nil {
			return rep
		}
		return ok(nil)
	case rest[0] == "ipMove" && len(rest) == 1 && post:
		var in struct {
			IP *string `json:"ip"`
		}
		if err := decodeStrict(req.body, &in); err != nil || in.IP == nil {
			return badRequest("Invalid body: expected {\"ip\": ipBlock}")
		}
		b, rep := s.lookupBlockQuery(*in.IP)
		if rep != nil {
			return rep
		}
		if rep := s.movable(b, srv.name); rep != nil {
			return rep
		}
		if t := s.pendingMove(b.block); t != nil {
			return conflict(fmt.Sprintf("A move of IP %s is already pending (task %d)", b.block, t.id))
		}
		if t := s.pendingServerTask(srv.name); t != nil {
			return conflict(fmt.Sprintf("A task (%d, %s) is already pending on server %s", t.id, t.function, srv.name))
		}
		t := s.newMove(provider.ScopeServer, srv.name, b, srv.name)
		return ok(s.serverTaskJSON(t))
	case (rest[0] == "intervention" || rest[0] == "plannedIntervention") && get:
		return s.interventions(srv, rest)
	}
	if len(rest) <= 3 {
		return methodOrURL(req.method, rest[0])
	}
	return invalidURL()
}

// methodOrURL answers a known sub-resource with a wrong method with 405,
// anything else with 404.
func methodOrURL(method, first string) *reply {
	switch first {
	case "boot", "reboot", "task", "ips", "ipCanBeMovedTo", "ipMove", "intervention", "plannedIntervention", "move":
		return methodNotAllowed(method)
	}
	return invalidURL()
}

func (s *Sim) interventions(srv *server, rest []string) *reply {
	planned := rest[0] == "plannedIntervention"
	if len(rest) == 1 {
		ids := []int64{}
		if !planned {
			for _, iv := range srv.interventions {
				ids = append(ids, iv.id)
			}
		}
		return ok(ids)
	}
	id, err := strconv.ParseInt(rest[1], 10, 64)
	if len(rest) != 2 || err != nil {
		return invalidURL()
	}
	if !planned {
		for _, iv := range srv.interventions {
			if iv.id == id {
				return ok(map[string]any{"interventionId": iv.id, "date": s.date(iv.date), "type": iv.typ})
			}
		}
	}
	return notFound(fmt.Sprintf("The requested object (id = %d) does not exist", id))
}

func (s *Sim) serverJSON(srv *server) map[string]any {
	var key, mail any
	if srv.rescueSSHKey != "" {
		key = srv.rescueSSHKey
	}
	if srv.rescueMail != "" {
		mail = srv.rescueMail
	}
	region := "eu-west-" + strings.TrimRight(srv.datacenter, "0123456789")
	return map[string]any{
		"name":              srv.name,
		"serverId":          srv.id,
		"ip":                srv.ip.String(),
		"bootId":            srv.bootID,
		"bootScript":        srv.bootScript,
		"efiBootloaderPath": srv.efiPath,
		"rescueMail":        mail,
		"rescueSshKey":      key,
		"monitoring":        srv.monitoring,
		"noIntervention":    srv.noIntervention,
		"state":             srv.state,
		"rootDevice":        srv.rootDevice,
		"powerState":        srv.powerState,
		"datacenter":        srv.datacenter,
		"region":            region,
		"availabilityZone":  region + "-a",
		"rack":              "S" + strconv.FormatInt(srv.id%100, 10),
		"commercialRange":   "sim",
		"linkSpeed":         1000,
		"os":                "debian12_64",
		"professionalUse":   false,
		"supportLevel":      "pro",
		"newUpgradeSystem":  true,
		"reverse":           srv.name + ".",
		"iam": map[string]any{
			"id":          fmt.Sprintf("00000000-0000-0000-0000-%012d", srv.id),
			"urn":         "urn:v1:eu:resource:dedicatedServer:" + srv.name,
			"displayName": srv.name,
			"tags":        nil,
		},
	}
}

// writable lists the fields PUT /dedicated/server/{sn} accepts.
var writable = map[string]bool{
	"bootId": true, "bootScript": true, "efiBootloaderPath": true, "rescueMail": true,
	"rescueSshKey": true, "monitoring": true, "noIntervention": true, "state": true, "rootDevice": true,
}

func (s *Sim) putServer(srv *server, body []byte) *reply {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil || fields == nil {
		return badRequest("Invalid body: expected a JSON object")
	}
	for _, k := range sortedKeys(fields) {
		if !writable[k] {
			return badRequest(fmt.Sprintf("Invalid parameter %q: not a writable property of dedicated.Server", k))
		}
	}
	// Validate everything before changing anything.
	next := *srv
	for k, raw := range fields {
		null := string(raw) == "null"
		bad := func() *reply { return badRequest(fmt.Sprintf("Invalid value for parameter %q", k)) }
		switch k {
		case "bootId":
			var id int64
			if null || json.Unmarshal(raw, &id) != nil {
				return bad()
			}
			if _, found := srv.boot(id); !found {
				return badRequest(fmt.Sprintf("Invalid bootId %d: not a netboot of this server", id))
			}
			next.bootID = id
		case "monitoring", "noIntervention":
			var v bool
			if null || json.Unmarshal(raw, &v) != nil {
				return bad()
			}
			if k == "monitoring" {
				next.monitoring = v
			} else {
				next.noIntervention = v
			}
		case "state":
			var v string
			if null || json.Unmarshal(raw, &v) != nil {
				return bad()
			}
			switch v {
			case "ok", "error", "hacked", "hackedBlocked":
			default:
				return bad()
			}
			next.state = v
		default: // nullable strings
			var v *string
			if json.Unmarshal(raw, &v) != nil {
				return bad()
			}
			str := ""
			if v != nil {
				str = *v
			}
			switch k {
			case "rescueSshKey":
				if str != "" {
					if _, _, _, rest, err := ssh.ParseAuthorizedKey([]byte(str)); err != nil || len(strings.TrimSpace(string(rest))) > 0 {
						return badRequest("Invalid rescueSshKey: expected one public SSH key (RSA, ECDSA or ED25519)")
					}
				}
				next.rescueSSHKey = str
			case "rescueMail":
				if str != "" && !strings.Contains(str, "@") {
					return bad()
				}
				next.rescueMail = str
			case "bootScript":
				next.bootScript = v
			case "efiBootloaderPath":
				next.efiPath = v
			case "rootDevice":
				next.rootDevice = v
			}
		}
	}
	*srv = next
	return ok(nil)
}

func (s *Sim) reboot(srv *server) *reply {
	if t := s.pendingServerTask(srv.name); t != nil {
		return conflict(fmt.Sprintf("A task (%d, %s) is already pending on server %s", t.id, t.function, srv.name))
	}
	t := s.newTask(provider.ScopeServer, srv.name, fnReboot, "Reboot asked", s.lat.RebootDoing, srv.name, netip.Prefix{})
	s.counters.Reboots[srv.name]++
	s.advance(t)
	return ok(s.serverTaskJSON(t))
}

func (s *Sim) serverTaskJSON(t *task) map[string]any {
	return map[string]any{
		"taskId":                t.id,
		"function":              t.function,
		"status":                t.status,
		"comment":               t.comment,
		"startDate":             s.date(t.created),
		"lastUpdate":            s.date(t.lastUpdate),
		"doneDate":              s.datePtr(t.doneDate),
		"needSchedule":          false,
		"note":                  nil,
		"plannedInterventionId": nil,
		"tags":                  nil,
		"ticketReference":       nil,
	}
}

// lookupTask finds a visible task of an owner; read says this is a task
// read by id, subject to TransientTask404.
func (s *Sim) lookupTask(scope provider.TaskScope, owner, idText string, read bool) (*task, *reply) {
	id, err := strconv.ParseInt(idText, 10, 64)
	if err != nil {
		return nil, badRequest(fmt.Sprintf("Invalid taskId %q", idText))
	}
	missing := notFound(fmt.Sprintf("The requested object (taskId = %d) does not exist", id))
	if read && s.trans404 > 0 {
		s.trans404--
		return nil, missing
	}
	t, found := s.tasks[id]
	if !found || t.purged || t.scope != scope || t.owner != owner {
		return nil, missing
	}
	return t, nil
}

func (s *Sim) sortedIPs() []*ipBlock {
	out := make([]*ipBlock, 0, len(s.ips))
	for _, b := range s.ips {
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool {
		if c := out[i].block.Addr().Compare(out[j].block.Addr()); c != 0 {
			return c < 0
		}
		return out[i].block.Bits() < out[j].block.Bits()
	})
	return out
}
