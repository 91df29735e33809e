package steps

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/takeover-dev/takeover/state"
)

// State is the state of a step as the journal tells it.
type State string

// Step states.
const (
	StatePending State = "pending"
	StateRunning State = "running"
	StateWaiting State = "waiting"
	StateDone    State = "done"
	StateFailed  State = "failed"
	StateSkipped State = "skipped"
	StateUndoing State = "undoing"
	StateUndone  State = "undone"
)

// Run outcomes recorded in the run-finished record.
const (
	OutcomeComplete   = "complete"
	OutcomeRolledBack = "rolled-back"
)

// Header is the first record of a run: what is being run, by whom.
type Header struct {
	Run         string    `json:"run"`
	Runbook     string    `json:"runbook"`
	RunbookFile string    `json:"runbookFile,omitempty"`
	Mode        string    `json:"mode"`
	Who         string    `json:"who"`
	Host        string    `json:"host"`
	Steps       []string  `json:"steps"`
	Locks       []string  `json:"locks,omitempty"`
	Created     time.Time `json:"created"`
}

// StepView is one step's state folded from the journal.
type StepView struct {
	Name     string                     `json:"name"`
	State    State                      `json:"state"`
	Attempt  int                        `json:"attempt"`
	Started  time.Time                  `json:"started,omitzero"`
	Ended    time.Time                  `json:"ended,omitzero"`
	Err      string                     `json:"error,omitempty"`
	Notes    map[string]json.RawMessage `json:"notes,omitempty"`
	Waiting  string                     `json:"waiting,omitempty"`
	DoneSeq  int64                      `json:"-"`
	Duration time.Duration              `json:"duration,omitempty"` // of the last attempt that ended
}

// RunView is a run folded from its journal.
type RunView struct {
	Header   Header               `json:"header"`
	Steps    map[string]*StepView `json:"steps"`
	Outcome  string               `json:"outcome,omitempty"` // "" while unfinished
	Updated  time.Time            `json:"updated"`
	Records  []state.Record       `json:"-"`
	Rollback bool                 `json:"rollback,omitempty"` // a rollback has started
}

// Step returns the view of the named step, pending if never journalled.
func (v *RunView) Step(name string) *StepView {
	if s, ok := v.Steps[name]; ok {
		return s
	}
	return &StepView{Name: name, State: StatePending}
}

// Ordered returns the steps in header order, then any others by name.
func (v *RunView) Ordered() []*StepView {
	seen := map[string]bool{}
	var out []*StepView
	for _, n := range v.Header.Steps {
		seen[n] = true
		out = append(out, v.Step(n))
	}
	var rest []string
	for n := range v.Steps {
		if !seen[n] {
			rest = append(rest, n)
		}
	}
	sort.Strings(rest)
	for _, n := range rest {
		out = append(out, v.Steps[n])
	}
	return out
}

