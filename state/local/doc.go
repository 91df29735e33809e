// Package local is takeover's embedded default [state.Store]: journals and
// locks in one directory on the orchestrator's disk, shared safely by any
// number of takeover processes on that machine.
//
// # Layout
//
// The directory is created with mode 0700; an existing directory whose mode
// grants anything to group or others is refused (the error says to run
// chmod 700), because lock files name people, hosts and runs. Every file is
// created with mode 0600.
//
//	<dir>/runs/<run>.jsonl    the journal of one run
//	<dir>/locks/<name>.lock   one held lock, as state.LockInfo JSON
//
// # Journal
//
// A journal is append-only JSON lines, one record per line:
//
//	{"rec":{"run":"r1","seq":0,"phase":"run-started","at":"..."},"sum":"1a2b3c4d"}
//
// where sum is the CRC-32C (Castagnoli) of the exact bytes of the rec value,
// as eight lower-case hex digits. A CRC detects torn writes and bit rot; it is
// not meant to resist tampering (the directory's permissions are). At is
// stored in UTC with nanoseconds.
//
// [Store.Append] holds an exclusive flock(2) on the journal file while it
// reads the last record, compares sequence numbers and writes, so appends by
// several processes never interleave; the write is fsync'ed before Append
// returns, and the directory is fsync'ed when a journal file is created.
// Run ids must be usable as file names: a letter or digit, then up to 127
// letters, digits or ". _ - : @ + =" (so no path separators and no "..").
//
// A crash can tear the last line of a journal. Readers ignore a last line
// that lacks its newline or fails to decode or to match its checksum (and
// log a warning), and the next Append truncates it away before writing, so
// the file is valid again. The same damage on any other line is corruption:
// [Store.Records] returns an error wrapping [state.ErrCorrupt] that names the
// file and line number and says to restore the file from a backup or move it
// aside.
//
// # Locks
//
// A lock is a file holding the holder's [state.LockInfo]. Lock names are
// escaped into file names injectively (bytes other than letters, digits, '-',
// '_' and a non-leading '.' become %XX; very long names are shortened with a
// SHA-256 suffix). Every lock operation holds a flock(2) on the locks
// directory, so checking a holder and taking over is atomic across
// processes, and lock files are replaced atomically (temporary file, fsync,
// rename, fsync of the directory).
//
// A lock is live while it has not expired and, when its Host is this host,
// its PID is alive (kill(pid, 0) succeeds or fails with EPERM). Anything else
// is stale and is taken over by the next Lock. A Lease is not refreshed in
// the background: the holder calls Refresh before the TTL runs out. Refresh
// fails with [state.ErrLeaseLost], and closes Lost, when the file no longer
// holds the lease's ID (taken over or force-unlocked) or the lease has
// already expired. Release removes the file only if it still holds the
// lease's ID; it does not close Lost. Lock IDs are 128 random bits
// (crypto/rand) in hex.
package local
