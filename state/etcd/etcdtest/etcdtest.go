package etcdtest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/takeover-dev/takeover/internal/testenv"
)

// startTimeout bounds how long Start and Restart wait for etcd to report
// itself healthy.
const startTimeout = 20 * time.Second

// Server is a running etcd test server. Its methods must be called from the
// test's goroutine, because they fail the test on error.
type Server struct {
	// Endpoints are the client addresses, "127.0.0.1:port".
	Endpoints []string
	// CAFile, CertFile and KeyFile are set by StartTLS: the CA that signed
	// the server's certificate, and a client certificate and key the server
	// requires.
	CAFile, CertFile, KeyFile string

	t          testing.TB
	bin        string
	nsenter    string // nsenter binary when opts.NetNS is set
	opts       Options
	dir        string
	clientPort int
	peerPort   int

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	out  *lockedBuffer
	pki  *pki // nil: plaintext
}

// Options select how [StartWith] runs etcd. The zero value is [Start].
type Options struct {
	// TLS makes clients speak TLS with a client certificate, as [StartTLS].
	TLS bool
	// NetNS, when set, is the path of a network namespace (for example
	// /run/netns/tk-ops) that etcd runs in, through nsenter --net=NetNS:
	// its 127.0.0.1 ports are that namespace's loopback, reachable only
	// by clients inside it. Entering a namespace needs root.
	NetNS string
}

// Start starts etcd on free loopback ports with a fresh data directory and
// waits until it is healthy. The server is stopped when t ends; if t failed,
// etcd's output is logged.
func Start(t testing.TB) *Server {
	t.Helper()
	return StartWith(t, Options{})
}

// StartTLS is like Start, but clients must speak TLS and present a
// certificate signed by the server's CA; the files are in CAFile, CertFile
// and KeyFile.
func StartTLS(t testing.TB) *Server {
	t.Helper()
	return StartWith(t, Options{TLS: true})
}

// StartWith is [Start] with options.
func StartWith(t testing.TB, opts Options) *Server {
	t.Helper()
	useTLS := opts.TLS
	bin := testenv.MustHaveCommand(t, "etcd")[0]
	var nsenter string
	if opts.NetNS != "" {
		testenv.MustHaveRoot(t)
		nsenter = testenv.MustHaveCommand(t, "nsenter")[0]
		testenv.MustHaveFile(t, opts.NetNS)
	}
	s := &Server{
		t:          t,
		bin:        bin,
		nsenter:    nsenter,
		opts:       opts,
		dir:        t.TempDir(),
		clientPort: freePort(t),
		peerPort:   freePort(t),
		out:        &lockedBuffer{},
	}
	s.Endpoints = []string{"127.0.0.1:" + strconv.Itoa(s.clientPort)}
	if useTLS {
		p := newPKI(t, s.dir)
		s.pki = &p
		s.CAFile, s.CertFile, s.KeyFile = p.caFile, p.clientCert, p.clientKey
	}
	t.Cleanup(func() {
		s.kill(syscall.SIGKILL)
		if t.Failed() {
			t.Logf("etcd output:\n%s", s.out.String())
		}
	})
	s.start()
	return s
}

// URL returns the store URL of this server with the given key prefix, as
// takeover's --state flag takes it: etcd://127.0.0.1:port/prefix, or for a
// TLS server etcds://127.0.0.1:port/prefix?ca=...&cert=...&key=....
func (s *Server) URL(prefix string) string {
	hosts := strings.Join(s.Endpoints, ",") + "/" + strings.TrimPrefix(prefix, "/")
	if s.pki == nil {
		return "etcd://" + hosts
	}
	q := url.Values{"ca": {s.CAFile}, "cert": {s.CertFile}, "key": {s.KeyFile}}
	return "etcds://" + hosts + "?" + q.Encode()
}

// Stop shuts etcd down (SIGTERM, then SIGKILL after 5 s) and waits for it to
// exit. Clients see the server as unreachable until Restart. Stopping a
// stopped server does nothing.
func (s *Server) Stop() {
	s.t.Helper()
	s.kill(syscall.SIGTERM)
}