// Fold builds a RunView from a run's records.
func Fold(recs []state.Record) (*RunView, error) {
	v := &RunView{Steps: map[string]*StepView{}, Records: recs}
	if len(recs) == 0 {
		return nil, fmt.Errorf("empty journal")
	}
	if recs[0].Phase != state.PhaseRunStarted {
		return nil, fmt.Errorf("journal of run %s: record 0 is %q, want %q", recs[0].Run, recs[0].Phase, state.PhaseRunStarted)
	}
	if err := json.Unmarshal(recs[0].Out, &v.Header); err != nil {
		return nil, fmt.Errorf("journal of run %s: decode header: %w", recs[0].Run, err)
	}
	for _, r := range recs {
		v.Updated = r.At
		if r.Phase == state.PhaseRunFinished {
			var out struct {
				Outcome string `json:"outcome"`
			}
			_ = json.Unmarshal(r.Out, &out)
			v.Outcome = out.Outcome
			continue
		}
		if r.Step == "" {
			continue
		}
		s, ok := v.Steps[r.Step]
		if !ok {
			s = &StepView{Name: r.Step, State: StatePending, Notes: map[string]json.RawMessage{}}
			v.Steps[r.Step] = s
		}
		switch r.Phase {
		case state.PhaseIntent:
			s.State, s.Attempt, s.Started, s.Err, s.Waiting = StateRunning, r.Attempt, r.At, "", ""
		case state.PhaseNote:
			var m map[string]json.RawMessage
			if err := json.Unmarshal(r.Out, &m); err != nil {
				return nil, fmt.Errorf("journal of run %s: record %d: decode note: %w", r.Run, r.Seq, err)
			}
			for k, val := range m {
				s.Notes[k] = val
			}
		case state.PhaseWaiting:
			s.State = StateWaiting
			var w struct {
				On string `json:"on"`
			}
			_ = json.Unmarshal(r.Out, &w)
			s.Waiting = w.On
		case state.PhaseDone:
			s.State, s.Ended, s.DoneSeq, s.Waiting = StateDone, r.At, r.Seq, ""
			s.Duration = r.At.Sub(s.Started)
		case state.PhaseFailed:
			s.State, s.Ended, s.Err, s.Waiting = StateFailed, r.At, r.Err, ""
			s.Duration = r.At.Sub(s.Started)
		case state.PhaseSkipped:
			s.State, s.Ended = StateSkipped, r.At
		case state.PhaseUndoIntent:
			v.Rollback = true
			s.State, s.Err = StateUndoing, ""
		case state.PhaseUndone:
			s.State, s.Ended = StateUndone, r.At
		}
	}
	return v, nil
}

// LoadRun reads and folds a run's journal.
func LoadRun(ctx context.Context, st state.Store, run string) (*RunView, error) {
	recs, err := st.Records(ctx, run)
	if err != nil {
		return nil, err
	}
	return Fold(recs)
}

// journal appends a run's records to a store, numbering them.
type journal struct {
	mu    sync.Mutex
	store state.Store
	run   string
	next  int64
	now   func() time.Time
	notes map[string]map[string]json.RawMessage // step → key → value
	done  map[string]bool                       // steps done or skipped and not undone
	// hooks for crash testing: called around each append with the record's seq.
	before, after func(seq int64)
}

// flushTimeout bounds a journal write made after the run's context ended.
const flushTimeout = 30 * time.Second

func (j *journal) append(ctx context.Context, rec state.Record) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	rec.Run = j.run
	rec.Seq = j.next
	rec.At = j.now().UTC()
	if rec.Phase == state.PhaseIntent && rec.Key == "" {
		rec.Key = fmt.Sprintf("%s/%s/%d", j.run, rec.Step, rec.Attempt)
	}
	// A record describes what already happened or is about to happen in a
	// step that has started: write it even if ctx was cancelled meanwhile.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), flushTimeout)
	defer cancel()
	if j.before != nil {
		j.before(rec.Seq)
	}
	if err := j.store.Append(wctx, rec); err != nil {
		if errors.Is(err, state.ErrConflict) {
			return fmt.Errorf("journal of run %s: another orchestrator wrote record %d (is the lease lost?): %w", j.run, rec.Seq, err)
		}
		return fmt.Errorf("journal of run %s: append record %d: %w", j.run, rec.Seq, err)
	}
	j.next++
	if j.after != nil {
		j.after(rec.Seq)
	}
	switch rec.Phase {
	case state.PhaseDone, state.PhaseSkipped:
		j.done[rec.Step] = true
	case state.PhaseUndoIntent, state.PhaseIntent:
		j.done[rec.Step] = false
	}
	if rec.Phase == state.PhaseNote {
		var m map[string]json.RawMessage
		if json.Unmarshal(rec.Out, &m) == nil {
			if j.notes[rec.Step] == nil {
				j.notes[rec.Step] = map[string]json.RawMessage{}
			}
			for k, v := range m {
				j.notes[rec.Step][k] = v
			}
		}
	}
	return nil
}

func (j *journal) note(step, key string) (json.RawMessage, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	v, ok := j.notes[step][key]
	return v, ok
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("steps: marshal %T: %v", v, err))
	}
	return b
}
