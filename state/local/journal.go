package local

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/takeover-dev/takeover/state"
)

// castagnoli is the CRC-32C table; it is never written after creation.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

const journalExt = ".jsonl"

// checkRunID reports whether run can name a journal file: a letter or digit,
// then up to 127 letters, digits or ". _ - : @ + =". This excludes path
// separators, "..", hidden files and empty ids.
func checkRunID(run string) error {
	if run == "" {
		return errors.New("empty run id")
	}
	if len(run) > 128 {
		return fmt.Errorf("run id %.20q… is %d bytes long, at most 128 are allowed", run, len(run))
	}
	for i := 0; i < len(run); i++ {
		c := run[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case i > 0 && strings.IndexByte("._-:@+=", c) >= 0:
		default:
			return fmt.Errorf("run id %q cannot name a journal file: it must start with a letter or digit and hold only letters, digits and . _ - : @ + =", run)
		}
	}
	return nil
}

func (s *Store) journalPath(run string) string {
	return filepath.Join(s.runsDir(), run+journalExt)
}

// encodeLine renders rec as one journal line, newline included.
func encodeLine(rec state.Record) ([]byte, error) {
	rec.At = rec.At.UTC()
	b, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	line := make([]byte, 0, len(b)+32)
	line = append(line, `{"rec":`...)
	line = append(line, b...)
	line = fmt.Appendf(line, `,"sum":"%08x"}`+"\n", crc32.Checksum(b, castagnoli))
	return line, nil
}

// decodeLine decodes one journal line without its newline and checks its
// checksum.
func decodeLine(line []byte) (state.Record, error) {
	var env struct {
		Rec json.RawMessage `json:"rec"`
		Sum string          `json:"sum"`
	}
	if err := json.Unmarshal(line, &env); err != nil {
		return state.Record{}, fmt.Errorf("not a journal line: %v", err)
	}
	if len(env.Rec) == 0 {
		return state.Record{}, errors.New("not a journal line: no record")
	}
	if sum := fmt.Sprintf("%08x", crc32.Checksum(env.Rec, castagnoli)); env.Sum != sum {
		return state.Record{}, fmt.Errorf("checksum mismatch: the line says %q, its record sums to %q", env.Sum, sum)
	}
	var rec state.Record
	if err := json.Unmarshal(env.Rec, &rec); err != nil {
		return state.Record{}, fmt.Errorf("undecodable record: %v", err)
	}
	return rec, nil
}

func corruptError(path string, line int, detail error) error {
	return fmt.Errorf("journal %s line %d: %w: %v; restore the file from a backup, or move it aside (the run's history is then lost)",
		path, line, state.ErrCorrupt, detail)
}

// parseJournal decodes a whole journal file. A bad last line is a torn
// write: it is logged and left out, and validEnd is where it starts.
// Any other bad line is corruption.
func (s *Store) parseJournal(path, run string, data []byte) (recs []state.Record, validEnd int64, err error) {
	off, lineNo := 0, 0
	for off < len(data) {
		lineNo++
		line, next, terminated := data[off:], len(data), false
		if i := bytes.IndexByte(data[off:], '\n'); i >= 0 {
			line, next, terminated = data[off:off+i], off+i+1, true
		}
		rec, err := decodeLine(line)
		if err == nil && !terminated {
			err = errors.New("no newline at the end")
		}
		if err != nil {
			if next == len(data) {
				s.log.Warn().Str("file", path).Int("line", lineNo).Err(err).
					Msg("ignoring torn last line of journal (an interrupted write); the next append removes it")
				return recs, int64(off), nil
			}
			return nil, 0, corruptError(path, lineNo, err)
		}
		if rec.Run != run || rec.Seq != int64(len(recs)) {
			return nil, 0, corruptError(path, lineNo,
				fmt.Errorf("record says run %q seq %d, want run %q seq %d", rec.Run, rec.Seq, run, len(recs)))
		}
		recs = append(recs, rec)
		off = next
	}
	return recs, int64(len(data)), nil
}

