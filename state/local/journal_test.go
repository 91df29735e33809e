package local_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"

	"github.com/takeover-dev/takeover/state"
	"github.com/takeover-dev/takeover/state/local"
)

func open(t testing.TB, dir string, opts ...local.Option) *local.Store {
	t.Helper()
	opts = append([]local.Option{local.WithLogger(zerolog.New(zerolog.NewTestWriter(t)))}, opts...)
	s, err := local.Open(dir, opts...)
	if err != nil {
		t.Fatalf("open %s: %v", dir, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// newDir returns a path for a store in a fresh temporary directory (which
// itself is 0755, too open for a store).
func newDir(t testing.TB) string { return filepath.Join(t.TempDir(), "state") }

var t0 = time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)

func records(run string, n int) []state.Record {
	var recs []state.Record
	for i := range n {
		recs = append(recs, state.Record{
			Run:   run,
			Seq:   int64(i),
			Step:  fmt.Sprintf("step%d", i),
			Phase: state.PhaseDone,
			At:    t0.Add(time.Duration(i) * time.Second),
			Out:   json.RawMessage(`{"i":` + fmt.Sprint(i) + `}`),
		})
	}
	return recs
}

// fill appends recs to a fresh store in dir and returns the journal path.
func fill(t *testing.T, s *local.Store, dir string, recs []state.Record) string {
	t.Helper()
	for _, r := range recs {
		if err := s.Append(t.Context(), r); err != nil {
			t.Fatalf("append %d: %v", r.Seq, err)
		}
	}
	return filepath.Join(dir, "runs", recs[0].Run+".jsonl")
}

func readLines(t *testing.T, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(b, []byte("\n")) {
		t.Fatalf("%s does not end with a newline: %q", path, b)
	}
	return bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
}

func writeLines(t *testing.T, path string, lines [][]byte, tail string) {
	t.Helper()
	b := append(bytes.Join(lines, []byte("\n")), '\n')
	b = append(b, tail...)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestJournalFormat pins the documented on-disk format: one JSON object per
// line with the record and the CRC-32C of its exact bytes.
func TestJournalFormat(t *testing.T) {
	dir := newDir(t)
	path := fill(t, open(t, dir), dir, records("fmt", 3))
	lines := readLines(t, path)
	if len(lines) != 3 {
		t.Fatalf("%d lines, want 3", len(lines))
	}
	table := crc32.MakeTable(crc32.Castagnoli)
	for i, line := range lines {
		var env struct {
			Rec json.RawMessage `json:"rec"`
			Sum string          `json:"sum"`
		}
		if err := json.Unmarshal(line, &env); err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		if want := fmt.Sprintf("%08x", crc32.Checksum(env.Rec, table)); env.Sum != want {
			t.Errorf("line %d: sum %q, want CRC-32C %q", i+1, env.Sum, want)
		}
		var rec state.Record
		if err := json.Unmarshal(env.Rec, &rec); err != nil {
			t.Fatalf("line %d: record: %v", i+1, err)
		}
		if rec.Seq != int64(i) || rec.Run != "fmt" {
			t.Errorf("line %d: run %q seq %d", i+1, rec.Run, rec.Seq)
		}
	}
}

func TestCorruptMiddleRecord(t *testing.T) {
	tests := []struct {
		name   string
		damage func(line []byte) []byte
		detail string
	}{
		{"flipped byte", func(l []byte) []byte {
			i := bytes.Index(l, []byte("step1"))
			l[i+2] ^= 0x01 // "step1" → "suep1": still JSON, wrong checksum
			return l
		}, "checksum mismatch"},
		{"broken JSON", func(l []byte) []byte { return l[:len(l)/2] }, "not a journal line"},
		{"wrong sequence", func(l []byte) []byte {
			rec := []byte(`{"run":"r","seq":7,"phase":"done","at":"2026-05-01T10:00:00Z"}`)
			return fmt.Appendf(nil, `{"rec":%s,"sum":"%08x"}`, rec, crc32.Checksum(rec, crc32.MakeTable(crc32.Castagnoli)))
		}, "want run"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := newDir(t)
			s := open(t, dir)
			path := fill(t, s, dir, records("r", 3))
			lines := readLines(t, path)
			lines[1] = tc.damage(lines[1])
			writeLines(t, path, lines, "")

			_, err := s.Records(t.Context(), "r")
			if !errors.Is(err, state.ErrCorrupt) {
				t.Fatalf("records: got %v, want ErrCorrupt", err)
			}
			for _, want := range []string{path, "line 2", tc.detail, "restore the file from a backup, or move it aside"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
			// A second store sees the same damage; the run is still listed.
			if _, err := open(t, dir).Records(t.Context(), "r"); !errors.Is(err, state.ErrCorrupt) {
				t.Errorf("records via a new store: got %v, want ErrCorrupt", err)
			}
			runs, err := s.Runs(t.Context())
			if err != nil || len(runs) != 1 {
				t.Errorf("runs = %v, %v; want [r]", runs, err)
			}
		})
	}
}

func TestTornLastLine(t *testing.T) {
	full := records("r", 4)
	tests := []struct {
		name string
		// tail returns what follows the 3 good lines, given the 4th line
		// as it would have been written (with its newline).
		tail func(line4 []byte) []byte
	}{
		{"half a line", func(l []byte) []byte { return l[:len(l)/2] }},
		{"line without its newline", func(l []byte) []byte { return l[:len(l)-1] }},
		{"zeroes", func(l []byte) []byte { return make([]byte, len(l)) }},
		{"garbage with newline", func(l []byte) []byte { return []byte("{\"rec\":{\"run\":\"r\",\n") }},
		{"bad checksum with newline", func(l []byte) []byte { return bytes.Replace(l, []byte("step3"), []byte("stepX"), 1) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := newDir(t)
			s := open(t, dir)
			path := fill(t, s, dir, full)
			lines := readLines(t, path)
			writeLines(t, path, lines[:3], string(tc.tail(append(lines[3], '\n'))))

			for _, st := range []*local.Store{s, open(t, dir)} {
				got, err := st.Records(t.Context(), "r")
				if err != nil {
					t.Fatalf("records with a torn tail: %v", err)
				}
				if diff := cmp.Diff(full[:3], got); diff != "" {
					t.Errorf("records with a torn tail (-want +got):\n%s", diff)
				}
			}
			// The torn record does not count: seq 4 conflicts, seq 3 goes in.
			if err := s.Append(t.Context(), full[3]); err != nil {
				t.Fatalf("append after a torn tail: %v", err)
			}
			got, err := s.Records(t.Context(), "r")
			if err != nil {
				t.Fatalf("records after repair: %v", err)
			}
			if diff := cmp.Diff(full, got); diff != "" {
				t.Errorf("records after repair (-want +got):\n%s", diff)
			}
			// The file is exactly four good lines again.
			if after := readLines(t, path); len(after) != 4 || !bytes.Equal(after[3], lines[3]) {
				t.Errorf("journal after repair has %d lines, last %q; want 4, last %q", len(after), after[len(after)-1], lines[3])
			}
		})
	}
}

func TestTornOnlyLine(t *testing.T) {
	dir := newDir(t)
	s := open(t, dir)
	path := fill(t, s, dir, records("r", 1))
	line := readLines(t, path)[0]
	if err := os.WriteFile(path, line[:10], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Records(t.Context(), "r"); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("records of a run whose only line is torn: got %v, want ErrNotFound", err)
	}
	if runs, err := s.Runs(t.Context()); err != nil || len(runs) != 0 {
		t.Errorf("runs = %v, %v; want none", runs, err)
	}
	if err := s.Append(t.Context(), records("r", 2)[1]); !errors.Is(err, state.ErrConflict) {
		t.Errorf("append seq 1: got %v, want ErrConflict", err)
	}
	fill(t, s, dir, records("r", 1))
	if after := readLines(t, path); len(after) != 1 || !bytes.Equal(after[0], line) {
		t.Errorf("journal after repair: %q, want %q", after, line)
	}
}

func TestRunIDs(t *testing.T) {
	dir := newDir(t)
	s := open(t, dir)
	for _, run := range []string{"", "..", ".", ".hidden", "a/b", "../escape", "a\\b", "with space", "tab\t", "nul\x00", "-flag", strings.Repeat("x", 129)} {
		rec := state.Record{Run: run, Phase: state.PhaseRunStarted, At: t0}
		err := s.Append(t.Context(), rec)
		if err == nil || errors.Is(err, state.ErrConflict) || !strings.Contains(err.Error(), "run id") {
			t.Errorf("append to run %q: got %v, want an error about the run id", run, err)
		}
		if _, err := s.Records(t.Context(), run); err == nil || !strings.Contains(err.Error(), "run id") {
			t.Errorf("records of run %q: got %v, want an error about the run id", run, err)
		}
	}
	var files []string
	filepath.WalkDir(filepath.Dir(dir), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	if len(files) != 0 {
		t.Errorf("rejected appends left files: %v", files)
	}

	good := []string{"a", "20260501T100000Z-4f2a", "run:1@spare+drill=2", "A.b_c-d", strings.Repeat("x", 128)}
	for _, run := range good {
		fill(t, s, dir, records(run, 1))
	}
	runs, err := s.Runs(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// All have the same first At, so they sort by id.
	want := []string{"20260501T100000Z-4f2a", "A.b_c-d", "a", "run:1@spare+drill=2", strings.Repeat("x", 128)}
	if diff := cmp.Diff(want, runs); diff != "" {
		t.Errorf("runs (-want +got):\n%s", diff)
	}
}

func TestRunsIgnoresStrayFiles(t *testing.T) {
	dir := newDir(t)
	s := open(t, dir)
	fill(t, s, dir, records("r", 2))
	for _, name := range []string{"notes.txt", ".tmp-123", "bad name.jsonl", "empty.jsonl"} {
		if err := os.WriteFile(filepath.Join(dir, "runs", name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "runs", "d.jsonl"), 0o700); err != nil {
		t.Fatal(err)
	}
	runs, err := s.Runs(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"r"}, runs); diff != "" {
		t.Errorf("runs (-want +got):\n%s", diff)
	}
}

func TestOpenPermissions(t *testing.T) {
	t.Run("created 0700, files 0600", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "a", "state")
		s := open(t, dir)
		path := fill(t, s, dir, records("r", 1))
		l, err := s.Lock(t.Context(), state.LockInfo{Name: "server/x", Who: "me"}, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Release(t.Context())
		want := map[string]os.FileMode{
			dir:                         0o700,
			filepath.Join(dir, "runs"):  0o700,
			filepath.Join(dir, "locks"): 0o700,
			path:                        0o600,
			filepath.Join(dir, "locks", "server%2Fx.lock"): 0o600,
		}
		for p, mode := range want {
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != mode {
				t.Errorf("%s has mode %04o, want %04o", p, fi.Mode().Perm(), mode)
			}
		}
	})
	t.Run("open to others", func(t *testing.T) {
		for _, mode := range []os.FileMode{0o755, 0o750, 0o701, 0o777} {
			dir := filepath.Join(t.TempDir(), "state")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, mode); err != nil {
				t.Fatal(err)
			}
			_, err := local.Open(dir)
			if err == nil {
				t.Fatalf("open of a %04o directory succeeded", mode)
			}
			for _, want := range []string{dir, fmt.Sprintf("%04o", mode), "chmod 700 " + dir} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("mode %04o: error %q does not contain %q", mode, err, want)
				}
			}
			if err := os.Chmod(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			open(t, dir) // fixed as the error says
		}
	})
	t.Run("not a directory", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(path, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := local.Open(path); err == nil || !strings.Contains(err.Error(), "not a directory") {
			t.Errorf("open of a file: got %v, want an error saying it is not a directory", err)
		}
	})
}

// TestLargeRecords uses records bigger than the chunk Append reads from the
// end of a journal to find the last record.
func TestLargeRecords(t *testing.T) {
	dir := newDir(t)
	s := open(t, dir)
	recs := records("big", 4)
	for i := range recs {
		recs[i].Out = json.RawMessage(`{"pad":"` + strings.Repeat("p", 5000*(i+1)) + `"}`)
	}
	path := fill(t, s, dir, recs[:3])
	if err := s.Append(t.Context(), recs[1]); !errors.Is(err, state.ErrConflict) {
		t.Errorf("append seq 1 to 3 large records: got %v, want ErrConflict", err)
	}
	// Tear a large last record: the fallback finds where it starts.
	lines := readLines(t, path)
	writeLines(t, path, lines[:2], string(lines[2][:len(lines[2])-10]))
	if err := s.Append(t.Context(), recs[3]); !errors.Is(err, state.ErrConflict) {
		t.Errorf("append seq 3 after tearing record 2: got %v, want ErrConflict", err)
	}
	fill(t, s, dir, recs[2:])
	got, err := s.Records(t.Context(), "big")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(recs, got); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}
}

func TestRunsWithCorruptFirstRecord(t *testing.T) {
	dir := newDir(t)
	s := open(t, dir)
	path := fill(t, s, dir, records("r", 2))
	lines := readLines(t, path)
	lines[0][len(lines[0])/2] ^= 0x20
	writeLines(t, path, lines, "")
	runs, err := s.Runs(t.Context())
	if err != nil {
		t.Fatalf("runs with a corrupt first record: %v", err)
	}
	if diff := cmp.Diff([]string{"r"}, runs); diff != "" {
		t.Errorf("runs (-want +got):\n%s", diff)
	}
	if _, err := s.Records(t.Context(), "r"); !errors.Is(err, state.ErrCorrupt) || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("records: got %v, want ErrCorrupt at line 1", err)
	}
}
