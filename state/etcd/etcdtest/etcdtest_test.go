package etcdtest_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/takeover-dev/takeover/state/etcd/etcdtest"
)

func health(t *testing.T, s *etcdtest.Server) error {
	t.Helper()
	resp, err := http.Get("http://" + s.Endpoints[0] + "/health")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if !strings.Contains(string(body), `"health":"true"`) {
		t.Fatalf("health of %s: %s", s.Endpoints[0], body)
	}
	return nil
}

func TestStopRestart(t *testing.T) {
	s := etcdtest.Start(t)
	if err := health(t, s); err != nil {
		t.Fatalf("started server: %v", err)
	}
	s.Stop()
	if err := health(t, s); err == nil {
		t.Fatal("stopped server still answers")
	}
	s.Stop() // stopping twice is harmless
	s.Restart()
	if err := health(t, s); err != nil {
		t.Fatalf("restarted server: %v", err)
	}
	s.Kill()
	s.Restart()
	if err := health(t, s); err != nil {
		t.Fatalf("server restarted after kill: %v", err)
	}
	if got, want := s.URL("/team"), "etcd://"+s.Endpoints[0]+"/team"; got != want {
		t.Errorf("URL = %q, want %q", got, want)
	}
}

func TestStartTLS(t *testing.T) {
	s := etcdtest.StartTLS(t)
	// Plain HTTP is refused by a TLS server.
	if err := health(t, s); err == nil {
		t.Fatal("TLS server answered plain HTTP")
	}
	if !strings.HasPrefix(s.URL("p"), "etcds://"+s.Endpoints[0]+"/p?ca=") {
		t.Errorf("URL = %q", s.URL("p"))
	}
	s.Stop()
	s.Restart()
}
