package remote_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"
	"github.com/takeover-dev/takeover/steps/remote"
	"github.com/takeover-dev/takeover/steps/remote/sshdtest"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

func testOpts(t *testing.T) remote.DialOptions {
	return remote.DialOptions{Log: zerolog.New(zerolog.NewTestWriter(t))}
}

func dial(t *testing.T, tg remote.Target, opts remote.DialOptions) *remote.Client {
	t.Helper()
	c, err := remote.Dial(t.Context(), tg, opts)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// countingDialer counts TCP connection attempts.
type countingDialer struct {
	n     atomic.Int32
	inner net.Dialer
}

func (d *countingDialer) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	d.n.Add(1)
	return d.inner.DialContext(ctx, network, addr)
}

func TestRun(t *testing.T) {
	srv := sshdtest.Start(t, sshdtest.Options{})
	c := dial(t, srv.Target(), testOpts(t))
	if got := remote.Fingerprint(c.HostKey()); got != remote.Fingerprint(srv.HostKey) {
		t.Errorf("HostKey() = %s, want %s", got, remote.Fingerprint(srv.HostKey))
	}
	tests := []struct {
		name    string
		cmd     string
		stdin   string
		want    remote.Result
		wantErr bool
	}{
		{name: "ok", cmd: "echo hello; echo oops >&2",
			want: remote.Result{Stdout: []byte("hello\n"), Stderr: []byte("oops\n")}},
		{name: "stdin", cmd: "tr a-z A-Z", stdin: "shout\n",
			want: remote.Result{Stdout: []byte("SHOUT\n")}},
		{name: "exit code", cmd: "echo partial; echo broken disk >&2; exit 3", wantErr: true,
			want: remote.Result{Stdout: []byte("partial\n"), Stderr: []byte("broken disk\n"), ExitCode: 3}},
		{name: "killed by signal", cmd: "kill -TERM $$", wantErr: true,
			want: remote.Result{ExitCode: 128 + 15}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdin *strings.Reader
			if tt.stdin != "" {
				stdin = strings.NewReader(tt.stdin)
			}
			var res remote.Result
			var err error
			if stdin != nil {
				res, err = c.Run(t.Context(), tt.cmd, stdin)
			} else {
				res, err = c.Run(t.Context(), tt.cmd, nil)
			}
			if (err != nil) != tt.wantErr {
				t.Fatalf("Run(%q) error = %v, wantErr %v", tt.cmd, err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, res, cmp.Comparer(func(a, b []byte) bool { return bytes.Equal(a, b) })); diff != "" {
				t.Errorf("Run(%q) result (-want +got):\n%s", tt.cmd, diff)
			}
			if err != nil {
				var ee *remote.ExitError
				if !errors.As(err, &ee) {
					t.Fatalf("error %v is not an *ExitError", err)
				}
				if ee.Code != tt.want.ExitCode || ee.Cmd != tt.cmd || ee.Addr != srv.Addr {
					t.Errorf("ExitError = %+v", ee)
				}
				if want := strings.TrimSpace(string(tt.want.Stderr)); ee.Stderr != want {
					t.Errorf("ExitError.Stderr = %q, want %q", ee.Stderr, want)
				}
			}
		})
	}
	if err := c.RunQuiet(t.Context(), "false"); err == nil {
		t.Error("RunQuiet(false) succeeded")
	}
	if err := c.RunQuiet(t.Context(), "true"); err != nil {
		t.Errorf("RunQuiet(true): %v", err)
	}
}

func TestRunCancelKillsCommand(t *testing.T) {
	srv := sshdtest.Start(t, sshdtest.Options{})
	c := dial(t, srv.Target(), testOpts(t))
	const marker = "sleep 300.4242"
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		_, err := c.Run(ctx, "echo started; "+marker+" | cat", nil)
		errc <- err
	}()
	// Wait until the command runs, then cancel.
	waitFor(t, c, "pgrep -f 'sleep 300[.]4242'")
	cancel()
	err := <-errc
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run after cancel: %v, want context.Canceled", err)
	}
	// The remote process must be gone (it would live 300 s otherwise).
	waitFor(t, c, "! pgrep -f 'sleep 300[.]4242'")
}