// scanTail finds how many records the journal in f holds and where its
// valid part ends. The common case reads only the last line; a torn or odd
// tail falls back to parsing the whole file, which also finds line numbers
// for errors.
func (s *Store) scanTail(f *os.File, path, run string) (count, validEnd, size int64, err error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, 0, 0, fmt.Errorf("stat %s: %w", path, err)
	}
	size = fi.Size()
	if size == 0 {
		return 0, 0, 0, nil
	}
	for n := int64(4 << 10); ; n *= 2 {
		start := max(0, size-n)
		buf := make([]byte, size-start)
		if _, err := f.ReadAt(buf, start); err != nil {
			return 0, 0, 0, fmt.Errorf("read %s: %w", path, err)
		}
		if buf[len(buf)-1] != '\n' {
			break // torn tail
		}
		body := buf[:len(buf)-1]
		j := bytes.LastIndexByte(body, '\n')
		if j < 0 && start > 0 {
			continue // the last line starts before this chunk
		}
		rec, err := decodeLine(body[j+1:])
		if err != nil || rec.Run != run || rec.Seq < 0 {
			break
		}
		return rec.Seq + 1, size, size, nil
	}
	data := make([]byte, size)
	if _, err := f.ReadAt(data, 0); err != nil {
		return 0, 0, 0, fmt.Errorf("read %s: %w", path, err)
	}
	recs, validEnd, err := s.parseJournal(path, run, data)
	if err != nil {
		return 0, 0, 0, err
	}
	return int64(len(recs)), validEnd, size, nil
}

// Append implements [state.Store.Append]. It holds an exclusive flock on
// the journal file from reading its last record to the fsync of the new one.
func (s *Store) Append(ctx context.Context, rec state.Record) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("append to journal of run %s: %w", rec.Run, err)
	}
	if err := checkRunID(rec.Run); err != nil {
		return fmt.Errorf("append to journal: %w", err)
	}
	line, err := encodeLine(rec)
	if err != nil {
		return fmt.Errorf("append record %d to journal of run %s: encode: %w", rec.Seq, rec.Run, err)
	}
	path := s.journalPath(rec.Run)
	conflict := func(have int64) error {
		return fmt.Errorf("append record %d to journal of run %s: %w: the journal holds %d records",
			rec.Seq, rec.Run, state.ErrConflict, have)
	}

	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		if rec.Seq != 0 {
			return conflict(0)
		}
		f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if err == nil {
			if err := syncDir(s.runsDir()); err != nil {
				f.Close()
				return fmt.Errorf("append to journal of run %s: %w", rec.Run, err)
			}
		} else if errors.Is(err, fs.ErrExist) {
			f, err = os.OpenFile(path, os.O_RDWR, 0)
		}
	}
	if err != nil {
		return fmt.Errorf("append to journal of run %s: %w", rec.Run, err)
	}
	defer f.Close()
	if err := flock(f, unix.LOCK_EX); err != nil {
		return fmt.Errorf("append to journal of run %s: %w", rec.Run, err)
	}

	count, validEnd, size, err := s.scanTail(f, path, rec.Run)
	if err != nil {
		return fmt.Errorf("append record %d: %w", rec.Seq, err)
	}
	if rec.Seq != count {
		return conflict(count)
	}
	if validEnd < size {
		s.log.Warn().Str("file", path).Int64("bytes", size-validEnd).
			Msg("truncating torn last line of journal before appending")
		if err := f.Truncate(validEnd); err != nil {
			return fmt.Errorf("append to journal %s: remove torn last line: %w", path, err)
		}
	}
	if err := appendLine(f, line, validEnd); err != nil {
		return fmt.Errorf("append record %d to journal %s: %w", rec.Seq, path, err)
	}
	return nil
}

