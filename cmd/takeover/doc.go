// Command takeover gets a dead dedicated server's data serving again from a
// standby spare: it fences the server into the provider's rescue system,
// exports its disks to the spare, starts the services there and moves the
// failover IPs, as a journalled, resumable run of a named runbook.
//
// Errors are printed, with hints, in one place (main.go), and the exit
// status says what happened: 0 success, 1 error, 2 usage error (flags,
// arguments, invalid runbook), 3 a step failed and the run is saved for
// "takeover resume" or "takeover rollback", 11 a lock is held by another
// run (the holder is printed), 130 interrupted (journal flushed, locks
// released).
package main
