package ovh_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/takeover-dev/takeover/provider"
	"github.com/takeover-dev/takeover/provider/ovh"
	"github.com/takeover-dev/takeover/provider/providertest"
	"github.com/takeover-dev/takeover/provider/sim"
)

const (
	appKey    = "takeover-test-ak"
	appSecret = "AS-s3cr3t-do-not-log-9f2c"
	consumer  = "CK-s3cr3t-do-not-log-71ab"
	primary   = "ns1.ip-10-200-0-11.eu"
	spare     = "ns2.ip-10-200-0-12.eu"
)

var fip = netip.MustParsePrefix("10.200.0.100/32")

// fipPath is the escaped API path of fip, as faults match it.
const fipPath = "/ip/10.200.0.100%2F32"

// wait polls fast: the simulated tasks take tens of milliseconds.
var wait = provider.WaitOptions{Initial: 5 * time.Millisecond, Min: 5 * time.Millisecond, Max: 20 * time.Millisecond,
	Deadline: 20 * time.Second, Transient404: 2 * time.Second}

// syncBuffer collects log output written from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// world is a simulator behind a real HTTP server and a client of it.
type world struct {
	sim    *sim.Sim
	client *ovh.Client
	log    *syncBuffer
	// statuses counts replies by method and status ("GET 503").
	mu       sync.Mutex
	statuses map[string]int
	posts    atomic.Int64
	// onRequest, if set, sees every request before the simulator does.
	onRequest func(*http.Request)
	// reply, if set, may replace the body of the simulator's reply to a
	// request (process: let the simulator act on it first).
	reply func(*http.Request) (body string, process, ok bool)
}

func (w *world) setReply(f func(*http.Request) (body string, process, ok bool)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.reply = f
}

func (w *world) setOnRequest(f func(*http.Request)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.onRequest = f
}

// stepClock is a simulator clock that moves only when told to, so that
// what a client observes depends on its requests, not on scheduling.
type stepClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *stepClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func (w *world) status(key string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.statuses[key]
}

func newWorld(t testing.TB, edit func(*sim.Config, *ovh.Config)) *world {
	t.Helper()
	scfg := sim.Config{
		Apps: []sim.App{{Key: appKey, Secret: appSecret, Consumer: consumer}},
		Servers: []sim.ServerConfig{
			{Name: primary, IP: "10.200.0.11"},
			{Name: spare, IP: "10.200.0.12"},
		},
		IPs:     []sim.IPConfig{{Block: fip.String(), RoutedTo: primary}},
		Latency: sim.Latency{TaskStart: 100 * time.Millisecond, RebootDoing: 50 * time.Millisecond, MoveDoing: 50 * time.Millisecond},
		Seed:    1,
		Log:     zerolog.Nop(),
	}
	buf := &syncBuffer{}
	ccfg := ovh.Config{
		AppKey: appKey, AppSecret: appSecret, ConsumerKey: consumer,
		Timeout: 10 * time.Second,
		Retry:   ovh.RetryConfig{Max: 10, WaitMin: time.Millisecond, WaitMax: 5 * time.Millisecond},
		Poll:    ovh.PollConfig{Tries: 5, Interval: 20 * time.Millisecond},
		Log:     zerolog.New(buf).Level(zerolog.TraceLevel),
	}
	if edit != nil {
		edit(&scfg, &ccfg)
	}
	w := &world{sim: sim.New(scfg), log: buf, statuses: map[string]int{}}
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			w.posts.Add(1)
		}
		w.mu.Lock()
		f, reply := w.onRequest, w.reply
		w.mu.Unlock()
		if f != nil {
			f(r)
		}
		if reply != nil {
			if body, process, ok := reply(r); ok {
				code := http.StatusOK
				if process {
					sr := httptest.NewRecorder()
					w.sim.ServeHTTP(sr, r)
					code = sr.Code
					maps.Copy(rw.Header(), sr.Header())
					rw.Header().Del("Content-Length")
				}
				rw.WriteHeader(code)
				_, _ = io.WriteString(rw, body)
				w.mu.Lock()
				w.statuses[r.Method+" "+strconv.Itoa(code)]++
				w.mu.Unlock()
				return
			}
		}
		rec := &hijackRecorder{ResponseWriter: rw, code: http.StatusOK}
		w.sim.ServeHTTP(rec, r)
		w.mu.Lock()
		w.statuses[r.Method+" "+strconv.Itoa(rec.code)]++
		w.mu.Unlock()
	}))
	t.Cleanup(func() {
		srv.Close()
		w.sim.Close()
		if t.Failed() {
			t.Logf("client log:\n%s", buf)
		}
	})
	ccfg.Endpoint = srv.URL + "/1.0"
	c, err := ovh.New(ccfg)
	if err != nil {
		t.Fatalf("ovh.New: %v", err)
	}
	w.client = c
	return w
}

