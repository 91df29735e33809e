package statetest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/takeover-dev/takeover/state"
)

// Run runs the conformance suite against the Store implementation that open
// returns. Each call of open must return a new Store instance on the same
// backing storage; the instance should be closed by a t.Cleanup registered
// by open.
func Run(t *testing.T, open func(t *testing.T) state.Store) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, open func(t *testing.T) state.Store)
	}{
		{"AppendSequence", testAppendSequence},
		{"AppendConflictWritesNothing", testAppendConflict},
		{"RecordsRoundTrip", testRecordsRoundTrip},
		{"RecordsUnknownRun", testRecordsUnknownRun},
		{"RunsOldestFirst", testRunsOldestFirst},
		{"ConcurrentAppenders", testConcurrentAppenders},
		{"LockHeldShowsHolder", testLockHeld},
		{"ReleaseAndRelock", testReleaseRelock},
		{"ExpiredLockTakenOver", testExpiredTakeover},
		{"RefreshExtendsExpiry", testRefreshExtends},
		{"LocksListsHolders", testLocksList},
		{"UnlockByID", testUnlockByID},
		{"LockRace", testLockRace},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open) })
	}
}

// unique returns prefix followed by a random suffix, so that subtests never
// share a run id or lock name, even against storage used before.
func unique(prefix string) string {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return prefix + "-" + hex.EncodeToString(b)
}

// holder returns lock info as a caller fills it in: who, this host and pid,
// a run and an operation. Lock fills the rest.
func holder(t *testing.T, name, who string) state.LockInfo {
	t.Helper()
	host, err := os.Hostname()
	if err != nil {
		t.Fatalf("hostname: %v", err)
	}
	return state.LockInfo{
		Name: name,
		Run:  unique("run"),
		Who:  who,
		Host: host,
		PID:  os.Getpid(),
		Op:   "conformance",
	}
}

// base is a fixed instant with a nanosecond part and a non-UTC zone, so
// that round trips are checked to the millisecond and across zones.
var base = time.Date(2026, 3, 14, 15, 9, 26, 535897932, time.FixedZone("CEST", 2*3600))

func record(run string, seq int64) state.Record {
	return state.Record{
		Run:   run,
		Seq:   seq,
		Step:  fmt.Sprintf("step-%d", seq),
		Phase: state.PhaseNote,
		At:    base.Add(time.Duration(seq) * time.Second),
	}
}

func appendAll(t *testing.T, s state.Store, recs ...state.Record) {
	t.Helper()
	for _, r := range recs {
		if err := s.Append(t.Context(), r); err != nil {
			t.Fatalf("append %s seq %d: %v", r.Run, r.Seq, err)
		}
	}
}

// recordOpts compares records the way the contract promises: At as the same
// instant to within a millisecond (any zone), Out as equal JSON values.
var recordOpts = cmp.Options{
	cmp.Comparer(func(a, b time.Time) bool {
		d := a.Sub(b)
		return d > -time.Millisecond && d < time.Millisecond
	}),
	cmp.Transformer("json", func(m json.RawMessage) any {
		if len(m) == 0 {
			return nil
		}
		var v any
		if err := json.Unmarshal(m, &v); err != nil {
			return fmt.Sprintf("invalid JSON %q: %v", m, err)
		}
		return v
	}),
}

func wantRecords(t *testing.T, s state.Store, run string, want []state.Record) {
	t.Helper()
	got, err := s.Records(t.Context(), run)
	if err != nil {
		t.Fatalf("records of %s: %v", run, err)
	}
	if diff := cmp.Diff(want, got, recordOpts); diff != "" {
		t.Errorf("records of %s (-want +got):\n%s", run, diff)
	}
}

func testAppendSequence(t *testing.T, open func(t *testing.T) state.Store) {
	s := open(t)
	run := unique("seq")
	var want []state.Record
	for i := range int64(5) {
		r := record(run, i)
		appendAll(t, s, r)
		want = append(want, r)
	}
	wantRecords(t, s, run, want)
	// A second instance sees the same journal.
	wantRecords(t, open(t), run, want)
}

