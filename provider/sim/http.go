package sim

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// maxBody bounds request bodies.
const maxBody = 1 << 20

// reply is a response built before it is written, so that a DropReply
// fault can process a request and then throw the reply away.
type reply struct {
	status int
	body   any    // JSON-encoded unless raw is set
	raw    []byte // written verbatim
	ctype  string
	header http.Header
}

func ok(v any) *reply { return &reply{status: http.StatusOK, body: v} }

// classErr is the business error shape {"class","message"}.
func classErr(status int, class, msg string) *reply {
	return &reply{status: status, body: map[string]any{"class": class, "message": msg}}
}

// codeErr is the authentication-layer error shape
// {"errorCode","httpCode","message"}.
func codeErr(status int, code, msg string) *reply {
	return &reply{status: status, body: map[string]any{
		"errorCode": code,
		"httpCode":  fmt.Sprintf("%d %s", status, http.StatusText(status)),
		"message":   msg,
	}}
}

func notFound(msg string) *reply { return classErr(http.StatusNotFound, "Client::NotFound", msg) }
func badRequest(msg string) *reply {
	return classErr(http.StatusBadRequest, "Client::BadRequest", msg)
}
func conflict(msg string) *reply { return classErr(http.StatusConflict, "Client::Conflict", msg) }

func invalidURL() *reply { return notFound("Got an invalid (or empty) URL") }

func methodNotAllowed(method string) *reply {
	return classErr(http.StatusMethodNotAllowed, "Client::MethodNotAllowed",
		fmt.Sprintf("Received not described method '%s' for path", method))
}

// request is what a route handler sees.
type request struct {
	method string
	seg    []string // unescaped path segments after the API base
	query  url.Values
	body   []byte
}

func (s *Sim) newQueryID() string {
	s.fmu.Lock()
	s.queries++
	n, x := s.queries, s.rnd.Uint32()
	s.fmu.Unlock()
	return fmt.Sprintf("SIM.ws-1.%08x.%d.%08x", s.started, n, x)
}

// CountersPath is the simulator's read-only debug endpoint: GET answers
// [Sim.Counters] as JSON. It is not part of the OVH API: it lives outside
// the API base, needs no signature and is not subject to faults.
const CountersPath = "/_sim/counters"

// ServeHTTP answers one API request. See the package documentation for the
// protocol.
func (s *Sim) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.EscapedPath() == CountersPath {
		s.serveCounters(w, r)
		return
	}
	start := time.Now()
	qid := s.newQueryID()
	w.Header().Set("X-Ovh-QueryID", qid)

	escaped := r.URL.EscapedPath()
	rel, base := "", false
	for _, b := range []string{"/1.0", "/v1"} {
		if escaped == b || strings.HasPrefix(escaped, b+"/") {
			rel, base = strings.TrimPrefix(escaped, b), true
			break
		}
	}

	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
	var rep *reply
	dropped := false
	f := s.matchFault(r.Method, escaped, rel)
	if f != nil && f.Delay > 0 {
		t := time.NewTimer(f.Delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	switch {
	case err != nil:
		rep = badRequest("Cannot read request body")
	case f != nil && f.Status != 0 && !f.DropReply:
		rep = faultReply(f.Status)
	case !base:
		rep = invalidURL()
	default:
		rep = s.handle(r, rel, body)
		dropped = f != nil && f.DropReply
	}

	ev := s.log.Debug().Str("method", r.Method).Str("path", escaped).Str("query_id", qid).
		Int("status", rep.status).Dur("took", time.Since(start))
	if dropped {
		ev.Bool("dropped", true)
	}
	ev.Msg("sim: request")
	if dropped {
		// Abort without writing anything: the client sees the connection
		// (or HTTP/2 stream) reset.
		panic(http.ErrAbortHandler)
	}
	s.write(w, rep)
}

// serveCounters answers the debug endpoint CountersPath.
func (s *Sim) serveCounters(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		s.write(w, methodNotAllowed(r.Method))
		return
	}
	s.write(w, ok(s.Counters()))
}

func (s *Sim) write(w http.ResponseWriter, rep *reply) {
	out := rep.raw
	if out == nil {
		var err error
		out, err = json.Marshal(rep.body)
		if err != nil {
			rep.status = http.StatusInternalServerError
			out = []byte(`{"class":"Server::InternalServerError","message":"Internal server error"}`)
		}
	}
	for k, vs := range rep.header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	ct := rep.ctype
	if ct == "" {
		ct = "application/json; charset=utf-8"
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Content-Length", strconv.Itoa(len(out)))
	w.WriteHeader(rep.status)
	_, _ = w.Write(out)
}

// handle authenticates and routes a request under the API base.
func (s *Sim) handle(r *http.Request, rel string, body []byte) *reply {
	var seg []string
	for _, p := range strings.Split(strings.Trim(rel, "/"), "/") {
		if p == "" {
			continue
		}
		u, err := url.PathUnescape(p)
		if err != nil {
			return invalidURL()
		}
		seg = append(seg, u)
	}
	req := &request{method: r.Method, seg: seg, query: r.URL.Query(), body: body}

	if len(seg) == 2 && seg[0] == "auth" && seg[1] == "time" {
		if r.Method != http.MethodGet {
			return methodNotAllowed(r.Method)
		}
		return ok(s.apiNow().Unix())
	}
	if rep := s.authenticate(r, rel, body); rep != nil {
		return rep
	}
	if len(seg) == 0 {
		return invalidURL()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advanceAll()
	switch seg[0] {
	case "dedicated":
		if len(seg) >= 2 && seg[1] == "server" {
			return s.dedicated(req, seg[2:])
		}
	case "ip":
		return s.ip(req, seg[1:])
	case "auth":
		if len(seg) == 2 && seg[1] == "currentCredential" && r.Method == http.MethodGet {
			return s.currentCredential(r)
		}
	}
	return invalidURL()
}

func (s *Sim) currentCredential(r *http.Request) *reply {
	c := s.creds[r.Header.Get("X-Ovh-Consumer")]
	rules := []map[string]string{}
	for _, rule := range c.rules {
		rules = append(rules, map[string]string{"method": rule.Method, "path": rule.Path})
	}
	if len(rules) == 0 {
		for _, m := range []string{"GET", "POST", "PUT", "DELETE"} {
			rules = append(rules, map[string]string{"method": m, "path": "/*"})
		}
	}
	return ok(map[string]any{
		"credentialId":  1,
		"applicationId": 1,
		"creation":      s.date(time.Unix(s.started, 0)),
		"expiration":    nil,
		"lastUse":       s.date(s.now()),
		"status":        "validated",
		"rules":         rules,
		"allowedIPs":    nil,
		"ovhSupport":    false,
	})
}

// date formats t as OVH does: RFC 3339 in Paris time.
func (s *Sim) date(t time.Time) string { return t.In(s.paris).Format(time.RFC3339) }

func (s *Sim) datePtr(t *time.Time) *string {
	if t == nil {
		return nil
	}
	d := s.date(*t)
	return &d
}

// decodeStrict decodes a JSON object body into v, refusing unknown fields.
func decodeStrict(body []byte, v any) error {
	d := json.NewDecoder(strings.NewReader(string(body)))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return fmt.Errorf("trailing data after JSON object")
	}
	return nil
}