// hijackRecorder records the status and still lets the simulator hijack the
// connection to drop a reply.
type hijackRecorder struct {
	http.ResponseWriter
	code int
}

func (r *hijackRecorder) WriteHeader(code int)        { r.code = code; r.ResponseWriter.WriteHeader(code) }
func (r *hijackRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func harness(edit func(*sim.Config, *ovh.Config), setup func(*world), check func(*testing.T, *world)) providertest.Harness {
	return providertest.Harness{
		Primary: primary, Spare: spare, IP: fip,
		RescueKernel: "rescue12-customer",
		Wait:         wait,
		New: func(t *testing.T) providertest.World {
			w := newWorld(t, edit)
			if setup != nil {
				setup(w)
			}
			if check != nil {
				t.Cleanup(func() { check(t, w) })
			}
			return providertest.World{
				Provider: w.client,
				Reboots:  func(id provider.ServerID) int { return w.sim.Counters().Reboots[string(id)] },
				Moves:    func(ip netip.Prefix) int { return w.sim.Counters().Moves[ip.String()] },
				Booted:   func(id provider.ServerID) (provider.Boot, bool) { return w.sim.Booted(string(id)) },
			}
		},
	}
}

func TestConformance(t *testing.T) {
	providertest.Run(t, harness(nil, nil, nil))
}

// TestConformanceGetFaults: 30% of GETs fail with 503 and the client still
// passes the suite; POSTs are not affected by the fault.
func TestConformanceGetFaults(t *testing.T) {
	var faulted atomic.Int64
	providertest.Run(t, harness(nil,
		func(w *world) {
			w.sim.AddFault(sim.Fault{Method: "GET", Status: http.StatusServiceUnavailable, Rate: 0.3})
		},
		func(t *testing.T, w *world) { faulted.Add(int64(w.status("GET 503"))) }))
	if faulted.Load() == 0 {
		t.Errorf("no GET was answered 503: the fault did not bite")
	}
	t.Logf("GETs answered 503 and retried: %d", faulted.Load())
}

func TestSecretsNotInErrors(t *testing.T) {
	w := newWorld(t, nil)
	_, err := w.client.Server(t.Context(), "ns0.unknown.invalid")
	if err == nil {
		t.Fatal("Server(unknown) = nil error")
	}
	for _, s := range []string{appSecret, consumer} {
		if strings.Contains(err.Error(), s) {
			t.Errorf("error %q holds a secret", err)
		}
	}
}

func mustContain(t *testing.T, what string, err error, subs ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: nil error", what)
	}
	for _, s := range subs {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("%s: error %q does not contain %q", what, err, s)
		}
	}
}

var queryIDPrefix = "SIM.ws-1."

func TestRebootLostReply(t *testing.T) {
	w := newWorld(t, func(c *sim.Config, _ *ovh.Config) { c.Latency.ListLag = 30 * time.Millisecond })
	w.sim.AddFault(sim.Fault{Method: "POST", PathPrefix: "/dedicated/server/" + primary + "/reboot", DropReply: true, Count: 1})
	ref, err := w.client.Reboot(t.Context(), primary)
	if err != nil {
		t.Fatalf("Reboot with a lost reply: %v", err)
	}
	if n := w.sim.Counters().Reboots[primary]; n != 1 {
		t.Errorf("simulator accepted %d reboots, want exactly 1", n)
	}
	if n := w.posts.Load(); n != 1 {
		t.Errorf("client sent %d POSTs, want exactly 1", n)
	}
	st, ok := w.sim.Task(ref)
	if !ok || st.Function != "hardReboot" {
		t.Fatalf("adopted %v, which the simulator knows as %+v (%v)", ref, st, ok)
	}
	if _, err := provider.WaitTask(t.Context(), w.client, ref, wait); err != nil {
		t.Fatalf("WaitTask: %v", err)
	}
	if !strings.Contains(w.log.String(), "adopted") {
		t.Errorf("adopting a task was not logged")
	}
}