// waitFor runs cmd until it succeeds, failing the test after 20 s.
func waitFor(t *testing.T, c *remote.Client, cmd string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for {
		err := c.RunQuiet(ctx, cmd)
		if err == nil {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("%q never succeeded: %v", cmd, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestKnownHosts(t *testing.T) {
	srv := sshdtest.Start(t, sshdtest.Options{HostKeyTypes: []string{"ed25519", "rsa"}})
	other := sshdtest.GenerateKeyFile(t, filepath.Join(t.TempDir(), "k"), "ed25519").PublicKey()
	good := srv.KnownHostsFile()
	unknown := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(unknown, []byte("[127.0.0.2]:22 "+string(ssh.MarshalAuthorizedKey(other))), 0o600); err != nil {
		t.Fatal(err)
	}
	wrong := filepath.Join(t.TempDir(), "known_hosts_wrong")
	if err := os.WriteFile(wrong, []byte(knownHostsLine(srv.Addr, other)), 0o600); err != nil {
		t.Fatal(err)
	}
	// Only the RSA key is known: the policy must make the server present it.
	rsaOnly := filepath.Join(t.TempDir(), "known_hosts_rsa")
	if err := os.WriteFile(rsaOnly, []byte(knownHostsLine(srv.Addr, srv.HostKeys[1])), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		file    string
		wantErr error
		wantKey ssh.PublicKey
	}{
		{name: "accept", file: good, wantKey: srv.HostKeys[0]},
		{name: "rsa only known", file: rsaOnly, wantKey: srv.HostKeys[1]},
		{name: "mismatch", file: wrong, wantErr: remote.ErrHostKeyMismatch},
		{name: "unknown host", file: unknown, wantErr: remote.ErrHostKeyUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg := srv.Target()
			tg.HostKey = nil
			tg.KnownHosts = tt.file
			var d countingDialer
			opts := testOpts(t)
			opts.Dialer, opts.Wait = d.Dial, time.Minute
			c, err := remote.Dial(t.Context(), tg, opts)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Dial error = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				if !strings.Contains(err.Error(), srv.Addr) {
					t.Errorf("error %q does not name %s", err, srv.Addr)
				}
				if n := d.n.Load(); n != 1 {
					t.Errorf("%d dial attempts, want 1 (no retry on host key refusal)", n)
				}
				return
			}
			defer c.Close()
			if got, want := remote.Fingerprint(c.HostKey()), remote.Fingerprint(tt.wantKey); got != want {
				t.Errorf("host key %s, want %s", got, want)
			}
		})
	}
}

func knownHostsLine(addr string, key ssh.PublicKey) string {
	host, port, _ := net.SplitHostPort(addr)
	return "[" + host + "]:" + port + " " + string(ssh.MarshalAuthorizedKey(key))
}

func TestTOFUAcrossRescueReboot(t *testing.T) {
	srv := sshdtest.Start(t, sshdtest.Options{Hostname: "rescue-test"})
	var recorded []string
	tofu := &remote.TOFU{OnFirst: func(k ssh.PublicKey) error {
		recorded = append(recorded, remote.Fingerprint(k))
		return nil
	}}
	tg := srv.Target()
	tg.HostKey = tofu

	c := dial(t, tg, testOpts(t))
	res, err := c.Run(t.Context(), "hostname", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(res.Stdout)); got != "rescue-test" {
		t.Errorf("hostname = %q, want rescue-test", got)
	}
	c.Close()
	c = dial(t, tg, testOpts(t)) // same boot, same key
	c.Close()
	if diff := cmp.Diff([]string{remote.Fingerprint(srv.HostKey)}, recorded); diff != "" {
		t.Errorf("OnFirst calls (-want +got):\n%s", diff)
	}
	first := srv.HostKey

	srv.Reboot() // new host key on the same address
	_, err = remote.Dial(t.Context(), tg, testOpts(t))
	if !errors.Is(err, remote.ErrHostKeyMismatch) {
		t.Fatalf("Dial after host key change: %v, want ErrHostKeyMismatch", err)
	}
	want := "host key of " + srv.Addr + " changed within one rescue boot: expected " +
		remote.Fingerprint(first) + ", got " + remote.Fingerprint(srv.HostKey) + "; refusing"
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q\nlacks %q", err, want)
	}
	if len(recorded) != 1 {
		t.Errorf("OnFirst called %d times, want 1", len(recorded))
	}
}

func TestTOFURefuses(t *testing.T) {
	srv := sshdtest.Start(t, sshdtest.Options{})
	tests := []struct {
		name string
		tofu *remote.TOFU
		want error
	}{
		{name: "forbidden key (the primary's normal key)",
			tofu: &remote.TOFU{Forbidden: []ssh.PublicKey{srv.HostKey}}, want: remote.ErrHostKeyMismatch},
		{name: "recording fails",
			tofu: &remote.TOFU{OnFirst: func(ssh.PublicKey) error { return errJournal }}, want: errJournal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg := srv.Target()
			tg.HostKey = tt.tofu
			var d countingDialer
			opts := testOpts(t)
			opts.Dialer, opts.Wait = d.Dial, time.Minute
			_, err := remote.Dial(t.Context(), tg, opts)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Dial: %v, want %v", err, tt.want)
			}
			if tt.tofu.Key() != nil {
				t.Errorf("refused key was recorded")
			}
			if n := d.n.Load(); n != 1 {
				t.Errorf("%d dial attempts, want 1", n)
			}
		})
	}
}

