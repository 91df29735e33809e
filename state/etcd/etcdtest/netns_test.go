package etcdtest

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/takeover-dev/takeover/internal/testenv"
)

// TestNetNS runs etcd inside a network namespace of its own: it answers
// there on 127.0.0.1 and not on the host's loopback, and survives a
// Stop/Restart.
func TestNetNS(t *testing.T) {
	testenv.MustHaveRoot(t)
	testenv.MustHaveCommand(t, "ip", "nsenter")
	name := "etcdtest-" + strconv.Itoa(os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up in %s: %v: %s", name, err, out)
	}
	path := "/run/netns/" + name

	s := StartWith(t, Options{NetNS: path})
	inside := &http.Client{Transport: s.nsTransport(nil)}
	health := func(hc *http.Client) (string, error) {
		resp, err := hc.Get("http://" + s.Endpoints[0] + "/health")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	if body, err := health(inside); err != nil || !strings.Contains(body, `"health":"true"`) {
		t.Fatalf("health from inside %s: %q, %v", name, body, err)
	}
	if _, err := health(&http.Client{}); err == nil {
		t.Errorf("etcd in %s answers on the host's loopback %s", name, s.Endpoints[0])
	}
	// the process is etcd itself (nsenter execs it), in the namespace
	s.mu.Lock()
	pid := s.cmd.Process.Pid
	s.mu.Unlock()
	comm, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if got := strings.TrimSpace(string(comm)); got != "etcd" {
		t.Errorf("process %d is %q, want etcd", pid, got)
	}
	want, _ := os.Readlink("/proc/self/ns/net")
	if nsLink, _ := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/net"); nsLink == want {
		t.Errorf("etcd (pid %d) runs in the test's own network namespace %s", pid, nsLink)
	}
	s.Stop()
	if _, err := health(inside); err == nil {
		t.Fatal("stopped server still answers")
	}
	s.Restart()
	conn, err := dialIn(context.Background(), path, "tcp", s.Endpoints[0])
	if err != nil {
		t.Fatalf("restarted server: %v", err)
	}
	conn.Close()
}
