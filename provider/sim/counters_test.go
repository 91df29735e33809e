package sim

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// getCounters reads the debug endpoint without any OVH headers.
func getCounters(t *testing.T, e *env, method string) (int, Counters, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, e.srv.URL+CountersPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, CountersPath, err)
	}
	defer r.Body.Close()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	var c Counters
	if r.StatusCode == http.StatusOK {
		if err := json.Unmarshal(b, &c); err != nil {
			t.Fatalf("decode %s: %v", b, err)
		}
	}
	return r.StatusCode, c, string(b)
}

func TestCountersEndpoint(t *testing.T) {
	e := newEnv(t, Latency{})
	status, c, body := getCounters(t, e, http.MethodGet)
	if status != http.StatusOK {
		t.Fatalf("GET %s = %d %s", CountersPath, status, body)
	}
	if diff := cmp.Diff(Counters{Reboots: map[string]int{}, Moves: map[string]int{}}, c); diff != "" {
		t.Errorf("fresh counters (-want +got):\n%s", diff)
	}
	if !strings.Contains(body, `"reboots":{}`) || !strings.Contains(body, `"moves":{}`) {
		t.Errorf("body %s: want lower-case keys reboots and moves", body)
	}

	// A fault on every request does not touch the debug endpoint.
	remove := e.sim.AddFault(Fault{Status: http.StatusInternalServerError})
	if status, _, body := getCounters(t, e, http.MethodGet); status != http.StatusOK {
		t.Fatalf("GET %s under a fault = %d %s", CountersPath, status, body)
	}
	remove()

	e.must("POST", "/dedicated/server/"+srvA+"/reboot", nil)
	e.must("POST", "/ip/10.200.0.100%2F32/move", map[string]any{"to": srvB})
	e.must("POST", "/dedicated/server/"+srvB+"/reboot", nil)
	_, c, _ = getCounters(t, e, http.MethodGet)
	if diff := cmp.Diff(e.sim.Counters(), c); diff != "" {
		t.Errorf("endpoint vs Sim.Counters (-want +got):\n%s", diff)
	}
	want := Counters{Reboots: map[string]int{srvA: 1, srvB: 1}, Moves: map[string]int{fipA: 1}}
	if diff := cmp.Diff(want, c); diff != "" {
		t.Errorf("counters (-want +got):\n%s", diff)
	}

	// Read-only: other methods are refused and change nothing.
	if status, _, body := getCounters(t, e, http.MethodPost); status != http.StatusMethodNotAllowed {
		t.Errorf("POST %s = %d %s, want 405", CountersPath, status, body)
	}
	// It is not an API path: under the API base it is an unknown URL.
	if r := e.call("GET", CountersPath, nil); r.status != http.StatusNotFound {
		t.Errorf("GET /1.0%s = %d, want 404", CountersPath, r.status)
	}
}
