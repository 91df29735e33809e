// Package providertest is the conformance suite of [provider.Provider]:
// every implementation runs [Run] against a world with a known primary
// server, a spare and a failover IP routed to the primary.
//
// The suite checks the contract stated on the interface: reads of servers,
// netboots (including choosing the rescue boot by kernel), idempotent
// updates, a reboot that yields a task which completes with the server up in
// the netboot that was set, ErrBusy for a reboot while a task is pending,
// IP route reads and moves (including the no-op move), ErrNotFound for
// unknown servers and tasks. With [Harness.ReadOnly] only the reads run, so
// the suite can be pointed at a real account.
package providertest
