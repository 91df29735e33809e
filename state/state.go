package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Phase says which transition of a run or step a [Record] describes.
type Phase string

// Journal phases. A step's life in the journal is
// intent → (note)* → done | failed | skipped, and on rollback undo-intent → undone.
const (
	PhaseRunStarted  Phase = "run-started"  // Out: the run's header (runbook, mode, plan)
	PhaseIntent      Phase = "intent"       // written before a step's side effect; Key is run/step/attempt
	PhaseNote        Phase = "note"         // an output known mid-step (a provider task id, a host key)
	PhaseWaiting     Phase = "waiting"      // waiting on a provider task or a person
	PhaseDone        Phase = "done"         // the step's effect is verified in place
	PhaseFailed      Phase = "failed"       // Err holds why
	PhaseSkipped     Phase = "skipped"      // skipped by an operator or by policy
	PhaseUndoIntent  Phase = "undo-intent"  // written before a compensation
	PhaseUndone      Phase = "undone"       // compensation verified
	PhaseRunFinished Phase = "run-finished" // Out: final status
)

// Record is one journal entry. Records of a run are numbered by Seq from 0
// without gaps.
type Record struct {
	Run     string          `json:"run"`
	Seq     int64           `json:"seq"`
	Step    string          `json:"step,omitempty"`
	Phase   Phase           `json:"phase"`
	At      time.Time       `json:"at"`
	Attempt int             `json:"attempt,omitempty"`
	Key     string          `json:"key,omitempty"` // idempotency key run/step/attempt
	Err     string          `json:"err,omitempty"`
	Out     json.RawMessage `json:"out,omitempty"`
}

// LockInfo describes the holder of a lease. It is shown to anyone refused
// the lock.
type LockInfo struct {
	ID      string    `json:"id"`   // unique per acquisition; what "takeover unlock" takes
	Name    string    `json:"name"` // what is locked, e.g. "server/ns123.ip-1-2-3.eu"
	Run     string    `json:"run,omitempty"`
	Who     string    `json:"who"`
	Host    string    `json:"host"`
	PID     int       `json:"pid"`
	Op      string    `json:"op,omitempty"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"`
}

// String renders the holder the way it is printed to a refused operator.
func (l LockInfo) String() string {
	return fmt.Sprintf("lock %s on %s held by %s (host %s, pid %d, run %s, op %s) since %s, expires %s",
		l.ID, l.Name, l.Who, l.Host, l.PID, l.Run, l.Op,
		l.Created.UTC().Format(time.RFC3339), l.Expires.UTC().Format(time.RFC3339))
}

// Lease is a held lock. It stays held until Release, until it expires
// without Refresh, or until the store loses it (for etcd, a lost session).
type Lease interface {
	// Info returns the holder info as stored.
	Info() LockInfo
	// Refresh pushes the expiry forward by the lease's TTL. It returns an
	// error wrapping [ErrLeaseLost] if the lease is no longer held.
	Refresh(ctx context.Context) error
	// Release gives the lock up. Releasing twice returns nil.
	Release(ctx context.Context) error
	// Lost is closed when the store knows the lease is no longer held.
	Lost() <-chan struct{}
}

// Store keeps journals and leases. Implementations are safe for concurrent
// use by several goroutines; several Store values (processes, machines) may
// share the same backing storage.
type Store interface {
	// Append writes rec as record rec.Seq of run rec.Run. It succeeds only if
	// rec.Seq equals the number of records the run already has; otherwise it
	// returns an error wrapping [ErrConflict] and writes nothing. A record is
	// durable when Append returns nil.
	Append(ctx context.Context, rec Record) error
	// Records returns all records of run in Seq order. An unknown run gives an
	// error wrapping [ErrNotFound]. A corrupt record gives an error wrapping
	// [ErrCorrupt] that names where it is.
	Records(ctx context.Context, run string) ([]Record, error)
	// Runs lists the ids of all runs with at least one record, oldest first.
	Runs(ctx context.Context) ([]string, error)

	// Lock acquires the lock named info.Name for ttl. If a live holder has it,
	// Lock returns a *[LockedError] (it does not wait). A stale lock (expired,
	// or held by a process on this host that is gone) is taken over. Lock
	// fills info.ID, Created and Expires.
	Lock(ctx context.Context, info LockInfo, ttl time.Duration) (Lease, error)
	// Locks lists the current holders of all live locks.
	Locks(ctx context.Context) ([]LockInfo, error)
	// Unlock removes the lock with the given ID whoever holds it (the
	// operator's "force unlock"). An unknown ID gives [ErrNotFound].
	Unlock(ctx context.Context, id string) error

	// Close releases resources held by the Store (not the leases).
	Close() error
}

var (
	// ErrConflict is wrapped when an append loses a compare-and-swap race.
	ErrConflict = errors.New("journal sequence conflict")
	// ErrNotFound is wrapped when a run or lock does not exist.
	ErrNotFound = errors.New("not found")
	// ErrCorrupt is wrapped when stored data fails its checksum or cannot be decoded.
	ErrCorrupt = errors.New("corrupt state")
	// ErrLeaseLost is wrapped when a lease is no longer held by its owner.
	ErrLeaseLost = errors.New("lease lost")
)

// LockedError is returned by [Store.Lock] when a live holder has the lock.
type LockedError struct {
	Holder LockInfo
}

func (e *LockedError) Error() string { return "already locked: " + e.Holder.String() }

// IsLocked reports whether err says a lock is held by someone else, and returns the holder.
func IsLocked(err error) (LockInfo, bool) {
	var le *LockedError
	if errors.As(err, &le) {
		return le.Holder, true
	}
	return LockInfo{}, false
}
