// Package etcdtest runs a real, single-member etcd server for tests: the
// Debian etcd-server binary, listening on 127.0.0.1 only, with a data
// directory under t.TempDir.
//
// [Start] skips the test (or fails it when TAKEOVER_TEST_DISALLOW_SKIP=1)
// if no etcd binary is on PATH. The server is killed when the test ends.
// [Server.Stop] and [Server.Restart] bring the same server down and back up
// on the same ports and data directory, so tests can check what a Store does
// while etcd is unreachable and that it recovers afterwards.
//
// [StartWith] takes [Options]; Options.NetNS runs etcd inside a network
// namespace (through nsenter --net), so that it serves the loopback of, say,
// a lab's orchestrator namespace rather than the host's.
//
// The server runs with short raft timers, which lowers etcd's minimum lease
// TTL to one second; production servers usually have a minimum of two.
package etcdtest
