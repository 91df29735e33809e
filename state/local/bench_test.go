package local_test

import (
	"testing"

	"github.com/takeover-dev/takeover/state"
)

// BenchmarkAppend measures one durable (fsync'ed) append to a growing
// journal, the cost the runner pays twice per step.
func BenchmarkAppend(b *testing.B) {
	dir := newDir(b)
	s := open(b, dir)
	rec := state.Record{Run: "bench", Step: "move-ip/192.0.2.1/32", Phase: state.PhaseDone, At: t0,
		Key: "bench/move-ip/1", Out: []byte(`{"task":{"id":123456789,"status":"done"}}`)}
	b.ReportAllocs()
	var seq int64
	for b.Loop() {
		rec.Seq = seq
		if err := s.Append(b.Context(), rec); err != nil {
			b.Fatal(err)
		}
		seq++
	}
}
