// Package provider defines the hosting-provider verbs a takeover needs, behind
// one [Provider] interface: read a server, choose its netboot, set the rescue
// key, hard-reboot it (the fencing primitive), poll tasks, and read and move
// failover IPs.
//
// Every method is safe to repeat: a call whose effect is already in place
// returns nil (or the task already under way). Errors wrap one of the
// sentinels of this package ([ErrNotFound], [ErrBusy], [ErrAuth],
// [ErrPermanent], [ErrUnknownOutcome]) so callers decide with errors.Is, while
// the native error (for OVH, *ovh.APIError with its query id) stays reachable
// with errors.As.
//
// Non-idempotent calls (Reboot, MoveIP) are never retried blindly by an
// implementation: when their outcome is unknown an implementation observes
// the provider's task list to learn whether the call took effect, and if it
// still cannot tell it returns an error wrapping [ErrUnknownOutcome].
//
// Implementations: provider/ovh (the real OVH API through go-ovh) and
// provider/sim (an OVH API simulator speaking the same wire protocol). The
// conformance suite is provider/providertest.
package provider
