package steps

import (
	"context"
	"slices"
	"time"

	"github.com/takeover-dev/takeover/state"
)

// History is what past runs of one runbook say about its steps: the median
// duration of each step over the runs where it completed.
type History struct {
	Runs   int                      // runs that contributed
	Median map[string]time.Duration // by step name
}

// LoadHistory reads the journals of the store's runs of runbook (drills
// above all: they are complete runs) and returns the median duration of
// every step that completed in them. Unreadable journals are skipped: a
// forecast must not fail a plan.
func LoadHistory(ctx context.Context, st state.Store, runbook string) (History, error) {
	ids, err := st.Runs(ctx)
	if err != nil {
		return History{}, err
	}
	samples := map[string][]time.Duration{}
	h := History{Median: map[string]time.Duration{}}
	for _, id := range ids {
		v, err := LoadRun(ctx, st, id)
		if err != nil || v.Header.Runbook != runbook {
			continue
		}
		used := false
		started := map[string]time.Time{}
		for _, r := range v.Records {
			// a step's duration: from its intent to its done, per attempt
			switch r.Phase {
			case state.PhaseIntent:
				started[r.Step] = r.At
			case state.PhaseDone:
				if t, ok := started[r.Step]; ok && r.Step != "" {
					samples[r.Step] = append(samples[r.Step], r.At.Sub(t))
					delete(started, r.Step)
					used = true
				}
			}
		}
		if used {
			h.Runs++
		}
	}
	for name, ds := range samples {
		slices.Sort(ds)
		h.Median[name] = ds[len(ds)/2]
	}
	return h, nil
}

// WithHistory returns a copy of p whose expected durations come from h
// where h knows the step.
func (p Plan) WithHistory(h History) Plan {
	out := Plan{Nodes: slices.Clone(p.Nodes)}
	for i, n := range out.Nodes {
		if d, ok := h.Median[n.Step.Name()]; ok {
			out.Nodes[i].Doc.Expected = d
		}
	}
	return out
}
