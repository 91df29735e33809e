// Package state defines where takeover keeps what must survive the
// orchestrator: the journal of every run and the leases that make sure only
// one orchestrator drives a given server or IP at a time.
//
// A [Store] holds both. Its journal is append-only: records of a run are
// numbered from 0 without gaps, and [Store.Append] is a compare-and-swap on
// that number, so two writers can never interleave one run's journal. Its
// leases carry [LockInfo] (who, where, which run, until when) so that a
// refused operator learns who holds the lock.
//
// Implementations live in subpackages: state/local (the embedded default,
// one directory on disk) and state/etcd (shared by a team). Every
// implementation must pass the conformance suite in state/statetest.
package state