// TestMoveIPLostReply: the reply to the move is lost; the client finds the
// task it created in the task list and adopts it, without resending.
//
// The simulator's clock advances 10ms per GET and at no other time, so the
// outcome depends only on the client's requests: the new task is missing
// from the list at the first look (ListLag 30ms) and shows up at a later
// one, while the move itself needs an hour of simulated time, so the route
// cannot change while the client looks and the decision cannot be taken
// from the route (TestMoveIPLostReplyRouted covers that branch). With real
// time and a 150ms move, a slow scheduler let the move finish first.
func TestMoveIPLostReply(t *testing.T) {
	clk := &stepClock{now: time.Now()}
	w := newWorld(t, func(c *sim.Config, _ *ovh.Config) {
		c.Clock = clk.Now
		c.Latency = sim.Latency{TaskStart: 100 * time.Millisecond, MoveDoing: time.Hour, ListLag: 30 * time.Millisecond}
		c.SignatureWindow = 24 * time.Hour // the clock jumps an hour ahead below
	})
	var gets, getsAtPost atomic.Int64
	w.setOnRequest(func(r *http.Request) {
		switch r.Method {
		case http.MethodGet:
			gets.Add(1)
			clk.Advance(10 * time.Millisecond)
		case http.MethodPost:
			getsAtPost.Store(gets.Load())
		}
	})
	w.sim.AddFault(sim.Fault{Method: "POST", PathPrefix: fipPath + "/move", DropReply: true, Count: 1})
	ref, err := w.client.MoveIP(t.Context(), fip, spare)
	if err != nil {
		t.Fatalf("MoveIP with a lost reply: %v", err)
	}
	if n := w.sim.Counters().Moves[fip.String()]; n != 1 {
		t.Errorf("simulator accepted %d moves, want exactly 1", n)
	}
	if n := w.posts.Load(); n != 1 {
		t.Errorf("client sent %d POSTs, want exactly 1", n)
	}
	if ref.Scope != provider.ScopeIP || ref.Owner != fip.String() || ref.ID == 0 {
		t.Fatalf("adopted %+v, want an IP task of %s", ref, fip)
	}
	if !strings.Contains(w.log.String(), "adopted") {
		t.Errorf("adopting the task was not logged")
	}
	// A list (hidden by the lag), the route, then the list that shows it.
	if n := gets.Load() - getsAtPost.Load(); n < 3 {
		t.Errorf("the client adopted the task after %d GETs; the first list should not have shown it", n)
	}
	if got := w.sim.Route(fip.String()); got != primary {
		t.Fatalf("route while the move runs = %q, want still %q", got, primary)
	}
	clk.Advance(2 * time.Hour) // the move finishes
	if _, err := provider.WaitTask(t.Context(), w.client, ref, wait); err != nil {
		t.Fatalf("WaitTask: %v", err)
	}
	if got := w.sim.Route(fip.String()); got != spare {
		t.Errorf("route after move = %q, want %q", got, spare)
	}
	if n := w.sim.Counters().Moves[fip.String()]; n != 1 {
		t.Errorf("simulator accepted %d moves in all, want 1", n)
	}
}

