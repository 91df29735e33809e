// Package sshdtest runs a real OpenSSH sshd for tests: a TCP listener on
// 127.0.0.1 that starts one `sshd -i` per connection with its own host
// keys, authorized_keys and configuration, all under t.TempDir().
//
// Reboot gives the server new host keys on the same address, as a rescue
// system does at every boot, and Stop/Start model a host that is down for a
// while. With Options.Hostname each sshd runs in its own UTS namespace
// under that hostname, so `hostname` answers like a rescue system.
//
// Start needs root and the sshd binary; without them the test is skipped,
// or fails when TAKEOVER_TEST_DISALLOW_SKIP=1 (see internal/testenv).
package sshdtest
