// Package steps is takeover's step machine and the steps of a takeover.
//
// A [Step] is a typed value with a stable name, a Check that only observes,
// an idempotent Do and an Undo. A [Plan] orders steps by their dependencies;
// the [Runner] executes it, running independent steps in parallel, and
// writes the journal (see package state) before every side effect and after
// it. Because every transition is journalled and every Do is safe to repeat,
// a run interrupted at any point (a crash, SIGKILL, a lost lease) can be
// resumed by anyone with access to the store: Resume reloads the journal,
// re-Checks every step (a "done" record is never trusted blindly) and goes
// on from the first unfinished step. Rollback runs Undo of the steps that
// started, in reverse order of completion.
//
// Finalizers are steps that always run once when a run reaches its end
// (complete or rolled back), and are journalled like any other step.
package steps
