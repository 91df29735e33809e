package local

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/takeover-dev/takeover/state"
)

// syncFails is a journal file whose fsync fails with EIO after the write
// went through, as on a failing disk.
type syncFails struct{ *os.File }

func (syncFails) Sync() error { return syscall.EIO }

// TestAppendSyncFailure: a record whose fsync failed is not left in the
// journal, so retrying the append works instead of reporting a conflict.
func TestAppendSyncFailure(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	rec := func(seq int64) state.Record {
		return state.Record{Run: "r1", Seq: seq, Step: "s", Phase: state.PhaseNote, At: at}
	}
	for seq := range int64(2) {
		if err := s.Append(t.Context(), rec(seq)); err != nil {
			t.Fatalf("append %d: %v", seq, err)
		}
	}
	path := s.journalPath("r1")
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	line, err := encodeLine(rec(2))
	if err != nil {
		t.Fatal(err)
	}
	if err := appendLine(syncFails{f}, line, before.Size()); !errors.Is(err, syscall.EIO) {
		t.Fatalf("appendLine with a failing fsync: %v, want EIO", err)
	}
	after, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if after.Size() != before.Size() {
		t.Fatalf("journal after a failed fsync holds %d bytes, want %d as before", after.Size(), before.Size())
	}
	if err := s.Append(t.Context(), rec(2)); err != nil {
		t.Fatalf("append 2 again after the failed fsync: %v", err)
	}
	recs, err := s.Records(t.Context(), "r1")
	if err != nil || len(recs) != 3 {
		t.Fatalf("Records = %d records, %v; want 3", len(recs), err)
	}
}