var errJournal = errors.New("journal unavailable")

func TestWrongClientKeyNoRetry(t *testing.T) {
	srv := sshdtest.Start(t, sshdtest.Options{})
	tg := srv.Target()
	tg.KeyFile = filepath.Join(t.TempDir(), "stranger")
	sshdtest.GenerateKeyFile(t, tg.KeyFile, "ed25519")
	var d countingDialer
	opts := testOpts(t)
	opts.Dialer, opts.Wait = d.Dial, time.Minute
	_, err := remote.Dial(t.Context(), tg, opts)
	if !errors.Is(err, remote.ErrAuth) {
		t.Fatalf("Dial with unauthorized key: %v, want ErrAuth", err)
	}
	if !strings.Contains(err.Error(), srv.Addr) {
		t.Errorf("error %q does not name the address", err)
	}
	if n := d.n.Load(); n != 1 {
		t.Errorf("%d dial attempts, want 1", n)
	}
}

func TestDialWaitsForHost(t *testing.T) {
	srv := sshdtest.New(t, sshdtest.Options{}) // not listening yet
	refused := make(chan struct{})
	var once sync.Once
	var n atomic.Int32
	var inner net.Dialer
	opts := testOpts(t)
	opts.Wait = time.Minute
	opts.Dialer = func(ctx context.Context, network, addr string) (net.Conn, error) {
		n.Add(1)
		conn, err := inner.DialContext(ctx, network, addr)
		if err != nil {
			once.Do(func() { close(refused) })
		}
		return conn, err
	}
	type result struct {
		c   *remote.Client
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := remote.Dial(t.Context(), srv.Target(), opts)
		done <- result{c, err}
	}()
	<-refused
	srv.Start() // the host comes up
	r := <-done
	if r.err != nil {
		t.Fatalf("Dial: %v", r.err)
	}
	defer r.c.Close()
	if got := n.Load(); got < 2 {
		t.Errorf("%d attempts, want at least 2", got)
	}
	if err := r.c.RunQuiet(t.Context(), "true"); err != nil {
		t.Error(err)
	}
}

func TestDialGivesUp(t *testing.T) {
	srv := sshdtest.New(t, sshdtest.Options{}) // never started
	ctx, cancel := context.WithTimeout(t.Context(), 600*time.Millisecond)
	defer cancel()
	_, err := remote.Dial(ctx, srv.Target(), testOpts(t))
	if err == nil || !strings.Contains(err.Error(), "gave up after") {
		t.Fatalf("Dial to a closed port: %v, want a give-up error", err)
	}
	if errors.Is(err, remote.ErrAuth) || errors.Is(err, remote.ErrHostKeyMismatch) {
		t.Errorf("unreachable classified as %v", err)
	}
}

