package sim

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

const (
	srvA  = "ns1.ip-10-200-0-11.eu"
	srvB  = "ns2.ip-10-200-0-12.eu"
	fipA  = "10.200.0.100/32"
	fipB  = "10.200.0.101/32"
	bootH = int64(1)
	bootR = int64(46371)
	bootD = int64(230242)
)

var testApp = App{Key: "appKeyAAAAAAAAAA", Secret: "appSecretSSSSSSSSSSSSSSSSSSSSSSS", Consumer: "consumerCCCCCCCCCCCCCCCCCCCCCCCC"}

// fakeClock is a manually advanced clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func testConfig(t *testing.T) Config {
	return Config{
		Apps: []App{testApp},
		Servers: []ServerConfig{
			{Name: srvA, IP: "10.200.0.11", Datacenter: "gra3"},
			{Name: srvB, IP: "10.200.0.12", Datacenter: "rbx8"},
		},
		IPs: []IPConfig{
			{Block: fipA, RoutedTo: srvA},
			{Block: "10.200.0.101", RoutedTo: ""},
		},
		Seed: 1,
		Log:  zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel),
	}
}

type env struct {
	t     *testing.T
	sim   *Sim
	srv   *httptest.Server
	clock *fakeClock
	app   App
	// now gives the client-side timestamp; defaults to the sim clock.
	now func() time.Time
}

// newEnv starts a simulator on a fake clock with the given latencies.
func newEnv(t *testing.T, lat Latency) *env {
	t.Helper()
	cfg := testConfig(t)
	cfg.Latency = lat
	clock := &fakeClock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
	cfg.Clock = clock.Now
	s := New(cfg)
	srv := httptest.NewServer(s)
	t.Cleanup(func() { srv.Close(); s.Close() })
	return &env{t: t, sim: s, srv: srv, clock: clock, app: testApp, now: clock.Now}
}

type resp struct {
	status int
	body   []byte
	header http.Header
}

func (r resp) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
	return m
}

// call sends a request signed with e.app; path is relative to /1.0 and
// already escaped.
func (e *env) call(method, path string, body any) resp {
	e.t.Helper()
	var raw []byte
	if body != nil {
		var err error
		if raw, err = json.Marshal(body); err != nil {
			e.t.Fatal(err)
		}
	}
	return e.raw(method, path, raw, e.app, e.now().Unix())
}

func (e *env) raw(method, path string, raw []byte, app App, ts int64) resp {
	e.t.Helper()
	url := e.srv.URL + "/1.0" + path
	req, err := http.NewRequestWithContext(e.t.Context(), method, url, bytes.NewReader(raw))
	if err != nil {
		e.t.Fatal(err)
	}
	if app.Key != "" {
		req.Header.Set("X-Ovh-Application", app.Key)
	}
	if app.Consumer != "" {
		req.Header.Set("X-Ovh-Consumer", app.Consumer)
		req.Header.Set("X-Ovh-Timestamp", strconv.FormatInt(ts, 10))
		req.Header.Set("X-Ovh-Signature", Sign(app.Secret, app.Consumer, method, url, raw, ts))
	}
	if raw != nil {
		req.Header.Set("Content-Type", "application/json;charset=utf-8")
	}
	r, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer r.Body.Close()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp{status: r.StatusCode, body: b, header: r.Header}
}

// must calls and fails the test unless the status is 200.
func (e *env) must(method, path string, body any) resp {
	e.t.Helper()
	r := e.call(method, path, body)
	if r.status != http.StatusOK {
		e.t.Fatalf("%s %s: status %d: %s", method, path, r.status, r.body)
	}
	return r
}

// taskStatus reads a task's status by id.
func (e *env) taskStatus(path string) string {
	e.t.Helper()
	return e.must("GET", path, nil).json(e.t)["status"].(string)
}

func taskID(t *testing.T, r resp) int64 {
	t.Helper()
	var v struct {
		TaskID int64 `json:"taskId"`
	}
	if err := json.Unmarshal(r.body, &v); err != nil || v.TaskID == 0 {
		t.Fatalf("no taskId in %s (%v)", r.body, err)
	}
	return v.TaskID
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