func testAppendConflict(t *testing.T, open func(t *testing.T) state.Store) {
	s := open(t)
	run := unique("conflict")

	// A new run must start at 0; anything else conflicts and creates nothing.
	for _, seq := range []int64{1, -1} {
		err := s.Append(t.Context(), record(run, seq))
		if !errors.Is(err, state.ErrConflict) {
			t.Fatalf("append seq %d to a new run: got %v, want ErrConflict", seq, err)
		}
	}
	if _, err := s.Records(t.Context(), run); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("records after conflicting first append: got %v, want ErrNotFound", err)
	}
	runs, err := s.Runs(t.Context())
	if err != nil {
		t.Fatalf("runs: %v", err)
	}
	if slices.Contains(runs, run) {
		t.Fatalf("runs lists %s after only conflicting appends", run)
	}

	want := []state.Record{record(run, 0), record(run, 1), record(run, 2)}
	appendAll(t, s, want...)
	for _, seq := range []int64{0, 1, 2, 4, 100} {
		r := record(run, seq)
		r.Step = "intruder"
		if err := s.Append(t.Context(), r); !errors.Is(err, state.ErrConflict) {
			t.Errorf("append seq %d to a run of 3: got %v, want ErrConflict", seq, err)
		}
	}
	wantRecords(t, s, run, want)
	wantRecords(t, open(t), run, want)
}

func testRecordsRoundTrip(t *testing.T, open func(t *testing.T) state.Store) {
	s := open(t)
	run := unique("roundtrip")
	want := []state.Record{
		{
			Run:   run,
			Seq:   0,
			Phase: state.PhaseRunStarted,
			At:    base,
			Out:   json.RawMessage(`{"runbook": "web-1", "mode": "disaster", "plan": ["fence", "move-ip"], "n": 1.5, "ok": true, "none": null}`),
		},
		{
			Run:     run,
			Seq:     1,
			Step:    "fence",
			Phase:   state.PhaseIntent,
			At:      base.Add(1500 * time.Microsecond).UTC(),
			Attempt: 2,
			Key:     run + "/fence/2",
		},
		{
			Run:     run,
			Seq:     2,
			Step:    "fence",
			Phase:   state.PhaseFailed,
			At:      base.Add(time.Hour).In(time.FixedZone("X", -7*3600-1800)),
			Attempt: 2,
			Key:     run + "/fence/2",
			Err:     "reboot ns1: task 42 \"error\" <&> é ✓\nsecond line",
			Out:     json.RawMessage(`"a string"`),
		},
		{
			Run:   run,
			Seq:   3,
			Step:  "move-ip/1.2.3.4/32",
			Phase: state.PhaseDone,
			At:    time.Date(2026, 12, 31, 23, 59, 59, 999_000_000, time.UTC),
			Out:   json.RawMessage(`[1,{"task":{"id":123456789012}},[]]`),
		},
	}
	appendAll(t, s, want...)
	wantRecords(t, s, run, want)
	wantRecords(t, open(t), run, want)

	got, err := s.Records(t.Context(), run)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range got {
		if !json.Valid(r.Out) && len(r.Out) != 0 {
			t.Errorf("record %d: Out is not valid JSON: %q", i, r.Out)
		}
		if d := r.At.UTC().Sub(want[i].At.UTC()).Abs(); d >= time.Millisecond {
			t.Errorf("record %d: At %s, want %s (off by %s)", i, r.At.UTC(), want[i].At.UTC(), d)
		}
	}
}

func testRecordsUnknownRun(t *testing.T, open func(t *testing.T) state.Store) {
	s := open(t)
	_, err := s.Records(t.Context(), unique("never-written"))
	if !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("records of an unknown run: got %v, want ErrNotFound", err)
	}
}

