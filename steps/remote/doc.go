// Package remote runs commands and transfers files on hosts over SSH.
//
// Every connection checks the server's host key through a HostKeyPolicy:
// a known_hosts file (KnownHostsPolicy), keys given by the provider
// (PinnedPolicy), or trust on first use for rescue systems (TOFU), which
// records the first key it sees and refuses any other key for the rest of
// that boot. There is no way to skip the check.
//
// Dial waits for a host that is still booting: it retries refused and timed
// out connections with backoff until the context's deadline or
// DialOptions.Wait, and it never retries an authentication failure or a host
// key refusal (ErrAuth, ErrHostKeyMismatch, ErrHostKeyUnknown), because
// neither heals by waiting.
//
// A Client is safe for concurrent use: each Run opens its own session and
// each file transfer its own SFTP subsystem. Cancelling the context of a Run
// sends SIGKILL to the remote command and closes its session; cancelling a
// transfer closes its SFTP session. Command output is capped (OutputLimit) so
// a runaway command cannot exhaust memory.
//
// Command lines are logged at debug level; never put secrets in them, pass
// secrets on stdin or with WriteFile instead.
package remote
