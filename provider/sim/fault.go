package sim

import (
	"net/http"
	"strings"
	"time"
)

// Fault makes matching requests misbehave. A request matches when Method
// (empty: any) equals its method and PathPrefix (empty: any) prefixes its
// path relative to the API base ("/dedicated/server", "/ip/"; a prefix
// starting with "/1.0" is matched against the full path instead).
type Fault struct {
	Method     string
	PathPrefix string
	// Status, when not 0, answers the request with this HTTP status and an
	// error body without processing it (see doc.go for the bodies).
	Status int
	// Count limits how many matching requests are affected; 0 means until
	// the fault is removed.
	Count int
	// Rate, when not 0, affects each matching request with this
	// probability (from the Config.Seed random source).
	Rate float64
	// DropReply processes the request fully, then drops the connection
	// without a reply: the client cannot know the outcome. It wins over
	// Status.
	DropReply bool
	// Delay holds the request (real time) before processing.
	Delay time.Duration
}

type faultState struct {
	f    Fault
	used int
}

// AddFault installs f and returns a function that removes it. Faults are
// checked in the order they were added; the first one that affects a
// request is the one applied.
func (s *Sim) AddFault(f Fault) (remove func()) {
	fs := &faultState{f: f}
	s.fmu.Lock()
	s.faults = append(s.faults, fs)
	s.fmu.Unlock()
	return func() {
		s.fmu.Lock()
		defer s.fmu.Unlock()
		for i, x := range s.faults {
			if x == fs {
				s.faults = append(s.faults[:i], s.faults[i+1:]...)
				return
			}
		}
	}
}

// matchFault returns the fault applied to a request, or nil.
func (s *Sim) matchFault(method, fullPath, rel string) *Fault {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	for _, fs := range s.faults {
		f := fs.f
		if f.Method != "" && !strings.EqualFold(f.Method, method) {
			continue
		}
		if f.PathPrefix != "" {
			p := rel
			if strings.HasPrefix(f.PathPrefix, "/1.0") || strings.HasPrefix(f.PathPrefix, "/v1") {
				p = fullPath
			}
			if !strings.HasPrefix(p, f.PathPrefix) {
				continue
			}
		}
		if f.Count > 0 && fs.used >= f.Count {
			continue
		}
		if f.Rate > 0 && s.rnd.Float64() >= f.Rate {
			continue
		}
		fs.used++
		return &f
	}
	return nil
}

// faultReply is the reply of a fault with a Status.
func faultReply(status int) *reply {
	switch status {
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		// Gateways answer these with an HTML page, not JSON.
		body := "<html><body><h1>" + http.StatusText(status) + "</h1></body></html>\n"
		return &reply{status: status, raw: []byte(body), ctype: "text/html"}
	case http.StatusTooManyRequests:
		r := classErr(status, "Client::TooManyRequests", "Too many requests")
		r.header = http.Header{"Retry-After": {"1"}}
		return r
	case http.StatusNotFound:
		return classErr(status, "Client::NotFound", "The requested object does not exist")
	case http.StatusConflict:
		return classErr(status, "Client::Conflict", "Conflict")
	case http.StatusBadRequest:
		return classErr(status, "Client::BadRequest", "Bad request")
	case http.StatusForbidden:
		return classErr(status, "Client::Forbidden", "Forbidden")
	}
	if status >= 500 {
		return classErr(status, "Server::InternalServerError", "Internal server error")
	}
	return classErr(status, "Client::Error", http.StatusText(status))
}
