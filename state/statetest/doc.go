// Package statetest is the conformance suite for [state.Store]
// implementations. Every implementation runs it from its own tests:
//
//	func TestConformance(t *testing.T) {
//		dir := t.TempDir()
//		statetest.Run(t, func(t *testing.T) state.Store {
//			s, err := local.Open(dir)
//			if err != nil {
//				t.Fatal(err)
//			}
//			t.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
//
// The open function must return a new, independent Store on the same backing
// storage each time it is called: the suite opens two instances and makes
// them race (for journal sequence numbers and for locks) to prove that
// mutual exclusion holds between processes, not only between goroutines of
// one Store. Run the suite under the race detector.
//
// The suite checks the contracts written on [state.Store] and [state.Lease]:
// gap-free compare-and-swap appends that write nothing on conflict, faithful
// round trips of every [state.Record] field (At to the millisecond, Out as
// JSON), [state.ErrNotFound] for unknown runs and lock ids, runs listed
// oldest first, a *[state.LockedError] carrying the holder's who, host, pid
// and run, takeover of expired locks with [state.ErrLeaseLost] and a closed
// Lost channel for the old holder, and exactly one winner when many
// goroutines race for one lock.
//
// Every subtest uses run ids and lock names of its own, with a random
// suffix, so the suite may run against storage that already holds data.
// Expiry is exercised with short TTLs (200ms) by polling until the lock can
// be taken, never by asserting on a fixed sleep; an implementation whose TTL
// granularity is coarser (etcd leases count in seconds) only makes the
// polling take longer.
package statetest
