package steps_test

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"
	"github.com/takeover-dev/takeover/state/local"
	"github.com/takeover-dev/takeover/steps"
)

// BenchmarkRunPlan measures the step machine's own cost: a run of the
// nine-step test plan (two parallel branches, journal notes, a finalizer)
// against the fsync'ed local store, effects being appends to a file. It
// reports records per run and the time per run.
func BenchmarkRunPlan(b *testing.B) {
	st, err := local.Open(filepath.Join(b.TempDir(), "state"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	r := &steps.Runner{Store: st, Log: zerolog.Nop()}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		w := &world{dir: b.TempDir()}
		run := fmt.Sprintf("bench-%d", i)
		if err := r.Start(b.Context(), steps.Header{Run: run}, testPlan(w, nil), &steps.Env{}); err != nil {
			b.Fatal(err)
		}
	}
	recs, _ := st.Records(b.Context(), "bench-0")
	b.ReportMetric(float64(len(recs)), "records/run")
}