// Kill stops etcd abruptly with SIGKILL, as a crash or power loss would.
func (s *Server) Kill() {
	s.t.Helper()
	s.kill(syscall.SIGKILL)
}

// Restart starts a stopped server again on the same ports and data
// directory and waits until it is healthy. Data written before Stop is
// still there.
func (s *Server) Restart() {
	s.t.Helper()
	s.mu.Lock()
	running := s.cmd != nil
	s.mu.Unlock()
	if running {
		s.t.Fatal("etcdtest: restart of a running server")
	}
	s.start()
}

func (s *Server) start() {
	s.t.Helper()
	scheme := "http://"
	if s.pki != nil {
		scheme = "https://"
	}
	client := scheme + "127.0.0.1:" + strconv.Itoa(s.clientPort)
	peer := "http://127.0.0.1:" + strconv.Itoa(s.peerPort)
	args := []string{
		"--name", "test",
		"--data-dir", filepath.Join(s.dir, "data"),
		"--listen-client-urls", client,
		"--advertise-client-urls", client,
		"--listen-peer-urls", peer,
		"--initial-advertise-peer-urls", peer,
		"--initial-cluster", "test=" + peer,
		"--initial-cluster-state", "new",
		// Short raft timers: a faster first election and a minimum lease
		// TTL of 1 s (etcd's minimum is 1.5 election timeouts, rounded up).
		"--heartbeat-interval", "10",
		"--election-timeout", "100",
		"--logger", "zap",
		"--log-outputs", "stderr",
		"--log-level", "warn",
	}
	hc := &http.Client{Timeout: 300 * time.Millisecond}
	if s.pki != nil {
		args = append(args,
			"--cert-file", s.pki.serverCert,
			"--key-file", s.pki.serverKey,
			"--trusted-ca-file", s.pki.caFile,
			"--client-cert-auth",
		)
		tc, err := s.pki.clientTLS()
		if err != nil {
			s.t.Fatalf("etcdtest: client TLS: %v", err)
		}
		hc.Transport = &http.Transport{TLSClientConfig: tc}
	}
	if s.opts.NetNS != "" {
		hc.Transport = s.nsTransport(hc.Transport)
	}
	cmd := exec.Command(s.bin, args...)
	if s.opts.NetNS != "" {
		// nsenter enters the namespace and execs etcd: cmd.Process is etcd.
		cmd = exec.Command(s.nsenter, append([]string{"--net=" + s.opts.NetNS, s.bin}, args...)...)
	}
	fmt.Fprintf(s.out, "--- start %s\n", time.Now().Format(time.RFC3339Nano))
	cmd.Stdout = s.out
	cmd.Stderr = s.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("etcdtest: start etcd: %v", err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()

	if err := waitHealthy(hc, client, done); err != nil {
		s.kill(syscall.SIGKILL)
		s.t.Fatalf("etcdtest: etcd on %s: %v\n%s", client, err, s.out.String())
	}
}

// waitHealthy polls etcd's /health endpoint with backoff until it reports a
// leader, the process exits, or startTimeout passes.
func waitHealthy(hc *http.Client, client string, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	defer hc.CloseIdleConnections()
	wait := 10 * time.Millisecond
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, client+"/health", nil)
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && bytes.Contains(body, []byte(`"health":"true"`)) {
				return nil
			}
			err = fmt.Errorf("health %s: %s", resp.Status, bytes.TrimSpace(body))
		}
		last = err
		select {
		case <-exited:
			return fmt.Errorf("etcd exited before it was healthy (last check: %v)", last)
		case <-ctx.Done():
			return fmt.Errorf("not healthy after %s: %v", startTimeout, last)
		case <-time.After(wait):
		}
		wait = min(2*wait, 200*time.Millisecond)
	}
}

func (s *Server) kill(sig syscall.Signal) {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd, s.done = nil, nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		<-done
	}
	fmt.Fprintf(s.out, "--- stopped (%s) %s\n", sig, time.Now().Format(time.RFC3339Nano))
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("etcdtest: find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// lockedBuffer collects etcd's output; the process writes it while the test
// may read it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