// journalFile is what appendLine needs of an open journal (an *os.File).
type journalFile interface {
	WriteAt(b []byte, off int64) (int, error)
	Sync() error
	Truncate(size int64) error
}

// appendLine writes line at end and fsyncs it. If either fails the file is
// truncated back to end: a record whose append reported an error must not
// stay visible, or the retry of the same record would find it and fail with
// a conflict, and a reader would see a record that may not survive a crash.
func appendLine(f journalFile, line []byte, end int64) error {
	_, err := f.WriteAt(line, end)
	if err == nil {
		if err = f.Sync(); err == nil {
			return nil
		}
		err = fmt.Errorf("fsync: %w", err)
	}
	if terr := f.Truncate(end); terr != nil {
		return fmt.Errorf("%w (and removing the record again failed: %v)", err, terr)
	}
	return err
}

// Records implements [state.Store.Records].
func (s *Store) Records(ctx context.Context, run string) ([]state.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("read journal of run %s: %w", run, err)
	}
	if err := checkRunID(run); err != nil {
		return nil, fmt.Errorf("read journal: %w", err)
	}
	path := s.journalPath(run)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read journal of run %s: %w", run, state.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read journal of run %s: %w", run, err)
	}
	defer f.Close()
	if err := flock(f, unix.LOCK_SH); err != nil {
		return nil, fmt.Errorf("read journal of run %s: %w", run, err)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("read journal %s: %w", path, err)
	}
	recs, _, err := s.parseJournal(path, run, data)
	if err != nil {
		return nil, fmt.Errorf("read journal of run %s: %w", run, err)
	}
	if len(recs) == 0 {
		return nil, fmt.Errorf("read journal of run %s: %w", run, state.ErrNotFound)
	}
	return recs, nil
}

// Runs implements [state.Store.Runs]. A run's age is the At of its first
// record (ties broken by id).
func (s *Store) Runs(ctx context.Context) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	entries, err := os.ReadDir(s.runsDir())
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	type run struct {
		id string
		at time.Time
	}
	var runs []run
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), journalExt)
		if !ok || !e.Type().IsRegular() || checkRunID(id) != nil {
			continue
		}
		at, ok, err := s.firstAt(filepath.Join(s.runsDir(), e.Name()))
		if err != nil {
			return nil, fmt.Errorf("list runs: %w", err)
		}
		if ok {
			runs = append(runs, run{id, at})
		}
	}
	slices.SortFunc(runs, func(a, b run) int {
		return cmp.Or(a.at.Compare(b.at), strings.Compare(a.id, b.id))
	})
	ids := make([]string, len(runs))
	for i, r := range runs {
		ids[i] = r.id
	}
	return ids, nil
}

// firstAt returns the At of a journal's first record; ok is false when the
// journal has no complete record. A journal whose first line is corrupt is
// still a run (Records reports the damage): it is dated by its mtime.
func (s *Store) firstAt(path string) (at time.Time, ok bool, err error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, err
	}
	defer f.Close()
	br := bufio.NewReader(f)
	line, err := br.ReadBytes('\n')
	if errors.Is(err, io.EOF) {
		return time.Time{}, false, nil // empty, or a torn only line
	}
	if err != nil {
		return time.Time{}, false, fmt.Errorf("read %s: %w", path, err)
	}
	rec, derr := decodeLine(line[:len(line)-1])
	if derr == nil {
		return rec.At, true, nil
	}
	if _, err := br.Peek(1); errors.Is(err, io.EOF) {
		return time.Time{}, false, nil // a torn only line
	}
	fi, err := f.Stat()
	if err != nil {
		return time.Time{}, false, fmt.Errorf("stat %s: %w", path, err)
	}
	s.log.Warn().Str("file", path).Int("line", 1).Err(derr).Msg("corrupt first journal record; dating the run by the file's mtime")
	return fi.ModTime(), true, nil
}