func TestPostNotRetried(t *testing.T) {
	for _, status := range []int{http.StatusInternalServerError, http.StatusServiceUnavailable, http.StatusTooManyRequests} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			w := newWorld(t, nil)
			w.sim.AddFault(sim.Fault{Method: "POST", Status: status, Count: 1})
			_, err := w.client.Reboot(t.Context(), primary)
			if n := w.posts.Load(); n != 1 {
				t.Errorf("client sent %d POSTs, want 1", n)
			}
			if n := w.sim.Counters().Reboots[primary]; n != 0 {
				t.Errorf("simulator accepted %d reboots, want 0", n)
			}
			mustContain(t, "Reboot", err, primary)
			var ra *provider.RetryAfterError
			if status == http.StatusTooManyRequests {
				if !errors.As(err, &ra) || ra.After != time.Second {
					t.Errorf("Reboot error = %v, want a RetryAfterError of 1s", err)
				}
				return
			}
			// 5xx: the outcome is unknown until the task list shows no new
			// task; it then stays unknown (the request might still run).
			if !errors.Is(err, provider.ErrUnknownOutcome) {
				t.Errorf("Reboot error = %v, want ErrUnknownOutcome", err)
			}
			mustContain(t, "Reboot", err, queryIDPrefix)
		})
	}
}

func TestTaskOvhError(t *testing.T) {
	w := newWorld(t, nil)
	w.sim.FailNextTask("hardReboot", provider.TaskOvhError)
	ref, err := w.client.Reboot(t.Context(), primary)
	if err != nil {
		t.Fatalf("Reboot: %v", err)
	}
	task, err := provider.WaitTask(t.Context(), w.client, ref, wait)
	if !errors.Is(err, provider.ErrTaskFailed) || task.Status != provider.TaskOvhError {
		t.Fatalf("WaitTask = %+v, %v; want ovhError and ErrTaskFailed", task, err)
	}
	mustContain(t, "WaitTask", err, primary, fmt.Sprintf("task %d", ref.ID), "ovhError", "hardReboot", queryIDPrefix)
}

func TestTaskPurged(t *testing.T) {
	w := newWorld(t, nil)
	ref, err := w.client.Reboot(t.Context(), primary)
	if err != nil {
		t.Fatalf("Reboot: %v", err)
	}
	if _, err := provider.WaitTask(t.Context(), w.client, ref, wait); err != nil {
		t.Fatalf("WaitTask: %v", err)
	}
	w.sim.PurgeTask(ref.Scope, ref.Owner, ref.ID)

	_, err = w.client.Task(t.Context(), ref)
	if !errors.Is(err, provider.ErrNotFound) {
		t.Fatalf("Task after purge: %v, want ErrNotFound", err)
	}
	mustContain(t, "Task after purge", err, primary, fmt.Sprintf("task %d", ref.ID), queryIDPrefix)

	opts := wait
	opts.Transient404 = 30 * time.Millisecond
	_, err = provider.WaitTask(t.Context(), w.client, ref, opts)
	if !errors.Is(err, provider.ErrNotFound) {
		t.Fatalf("WaitTask after purge: %v, want ErrNotFound", err)
	}
	mustContain(t, "WaitTask after purge", err, primary, fmt.Sprintf("task %d", ref.ID), queryIDPrefix)

	// Resolved by state: the server runs the netboot that was set.
	opts.Resolve = func(ctx context.Context) (bool, error) {
		b, ok := w.sim.Booted(primary)
		return ok && b.ID == 1, nil
	}
	task, err := provider.WaitTask(t.Context(), w.client, ref, opts)
	if err != nil || task.Status != provider.TaskDone {
		t.Fatalf("WaitTask with Resolve = %+v, %v; want done", task, err)
	}
}

func TestRebootBusy(t *testing.T) {
	w := newWorld(t, nil)
	first, err := w.client.Reboot(t.Context(), primary)
	if err != nil {
		t.Fatalf("Reboot: %v", err)
	}
	_, err = w.client.Reboot(t.Context(), primary)
	if !errors.Is(err, provider.ErrBusy) {
		t.Fatalf("second Reboot: %v, want ErrBusy", err)
	}
	mustContain(t, "second Reboot", err, primary, fmt.Sprintf("task %d", first.ID), queryIDPrefix)

	ref, err := w.client.MoveIP(t.Context(), fip, spare)
	if err != nil {
		t.Fatalf("MoveIP: %v", err)
	}
	_, err = w.client.MoveIP(t.Context(), fip, spare)
	if !errors.Is(err, provider.ErrBusy) {
		t.Fatalf("second MoveIP: %v, want ErrBusy", err)
	}
	mustContain(t, "second MoveIP", err, fip.String(), spare, fmt.Sprintf("task %d", ref.ID), queryIDPrefix)
}

