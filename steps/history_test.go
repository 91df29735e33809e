package steps_test

import (
	"sync"
	"testing"
	"time"

	"github.com/takeover-dev/takeover/steps"
)

// TestHistoryForecast: the forecast of a plan comes from the median step
// durations of past runs of the same runbook, and only of that runbook.
func TestHistoryForecast(t *testing.T) {
	st := newStore(t)
	clock := time.Date(2026, 11, 21, 3, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	r := newRunner(t, st)
	r.Now = func() time.Time { // one second per reading: durations are never zero
		mu.Lock()
		defer mu.Unlock()
		clock = clock.Add(time.Second)
		return clock
	}
	for i, rb := range []string{"web", "web", "web", "other"} {
		w := newWorld(t)
		if err := r.Start(t.Context(), steps.Header{Run: "r" + string(rune('a'+i)), Runbook: rb}, testPlan(w, nil), &steps.Env{}); err != nil {
			t.Fatal(err)
		}
	}
	h, err := steps.LoadHistory(t.Context(), st, "web")
	if err != nil {
		t.Fatal(err)
	}
	if h.Runs != 3 {
		t.Fatalf("history of web from %d runs, want 3", h.Runs)
	}
	// each step's intent and done are one clock tick apart at least
	for _, name := range []string{"prepare", "reboot", "commit"} {
		if d := h.Median[name]; d <= 0 {
			t.Errorf("median of %s = %s, want > 0", name, d)
		}
	}
	plan := testPlan(newWorld(t), nil)
	if plan.Expected() != 0 {
		t.Fatalf("test plan has defaults %s, want 0", plan.Expected())
	}
	if got := plan.WithHistory(h).Expected(); got <= 0 {
		t.Fatalf("forecast with history %s, want > 0", got)
	}
	if none, _ := steps.LoadHistory(t.Context(), st, "nope"); none.Runs != 0 || len(none.Median) != 0 {
		t.Fatalf("history of an unknown runbook: %+v", none)
	}
}
