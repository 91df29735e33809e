// Package e2e holds end-to-end tests of the takeover command: the real CLI
// binary, built once by the tests, driving real takeovers in a real lab
// (provider/sim/lab: network namespaces, OpenSSH, nbd-server, nbdfuse and
// the OVH simulator as a daemon), run as root.
//
// The tests kill a run with SIGKILL at chosen points of its journal (after
// the fence, after the export, while an IP move is in flight) and check that
// "takeover resume" finishes it with exactly one reboot of the primary and
// one move of the failover IP, as counted by the simulator's
// GET /_sim/counters, and that "takeover rollback" puts the world back as it
// was. With a real etcd in the lab's orchestrator namespace they check that
// a second invocation sees a killed run and its stale lock and resumes it,
// and that a run stops without further side effects when etcd goes away.
//
// Every test builds its own lab (prefix "tke-", subnets 10.219-10.221, a
// directory under t.TempDir) and tears it down, checking that nothing is
// left. They need root, /dev/fuse and the binaries sshd, nbd-server,
// nbdfuse, etcd and busybox; without them they skip, or fail when
// TAKEOVER_TEST_DISALLOW_SKIP=1. The package has no non-test code.
package e2e