func TestTransientTask404(t *testing.T) {
	w := newWorld(t, nil)
	ref, err := w.client.Reboot(t.Context(), primary)
	if err != nil {
		t.Fatalf("Reboot: %v", err)
	}
	w.sim.TransientTask404(3)
	if _, err := provider.WaitTask(t.Context(), w.client, ref, wait); err != nil {
		t.Fatalf("WaitTask through transient 404s: %v", err)
	}
}

func TestErrorMapping(t *testing.T) {
	for _, tc := range []struct {
		status int
		want   error
	}{
		{http.StatusBadRequest, provider.ErrPermanent},
		{http.StatusUnauthorized, provider.ErrAuth},
		{http.StatusForbidden, provider.ErrAuth},
		{http.StatusNotFound, provider.ErrNotFound},
		{http.StatusConflict, provider.ErrBusy},
	} {
		t.Run(strconv.Itoa(tc.status), func(t *testing.T) {
			w := newWorld(t, nil)
			w.sim.AddFault(sim.Fault{Method: "GET", PathPrefix: "/dedicated/server/" + primary, Status: tc.status})
			_, err := w.client.Server(t.Context(), primary)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Server: %v, want %v", err, tc.want)
			}
			mustContain(t, "Server", err, "read server "+primary, queryIDPrefix)
		})
	}
	t.Run("429", func(t *testing.T) {
		w := newWorld(t, func(_ *sim.Config, c *ovh.Config) { c.Retry.Max = 1 })
		w.sim.AddFault(sim.Fault{Method: "GET", PathPrefix: "/dedicated/server/" + primary, Status: http.StatusTooManyRequests})
		_, err := w.client.Server(t.Context(), primary)
		var ra *provider.RetryAfterError
		if !errors.As(err, &ra) || ra.After != time.Second {
			t.Fatalf("Server: %v, want RetryAfterError of 1s", err)
		}
		if n := w.status("GET 429"); n != 2 {
			t.Errorf("GET answered 429 %d times, want 2 (1 retry)", n)
		}
	})
	t.Run("wrong secret", func(t *testing.T) {
		w := newWorld(t, func(_ *sim.Config, c *ovh.Config) { c.AppSecret = "wrong" })
		_, err := w.client.Server(t.Context(), primary)
		if !errors.Is(err, provider.ErrAuth) {
			t.Fatalf("Server with a wrong secret: %v, want ErrAuth", err)
		}
	})
}

func TestClockSkewRecovers(t *testing.T) {
	w := newWorld(t, nil)
	if _, err := w.client.Server(t.Context(), primary); err != nil {
		t.Fatalf("Server: %v", err)
	}
	w.sim.SetClockSkew(time.Hour)
	if _, err := w.client.Server(t.Context(), primary); err != nil {
		t.Fatalf("Server after the API clock jumped: %v", err)
	}
}

// TestSecretsNotLogged logs every request at trace level, headers included,
// and checks that neither the application secret, the consumer key nor a
// signature made from them shows.
func TestSecretsNotLogged(t *testing.T) {
	w := newWorld(t, nil)
	ctx := t.Context()
	w.sim.AddFault(sim.Fault{Method: "GET", Status: http.StatusServiceUnavailable, Count: 2})
	if _, err := w.client.Server(ctx, primary); err != nil {
		t.Fatalf("Server: %v", err)
	}
	ref, err := w.client.Reboot(ctx, primary)
	if err != nil {
		t.Fatalf("Reboot: %v", err)
	}
	if _, err := provider.WaitTask(ctx, w.client, ref, wait); err != nil {
		t.Fatalf("WaitTask: %v", err)
	}
	_, _ = w.client.Server(ctx, "ns0.unknown.invalid")
	logs := w.log.String()
	for _, want := range []string{"REDACTED", "retrying request", "/reboot"} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q: the test does not see what it should", want)
		}
	}
	for _, secret := range []string{appSecret, consumer, "$1$"} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs hold secret material %q", secret)
		}
	}
}