func testRunsOldestFirst(t *testing.T, open func(t *testing.T) state.Store) {
	s := open(t)
	prefix := unique("runs")
	// Names sort in the opposite order from creation, so that an
	// implementation that sorts by name fails.
	names := []string{prefix + "-c", prefix + "-b", prefix + "-a"}
	for i, run := range names {
		r := record(run, 0)
		r.At = time.Now().Add(time.Duration(i) * time.Second)
		appendAll(t, s, r)
	}
	checkRunsOrder(t, s, prefix, names)
	checkRunsOrder(t, open(t), prefix, names)

	// A later record of the oldest run does not make it younger.
	r := record(names[0], 1)
	r.At = time.Now().Add(time.Hour)
	appendAll(t, s, r)
	checkRunsOrder(t, open(t), prefix, names)
}

func checkRunsOrder(t *testing.T, s state.Store, prefix string, want []string) {
	t.Helper()
	all, err := s.Runs(t.Context())
	if err != nil {
		t.Fatalf("runs: %v", err)
	}
	var got []string
	for _, r := range all {
		if len(r) > len(prefix) && r[:len(prefix)] == prefix {
			got = append(got, r)
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("runs with prefix %s, oldest first (-want +got):\n%s", prefix, diff)
	}
}

// testConcurrentAppenders has goroutines on two Store instances append to
// one run. Each goroutine tries every seq in order; by induction, when a
// goroutine has tried seq n the journal holds at least n+1 records, so every
// seq is written exactly once, by exactly one winner.
func testConcurrentAppenders(t *testing.T, open func(t *testing.T) state.Store) {
	stores := []state.Store{open(t), open(t)}
	run := unique("race")
	const perStore, seqs = 3, 12

	type result struct {
		writer string
		seq    int64
		err    error
	}
	results := make(chan result, len(stores)*perStore*seqs)
	var wg sync.WaitGroup
	for si, s := range stores {
		for g := range perStore {
			writer := fmt.Sprintf("store%d-g%d", si, g)
			wg.Go(func() {
				for seq := range int64(seqs) {
					r := record(run, seq)
					r.Step = writer
					results <- result{writer, seq, s.Append(t.Context(), r)}
				}
			})
		}
	}
	wg.Wait()
	close(results)

	winners := make(map[int64][]string)
	for r := range results {
		switch {
		case r.err == nil:
			winners[r.seq] = append(winners[r.seq], r.writer)
		case errors.Is(r.err, state.ErrConflict):
		default:
			t.Errorf("append seq %d by %s: %v (want nil or ErrConflict)", r.seq, r.writer, r.err)
		}
	}
	for seq := range int64(seqs) {
		if len(winners[seq]) != 1 {
			t.Errorf("seq %d: winners %v, want exactly one", seq, winners[seq])
		}
	}
	got, err := stores[1].Records(t.Context(), run)
	if err != nil {
		t.Fatalf("records: %v", err)
	}
	if len(got) != seqs {
		t.Fatalf("journal has %d records, want %d", len(got), seqs)
	}
	for i, r := range got {
		if r.Seq != int64(i) {
			t.Errorf("record %d has seq %d", i, r.Seq)
		}
		if w := winners[int64(i)]; len(w) == 1 && r.Step != w[0] {
			t.Errorf("record %d written by %s, but Append succeeded for %s", i, r.Step, w[0])
		}
	}
}

func lock(t *testing.T, s state.Store, info state.LockInfo, ttl time.Duration) state.Lease {
	t.Helper()
	l, err := s.Lock(t.Context(), info, ttl)
	if err != nil {
		t.Fatalf("lock %s: %v", info.Name, err)
	}
	return l
}

func release(t *testing.T, l state.Lease) {
	t.Helper()
	if err := l.Release(t.Context()); err != nil {
		t.Errorf("release %s: %v", l.Info().Name, err)
	}
}

// wantLocked checks that err is a *state.LockedError naming want as holder.
func wantLocked(t *testing.T, err error, want state.LockInfo) {
	t.Helper()
	var le *state.LockedError
	if !errors.As(err, &le) {
		t.Fatalf("lock %s held by %s: got %v, want *state.LockedError", want.Name, want.ID, err)
	}
	h, ok := state.IsLocked(err)
	if !ok || h.ID != le.Holder.ID {
		t.Errorf("IsLocked(%v) = %v, %v", err, h, ok)
	}
	if diff := cmp.Diff(want, le.Holder, recordOpts); diff != "" {
		t.Errorf("holder reported by a refused Lock (-want +got):\n%s", diff)
	}
}

func testLockHeld(t *testing.T, open func(t *testing.T) state.Store) {
	a, b := open(t), open(t)
	name := unique("server/ns1")
	info := holder(t, name, "alice@laptop")
	ttl := time.Minute
	before := time.Now()
	l := lock(t, a, info, ttl)
	defer release(t, l)
	after := time.Now()

	got := l.Info()
	if got.ID == "" {
		t.Fatal("lease has an empty ID")
	}
	if got.Created.Before(before.Add(-time.Second)) || got.Created.After(after.Add(time.Second)) {
		t.Errorf("Created %s, want between %s and %s", got.Created, before, after)
	}
	if d := got.Expires.Sub(got.Created); d < ttl-time.Second || d > ttl+time.Second {
		t.Errorf("Expires - Created = %s, want about the ttl %s", d, ttl)
	}
	want := info
	want.ID, want.Created, want.Expires = got.ID, got.Created, got.Expires
	if diff := cmp.Diff(want, got, recordOpts); diff != "" {
		t.Errorf("lease info (-want +got):\n%s", diff)
	}

	// Another instance is refused and told who holds the lock.
	_, err := b.Lock(t.Context(), holder(t, name, "bob@desk"), ttl)
	wantLocked(t, err, want)
	// So is the same instance: locks are not re-entrant.
	_, err = a.Lock(t.Context(), holder(t, name, "alice@laptop"), ttl)
	wantLocked(t, err, want)
}

func testReleaseRelock(t *testing.T, open func(t *testing.T) state.Store) {
	a, b := open(t), open(t)
	name := unique("ip/192.0.2.1/32")
	l1 := lock(t, a, holder(t, name, "alice"), time.Minute)
	if err := l1.Release(t.Context()); err != nil {
		t.Fatalf("release: %v", err)
	}
	if err := l1.Release(t.Context()); err != nil {
		t.Fatalf("second release: got %v, want nil", err)
	}
	l2 := lock(t, b, holder(t, name, "bob"), time.Minute)
	if l2.Info().ID == l1.Info().ID {
		t.Errorf("two acquisitions share ID %s", l2.Info().ID)
	}
	// Releasing the old lease again must not free the new holder's lock.
	if err := l1.Release(t.Context()); err != nil {
		t.Fatalf("third release: got %v, want nil", err)
	}
	_, err := a.Lock(t.Context(), holder(t, name, "alice"), time.Minute)
	wantLocked(t, err, l2.Info())
	release(t, l2)
	release(t, lock(t, a, holder(t, name, "alice"), time.Minute))
}

// waitLock polls Lock until it succeeds. Errors other than *LockedError fail
// the test at once.
func waitLock(t *testing.T, s state.Store, info state.LockInfo, ttl time.Duration) state.Lease {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		l, err := s.Lock(t.Context(), info, ttl)
		if err == nil {
			return l
		}
		if _, ok := state.IsLocked(err); !ok {
			t.Fatalf("lock %s: %v", info.Name, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("lock %s still held after 30s: %v", info.Name, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// wantLost checks that l reports loss through Refresh and its Lost channel.
func wantLost(t *testing.T, l state.Lease) {
	t.Helper()
	if err := l.Refresh(t.Context()); !errors.Is(err, state.ErrLeaseLost) {
		t.Errorf("refresh of a lost lease: got %v, want ErrLeaseLost", err)
	}
	select {
	case <-l.Lost():
	case <-time.After(30 * time.Second):
		t.Errorf("Lost() of a lost lease not closed after 30s")
	}
}

func testExpiredTakeover(t *testing.T, open func(t *testing.T) state.Store) {
	a, b := open(t), open(t)
	name := unique("server/ns2")
	old := lock(t, a, holder(t, name, "alice"), 200*time.Millisecond)
	select {
	case <-old.Lost():
		t.Fatal("Lost() closed on a fresh lease")
	default:
	}
	taker := waitLock(t, b, holder(t, name, "bob"), time.Minute)
	defer release(t, taker)
	if taker.Info().ID == old.Info().ID {
		t.Fatalf("takeover reused ID %s", old.Info().ID)
	}
	wantLost(t, old)
	// The old holder's Release must leave the new holder alone.
	if err := old.Release(t.Context()); err != nil {
		t.Logf("release of a lost lease: %v", err)
	}
	_, err := a.Lock(t.Context(), holder(t, name, "carol"), time.Minute)
	wantLocked(t, err, taker.Info())
	if err := taker.Refresh(t.Context()); err != nil {
		t.Errorf("refresh by the new holder: %v", err)
	}
}

func testRefreshExtends(t *testing.T, open func(t *testing.T) state.Store) {
	a, b := open(t), open(t)
	name := unique("server/ns3")
	ttl := time.Minute
	l := lock(t, a, holder(t, name, "alice"), ttl)
	defer release(t, l)
	first := l.Info()
	// Let the clock move on so that the new expiry is later.
	for time.Since(first.Created) < 20*time.Millisecond {
		time.Sleep(5 * time.Millisecond)
	}
	if err := l.Refresh(t.Context()); err != nil {
		t.Fatalf("refresh: %v", err)
	}
	got := l.Info()
	if !got.Expires.After(first.Expires) {
		t.Errorf("refresh left Expires at %s (was %s)", got.Expires, first.Expires)
	}
	if d := time.Until(got.Expires); d < ttl-5*time.Second || d > ttl+time.Second {
		t.Errorf("after refresh the lease expires in %s, want about %s", d, ttl)
	}
	want := first
	want.Expires = got.Expires
	if diff := cmp.Diff(want, got, recordOpts); diff != "" {
		t.Errorf("refresh changed more than Expires (-want +got):\n%s", diff)
	}
	// The new expiry is what others see.
	_, err := b.Lock(t.Context(), holder(t, name, "bob"), ttl)
	wantLocked(t, err, got)

	// A short lease kept refreshed is not taken over. Refresh and the
	// competing Lock alternate, so no timing assumption is needed beyond
	// each Refresh landing within the ttl of the one before.
	short := unique("server/ns3-short")
	sl := lock(t, a, holder(t, short, "alice"), 2*time.Second)
	defer release(t, sl)
	for range 5 {
		if err := sl.Refresh(t.Context()); err != nil {
			t.Fatalf("refresh short lease: %v", err)
		}
		_, err := b.Lock(t.Context(), holder(t, short, "bob"), time.Minute)
		wantLocked(t, err, sl.Info())
	}
}

func testLocksList(t *testing.T, open func(t *testing.T) state.Store) {
	a, b := open(t), open(t)
	prefix := unique("list")
	l1 := lock(t, a, holder(t, prefix+"/server/ns4", "alice"), time.Minute)
	defer release(t, l1)
	l2 := lock(t, b, holder(t, prefix+"/ip/198.51.100.7/32", "bob"), time.Minute)
	l3 := lock(t, b, holder(t, prefix+"/released", "bob"), time.Minute)
	release(t, l3)

	mine := func(s state.Store) []state.LockInfo {
		t.Helper()
		all, err := s.Locks(t.Context())
		if err != nil {
			t.Fatalf("locks: %v", err)
		}
		var got []state.LockInfo
		for _, l := range all {
			if len(l.Name) > len(prefix) && l.Name[:len(prefix)] == prefix {
				got = append(got, l)
			}
		}
		slices.SortFunc(got, func(x, y state.LockInfo) int { return cmpString(x.Name, y.Name) })
		return got
	}
	want := []state.LockInfo{l2.Info(), l1.Info()} // sorted by name: ".../ip" < ".../server"
	for i, s := range []state.Store{a, b} {
		if diff := cmp.Diff(want, mine(s), recordOpts); diff != "" {
			t.Errorf("locks seen by instance %d (-want +got):\n%s", i, diff)
		}
	}
	release(t, l2)
	if diff := cmp.Diff(want[1:], mine(a), recordOpts); diff != "" {
		t.Errorf("locks after a release (-want +got):\n%s", diff)
	}
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func testUnlockByID(t *testing.T, open func(t *testing.T) state.Store) {
	a, b := open(t), open(t)
	name := unique("server/ns5")
	l := lock(t, a, holder(t, name, "alice"), time.Minute)
	id := l.Info().ID

	if err := b.Unlock(t.Context(), unique("no-such-lock")); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("unlock of an unknown id: got %v, want ErrNotFound", err)
	}
	if err := b.Unlock(t.Context(), id); err != nil {
		t.Fatalf("unlock %s: %v", id, err)
	}
	if err := b.Unlock(t.Context(), id); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("second unlock of %s: got %v, want ErrNotFound", id, err)
	}
	all, err := a.Locks(t.Context())
	if err != nil {
		t.Fatalf("locks: %v", err)
	}
	for _, h := range all {
		if h.ID == id || h.Name == name {
			t.Errorf("locks still lists %v after unlock", h)
		}
	}
	taker := lock(t, b, holder(t, name, "bob"), time.Minute)
	defer release(t, taker)
	wantLost(t, l)
	if err := l.Release(t.Context()); err != nil {
		t.Logf("release of a force-unlocked lease: %v", err)
	}
	_, err = a.Lock(t.Context(), holder(t, name, "alice"), time.Minute)
	wantLocked(t, err, taker.Info())
}

// testLockRace has many goroutines on two instances race for one lock,
// several times over: exactly one wins each round and every loser is told
// who won.
func testLockRace(t *testing.T, open func(t *testing.T) state.Store) {
	stores := []state.Store{open(t), open(t)}
	const rounds, perStore = 5, 8
	seen := make(map[string]bool)
	for round := range rounds {
		name := unique(fmt.Sprintf("race/%d", round))
		var (
			mu      sync.Mutex
			winners []state.Lease
			holders []state.LockInfo
			wg      sync.WaitGroup
		)
		start := make(chan struct{})
		for si, s := range stores {
			for g := range perStore {
				wg.Go(func() {
					<-start
					l, err := s.Lock(t.Context(), holder(t, name, fmt.Sprintf("store%d-g%d", si, g)), time.Minute)
					mu.Lock()
					defer mu.Unlock()
					if err == nil {
						winners = append(winners, l)
						return
					}
					h, ok := state.IsLocked(err)
					if !ok {
						t.Errorf("lock %s: got %v, want nil or *LockedError", name, err)
						return
					}
					holders = append(holders, h)
				})
			}
		}
		close(start)
		wg.Wait()
		if len(winners) != 1 {
			t.Fatalf("round %d: %d goroutines hold %s, want exactly one", round, len(winners), name)
		}
		w := winners[0].Info()
		if seen[w.ID] {
			t.Errorf("round %d: lock ID %s reused", round, w.ID)
		}
		seen[w.ID] = true
		for _, h := range holders {
			if h.ID != w.ID || h.Who != w.Who {
				t.Errorf("round %d: refused goroutine was told the holder is %s (%s), winner is %s (%s)",
					round, h.ID, h.Who, w.ID, w.Who)
			}
		}
		release(t, winners[0])
	}
}