func TestSFTPRoundTrip(t *testing.T) {
	srv := sshdtest.Start(t, sshdtest.Options{})
	c := dial(t, srv.Target(), testOpts(t))
	dir := t.TempDir() // same machine: the remote side sees it too
	data := make([]byte, 3<<20+17)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "blob")
	if err := os.WriteFile(p, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := c.Upload(t.Context(), bytes.NewReader(data), p, 0o600); err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if err := c.Download(t.Context(), p, &got); err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(got.Bytes()) != sha256.Sum256(data) {
		t.Fatalf("downloaded %d bytes differ from the %d uploaded", got.Len(), len(data))
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	if err := c.WriteFile(t.Context(), filepath.Join(dir, "small"), []byte("hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := c.ReadFile(t.Context(), filepath.Join(dir, "small"))
	if err != nil || string(b) != "hi\n" {
		t.Errorf("ReadFile = %q, %v", b, err)
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if diff := cmp.Diff([]string{"blob", "small"}, names); diff != "" {
		t.Errorf("files left (-want +got):\n%s", diff)
	}
	// Failures name the path and leave no temporary file behind.
	err = c.WriteFile(t.Context(), filepath.Join(dir, "nodir", "x"), []byte("x"), 0o644)
	if err == nil || !strings.Contains(err.Error(), "nodir/x") {
		t.Errorf("WriteFile into a missing directory: %v", err)
	}
	if _, err := c.ReadFile(t.Context(), filepath.Join(dir, "absent")); err == nil {
		t.Error("ReadFile of a missing file succeeded")
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := c.WriteFile(ctx, filepath.Join(dir, "late"), []byte("x"), 0o644); !errors.Is(err, context.Canceled) {
		t.Errorf("WriteFile with cancelled ctx: %v", err)
	}
}

func TestAgentAuth(t *testing.T) {
	srv := sshdtest.Start(t, sshdtest.Options{})
	raw, err := ssh.ParseRawPrivateKey(mustRead(t, srv.ClientKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	keyring := agent.NewKeyring()
	if err := keyring.Add(agent.AddedKey{PrivateKey: raw}); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				_ = agent.ServeAgent(keyring, conn)
			}()
		}
	}()
	t.Setenv("SSH_AUTH_SOCK", sock)
	tg := srv.Target()
	tg.KeyFile = ""
	c := dial(t, tg, testOpts(t))
	if err := c.RunQuiet(t.Context(), "true"); err != nil {
		t.Fatal(err)
	}

	t.Setenv("SSH_AUTH_SOCK", "")
	if _, err := remote.Dial(t.Context(), tg, testOpts(t)); err == nil {
		t.Error("Dial without key file and agent succeeded")
	}
}

func mustRead(t *testing.T, file string) []byte {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPublicKeyOf(t *testing.T) {
	file := filepath.Join(t.TempDir(), "k")
	signer := sshdtest.GenerateKeyFile(t, file, "ed25519")
	line, err := remote.PublicKeyOf(file)
	if err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(line, "\n") || !strings.HasPrefix(line, "ssh-ed25519 ") {
		t.Errorf("PublicKeyOf = %q", line)
	}
	key, err := remote.ParseAuthorizedKey(line)
	if err != nil {
		t.Fatal(err)
	}
	if remote.Fingerprint(key) != remote.Fingerprint(signer.PublicKey()) {
		t.Error("PublicKeyOf returned another key")
	}
	if _, err := remote.PublicKeyOf(filepath.Join(t.TempDir(), "absent")); err == nil {
		t.Error("PublicKeyOf(absent) succeeded")
	}
	if _, err := remote.ParseAuthorizedKey("ssh-ed25519 garbage"); err == nil {
		t.Error("ParseAuthorizedKey(garbage) succeeded")
	}
}

func TestPinnedPolicy(t *testing.T) {
	srv := sshdtest.Start(t, sshdtest.Options{HostKeyTypes: []string{"ed25519", "ecdsa"}})
	other := sshdtest.GenerateKeyFile(t, filepath.Join(t.TempDir(), "k"), "ed25519").PublicKey()
	tests := []struct {
		name    string
		keys    []ssh.PublicKey
		want    error
		wantKey ssh.PublicKey
	}{
		{name: "pinned ecdsa", keys: []ssh.PublicKey{srv.HostKeys[1]}, wantKey: srv.HostKeys[1]},
		{name: "other key", keys: []ssh.PublicKey{other}, want: remote.ErrHostKeyMismatch},
		{name: "no keys", want: remote.ErrHostKeyUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg := srv.Target()
			tg.HostKey = remote.PinnedPolicy(tt.keys...)
			c, err := remote.Dial(t.Context(), tg, testOpts(t))
			if !errors.Is(err, tt.want) {
				t.Fatalf("Dial: %v, want %v", err, tt.want)
			}
			if err == nil {
				defer c.Close()
				if remote.Fingerprint(c.HostKey()) != remote.Fingerprint(tt.wantKey) {
					t.Errorf("host key %s", remote.Fingerprint(c.HostKey()))
				}
			}
		})
	}
}

// freezeConn stops delivering data once frozen, like a host that vanished
// without closing the connection.
type freezeConn struct {
	net.Conn
	frozen chan struct{}
	closed chan struct{}
	once   sync.Once
}

func (c *freezeConn) Read(p []byte) (int, error) {
	select {
	case <-c.frozen:
		<-c.closed
		return 0, net.ErrClosed
	default:
	}
	return c.Conn.Read(p)
}

func (c *freezeConn) Write(p []byte) (int, error) {
	select {
	case <-c.frozen:
		return len(p), nil // swallowed
	default:
	}
	return c.Conn.Write(p)
}

func (c *freezeConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

func TestKeepAliveClosesDeadConnection(t *testing.T) {
	srv := sshdtest.Start(t, sshdtest.Options{})
	frozen := make(chan struct{})
	var inner net.Dialer
	opts := testOpts(t)
	opts.KeepAlive = 20 * time.Millisecond
	opts.Dialer = func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := inner.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &freezeConn{Conn: conn, frozen: frozen, closed: make(chan struct{})}, nil
	}
	c := dial(t, srv.Target(), opts)
	if err := c.RunQuiet(t.Context(), "true"); err != nil {
		t.Fatal(err)
	}
	close(frozen)
	waited := make(chan struct{})
	go func() { c.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(30 * time.Second):
		t.Fatal("connection not closed after keepalives went unanswered")
	}
}
