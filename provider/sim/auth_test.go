package sim

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestSignVectors(t *testing.T) {
	const as, ck = "9ufkBmLaTQ9nz5yMUlg79taH0GNnzDjk", "5mBuy6SUQcRw2ZUxg0cG68BoDKpED4KY"
	tests := []struct {
		secret, consumer, method, url, body string
		ts                                  int64
		want                                string
	}{
		{as, ck, "GET", "https://eu.api.ovh.com/1.0/auth", "", 1457018875, "$1$e9556054b6309771395efa467c22e627407461ad"},
		{as, ck, "POST", "https://eu.api.ovh.com/1.0/auth", `{"a":"b","c":"d"}`, 1457018875, "$1$ec2fb5c7a81f64723c77d2e5b609ae6f58a84fc1"},
		{"appSecret", "consKey", "PUT", "/path/to/api", "TEST DATA", 123456789, "$1$8336ecc5d03640b976e0b3ba005234a3046ab695"},
	}
	for _, tc := range tests {
		if got := Sign(tc.secret, tc.consumer, tc.method, tc.url, []byte(tc.body), tc.ts); got != tc.want {
			t.Errorf("Sign(%s %s %q) = %s, want %s", tc.method, tc.url, tc.body, got, tc.want)
		}
	}
}

func TestAuthTime(t *testing.T) {
	e := newEnv(t, Latency{})
	r := e.raw("GET", "/auth/time", nil, App{}, 0)
	if r.status != http.StatusOK || string(r.body) != "1740830400" {
		t.Fatalf("GET /auth/time = %d %s, want 200 1740830400", r.status, r.body)
	}
	e.sim.SetClockSkew(-time.Minute)
	r = e.raw("GET", "/auth/time", nil, App{}, 0)
	if string(r.body) != "1740830340" {
		t.Fatalf("GET /auth/time with skew -1m = %s, want 1740830340", r.body)
	}
}

func TestAuthRefusals(t *testing.T) {
	e := newEnv(t, Latency{})
	e.sim.mu.Lock()
	// A second consumer key of the same application, restricted to reads
	// of /ip, and a revoked one.
	e.sim.creds["ckRestricted"] = &credential{app: testApp.Key, rules: []Rule{{Method: "GET", Path: "/ip"}, {Method: "GET", Path: "/ip/*"}}}
	e.sim.creds["ckRevoked"] = &credential{app: testApp.Key}
	e.sim.mu.Unlock()
	e.sim.RevokeConsumer("ckRevoked")

	now := e.clock.Now().Unix()
	good := testApp
	wrongSecret := good
	wrongSecret.Secret = "not-the-secret"
	unknownKey := good
	unknownKey.Key = "unknownAK"
	unknownCK := good
	unknownCK.Consumer = "unknownCK"
	restricted := good
	restricted.Consumer = "ckRestricted"
	revoked := good
	revoked.Consumer = "ckRevoked"
	noCK := good
	noCK.Consumer = ""

	sigErr := map[string]any{"errorCode": "INVALID_SIGNATURE", "httpCode": "400 Bad Request", "message": "Invalid signature"}
	tests := []struct {
		name   string
		method string
		path   string
		app    App
		ts     int64
		tamper bool
		status int
		want   map[string]any // nil: do not check the body
	}{
		{"valid", "GET", "/dedicated/server", good, now, false, 200, nil},
		{"valid at edge of window", "GET", "/dedicated/server", good, now - 179, false, 200, nil},
		{"no application key", "GET", "/dedicated/server", App{}, now, false, 401,
			map[string]any{"class": "Client::Unauthorized", "message": "You must login first"}},
		{"no consumer key", "GET", "/dedicated/server", noCK, now, false, 401,
			map[string]any{"class": "Client::Unauthorized", "message": "You must login first"}},
		{"unknown application key", "GET", "/dedicated/server", unknownKey, now, false, 403,
			map[string]any{"errorCode": "INVALID_KEY", "httpCode": "403 Forbidden", "message": "Invalid application key"}},
		{"unknown consumer key", "GET", "/dedicated/server", unknownCK, now, false, 403,
			map[string]any{"errorCode": "INVALID_CREDENTIAL", "httpCode": "403 Forbidden", "message": "This credential is not valid"}},
		{"revoked consumer key", "GET", "/dedicated/server", revoked, now, false, 403,
			map[string]any{"errorCode": "INVALID_CREDENTIAL", "httpCode": "403 Forbidden", "message": "This credential is not valid"}},
		{"wrong secret", "GET", "/dedicated/server", wrongSecret, now, false, 400, sigErr},
		{"tampered body", "PUT", "/dedicated/server/" + srvA, good, now, true, 400, sigErr},
		{"timestamp too old", "GET", "/dedicated/server", good, now - 181, false, 400, sigErr},
		{"timestamp in the future", "GET", "/dedicated/server", good, now + 400, false, 400, sigErr},
		{"rule grants", "GET", "/ip/" + "10.200.0.100%2F32", restricted, now, false, 200, nil},
		{"rule misses", "GET", "/dedicated/server", restricted, now, false, 403,
			map[string]any{"errorCode": "NOT_GRANTED_CALL", "httpCode": "403 Forbidden", "message": "This call has not been granted"}},
	}
	seen := map[string]bool{}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body := []byte(nil)
			if tc.method == "PUT" {
				body = []byte(`{"monitoring":false}`)
			}
			r := e.rawTampered(tc.method, tc.path, body, tc.app, tc.ts, tc.tamper)
			if r.status != tc.status {
				t.Fatalf("status %d (%s), want %d", r.status, r.body, tc.status)
			}
			if tc.want != nil {
				if diff := cmp.Diff(tc.want, r.json(t)); diff != "" {
					t.Errorf("body (-want +got):\n%s", diff)
				}
			}
			qid := r.header.Get("X-Ovh-QueryID")
			if qid == "" || seen[qid] {
				t.Errorf("query id %q missing or reused", qid)
			}
			seen[qid] = true
		})
	}
	// The tampered PUT must not have been applied.
	if srv, _ := e.sim.Server(srvA); !srv.Monitoring {
		t.Errorf("a refused PUT changed the server")
	}
}