func TestNewBadEndpoint(t *testing.T) {
	_, err := ovh.New(ovh.Config{Endpoint: "http://127.0.0.1:1/1.0/", AppKey: appKey, AppSecret: appSecret, ConsumerKey: consumer})
	if err == nil {
		t.Fatal("New with a trailing slash endpoint: nil error")
	}
}

func BenchmarkServerRoundTrip(b *testing.B) {
	w := newWorld(b, nil)
	ctx := context.Background()
	for b.Loop() {
		if _, err := w.client.Server(ctx, primary); err != nil {
			b.Fatal(err)
		}
	}
}

// TestConcurrentCalls: the client is safe for concurrent use (run with
// -race).
func TestConcurrentCalls(t *testing.T) {
	w := newWorld(t, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 8 {
		wg.Go(func() {
			if _, err := w.client.Server(t.Context(), primary); err != nil {
				errs <- err
			}
			if _, err := w.client.RouteOf(t.Context(), fip); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestPostTimeout: a POST that times out is not resent; with no new task to
// adopt its outcome stays unknown.
func TestPostTimeout(t *testing.T) {
	w := newWorld(t, func(_ *sim.Config, c *ovh.Config) { c.Timeout = 100 * time.Millisecond })
	w.sim.AddFault(sim.Fault{Method: "POST", Delay: 2 * time.Second, Count: 1})
	_, err := w.client.Reboot(t.Context(), primary)
	if !errors.Is(err, provider.ErrUnknownOutcome) {
		t.Fatalf("Reboot: %v, want ErrUnknownOutcome", err)
	}
	mustContain(t, "Reboot", err, "reboot "+primary)
	if n := w.posts.Load(); n != 1 {
		t.Errorf("client sent %d POSTs, want 1", n)
	}
}

// TestCancelledBeforePost: a cancelled context stops the call before
// anything is sent, so the outcome is known (nothing happened).
func TestCancelledBeforePost(t *testing.T) {
	w := newWorld(t, nil)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := w.client.Reboot(ctx, primary)
	if !errors.Is(err, context.Canceled) || errors.Is(err, provider.ErrUnknownOutcome) {
		t.Fatalf("Reboot with a cancelled ctx: %v, want context.Canceled and no unknown outcome", err)
	}
	if n := w.posts.Load(); n != 0 {
		t.Errorf("client sent %d POSTs, want 0", n)
	}
}

// TestMoveIPLostReplyRouted: the reply is lost and the new task does not
// show in the (lagging) task list, but the route shows the move took
// effect: MoveIP reports it done, without a task and without resending.
func TestMoveIPLostReplyRouted(t *testing.T) {
	w := newWorld(t, func(c *sim.Config, _ *ovh.Config) { c.Latency = sim.Latency{ListLag: time.Hour} })
	w.sim.AddFault(sim.Fault{Method: "POST", PathPrefix: fipPath + "/move", DropReply: true, Count: 1})
	ref, err := w.client.MoveIP(t.Context(), fip, spare)
	if err != nil || ref != (provider.TaskRef{}) {
		t.Fatalf("MoveIP = %+v, %v; want zero ref and nil (done by route)", ref, err)
	}
	if n := w.sim.Counters().Moves[fip.String()]; n != 1 {
		t.Errorf("simulator accepted %d moves, want 1", n)
	}
	if got := w.sim.Route(fip.String()); got != spare {
		t.Errorf("route = %q, want %q", got, spare)
	}
	if !strings.Contains(w.log.String(), "already took effect") {
		t.Errorf("the route-based decision was not logged")
	}
}

// noTaskBodies are 2xx reply bodies to a task-creating POST that name no
// task.
var noTaskBodies = map[string]string{"empty": "", "null": "null", "object": "{}"}

// replyWithoutTask makes the simulator act on POSTs under prefix, then
// replaces its reply with body; process=false answers without acting.
func replyWithoutTask(prefix, body string, process bool) func(*http.Request) (string, bool, bool) {
	return func(r *http.Request) (string, bool, bool) {
		if r.Method != http.MethodPost || !strings.HasPrefix(r.URL.EscapedPath(), "/1.0"+prefix) {
			return "", false, false
		}
		return body, process, true
	}
}

// TestRebootNoTaskID: the API accepts the reboot but its 2xx reply names no
// task; the client does not take that for "nothing to do" but adopts the
// task the call created, without resending.
func TestRebootNoTaskID(t *testing.T) {
	for name, body := range noTaskBodies {
		t.Run(name, func(t *testing.T) {
			w := newWorld(t, func(c *sim.Config, _ *ovh.Config) { c.Latency.ListLag = 30 * time.Millisecond })
			w.setReply(replyWithoutTask("/dedicated/server/"+primary+"/reboot", body, true))
			ref, err := w.client.Reboot(t.Context(), primary)
			if err != nil {
				t.Fatalf("Reboot answered without a task id: %v", err)
			}
			if ref.ID == 0 {
				t.Fatalf("Reboot = %+v, want the task the call created", ref)
			}
			if st, ok := w.sim.Task(ref); !ok || st.Function != ovh.FuncHardReboot {
				t.Fatalf("adopted %v, which the simulator knows as %+v (%v)", ref, st, ok)
			}
			if n := w.posts.Load(); n != 1 {
				t.Errorf("client sent %d POSTs, want exactly 1", n)
			}
			if !strings.Contains(w.log.String(), "adopted") {
				t.Errorf("adopting a task was not logged")
			}
		})
	}
}

// TestRebootNoTaskIDNoEffect: a 2xx naming no task, and no new task shows:
// the outcome is unknown, and the error says how long the client looked.
func TestRebootNoTaskIDNoEffect(t *testing.T) {
	w := newWorld(t, func(_ *sim.Config, c *ovh.Config) { c.Poll = ovh.PollConfig{Tries: 3, Interval: 10 * time.Millisecond} })
	w.setReply(replyWithoutTask("/dedicated/server/"+primary+"/reboot", "{}", false))
	ref, err := w.client.Reboot(t.Context(), primary)
	if !errors.Is(err, provider.ErrUnknownOutcome) {
		t.Fatalf("Reboot = %+v, %v; want ErrUnknownOutcome", ref, err)
	}
	mustContain(t, "Reboot", err, "reboot "+primary, "names no task", "observed the hardReboot task list for", "3 looks")
	if n := w.posts.Load(); n != 1 {
		t.Errorf("client sent %d POSTs, want exactly 1", n)
	}
}

// TestMoveIPNoTaskID: as TestRebootNoTaskID for a move: the task is adopted.
func TestMoveIPNoTaskID(t *testing.T) {
	w := newWorld(t, func(c *sim.Config, _ *ovh.Config) {
		c.Latency = sim.Latency{TaskStart: 100 * time.Millisecond, MoveDoing: time.Hour, ListLag: 30 * time.Millisecond}
	})
	w.setReply(replyWithoutTask(fipPath+"/move", "null", true))
	ref, err := w.client.MoveIP(t.Context(), fip, spare)
	if err != nil {
		t.Fatalf("MoveIP answered without a task id: %v", err)
	}
	if ref.Scope != provider.ScopeIP || ref.Owner != fip.String() || ref.ID == 0 {
		t.Fatalf("MoveIP = %+v, want the IP task of %s the call created", ref, fip)
	}
	if n := w.sim.Counters().Moves[fip.String()]; n != 1 {
		t.Errorf("simulator accepted %d moves, want exactly 1", n)
	}
}

// TestMoveIPNoTaskIDRouted: a 2xx naming no task, the task list lags, but
// the route shows the move in place: done, with no task.
func TestMoveIPNoTaskIDRouted(t *testing.T) {
	w := newWorld(t, func(c *sim.Config, _ *ovh.Config) { c.Latency = sim.Latency{ListLag: time.Hour} })
	w.setReply(replyWithoutTask(fipPath+"/move", "", true))
	ref, err := w.client.MoveIP(t.Context(), fip, spare)
	if err != nil || ref != (provider.TaskRef{}) {
		t.Fatalf("MoveIP = %+v, %v; want zero ref and nil (done by route)", ref, err)
	}
	if got := w.sim.Route(fip.String()); got != spare {
		t.Errorf("route = %q, want %q", got, spare)
	}
	if !strings.Contains(w.log.String(), "already took effect") {
		t.Errorf("the route-based decision was not logged")
	}
}
