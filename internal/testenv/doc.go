// Package testenv gates tests that need something the machine may lack: root,
// a binary such as sshd or etcd, /dev/fuse. A missing requirement skips the
// test, unless TAKEOVER_TEST_DISALLOW_SKIP=1 (set by CI), in which case it
// fails: integration tests cannot quietly stop running.
package testenv