// rawTampered signs body but sends body with one byte changed when tamper
// is set.
func (e *env) rawTampered(method, path string, body []byte, app App, ts int64, tamper bool) resp {
	e.t.Helper()
	if !tamper {
		return e.raw(method, path, body, app, ts)
	}
	url := e.srv.URL + "/1.0" + path
	sig := Sign(app.Secret, app.Consumer, method, url, body, ts)
	sent := []byte(`{"monitoring":true}`)
	return e.rawSig(method, path, sent, app, ts, sig)
}

func (e *env) rawSig(method, path string, body []byte, app App, ts int64, sig string) resp {
	e.t.Helper()
	req, err := http.NewRequestWithContext(e.t.Context(), method, e.srv.URL+"/1.0"+path, bytesReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("X-Ovh-Application", app.Key)
	req.Header.Set("X-Ovh-Consumer", app.Consumer)
	req.Header.Set("X-Ovh-Timestamp", itoa(ts))
	req.Header.Set("X-Ovh-Signature", sig)
	r, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer r.Body.Close()
	var b json.RawMessage
	_ = json.NewDecoder(r.Body).Decode(&b)
	return resp{status: r.StatusCode, body: b, header: r.Header}
}

func TestSignatureUsesRawURI(t *testing.T) {
	e := newEnv(t, Latency{})
	// The block is sent escaped; the client signs the escaped form.
	r := e.call("GET", "/ip/10.200.0.100%2F32", nil)
	if r.status != 200 {
		t.Fatalf("GET escaped ip: %d %s", r.status, r.body)
	}
	// A signature over the decoded form does not match what was sent.
	now := e.clock.Now().Unix()
	decoded := e.srv.URL + "/1.0/ip/10.200.0.100/32"
	r = e.rawSig("GET", "/ip/10.200.0.100%2F32", nil, testApp, now, Sign(testApp.Secret, testApp.Consumer, "GET", decoded, nil, now))
	if r.status != 400 {
		t.Fatalf("signature over decoded URL accepted: %d %s", r.status, r.body)
	}
	// The query string is part of the signed URL.
	r = e.call("GET", "/ip?routedTo.serviceName="+srvA+"&type=failover", nil)
	if r.status != 200 || string(r.body) != `["10.200.0.100/32"]` {
		t.Fatalf("GET /ip filtered = %d %s", r.status, r.body)
	}
}
