package sshdtest

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/takeover-dev/takeover/internal/testenv"
	"github.com/takeover-dev/takeover/steps/remote"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Options configure a Server. The zero value gives one ed25519 host key and
// one authorized ed25519 client key.
type Options struct {
	// HostKeyTypes lists the host keys to generate: "ed25519", "ecdsa",
	// "rsa". Default ed25519.
	HostKeyTypes []string
	// Hostname, if set, is what `hostname` says in sessions (needs unshare).
	Hostname string
	// ExtraConfig is appended to sshd_config.
	ExtraConfig string
}

// Server is a running (or stopped) sshd. Fields change only on Reboot.
type Server struct {
	Addr     string // 127.0.0.1:port, stable across Stop/Start/Reboot
	User     string // the user tests log in as (the current user)
	Dir      string
	HostKey  ssh.PublicKey   // the first of HostKeys
	HostKeys []ssh.PublicKey // one per Options.HostKeyTypes
	// HostKeyFile is the private host key file of HostKey.
	HostKeyFile        string
	ClientKeyFile      string     // an authorized private key file
	ClientKey          ssh.Signer // its signer
	AuthorizedKeysFile string
	ConfigFile         string
	LogFile            string // sshd's stderr (-e), all connections

	t       testing.TB
	opts    Options
	sshd    string
	unshare string
	boots   int

	mu    sync.Mutex
	ln    net.Listener
	procs map[*os.Process]bool
	wg    sync.WaitGroup
}

// New prepares a server with its keys, configuration and a reserved
// address, without listening yet (dials get "connection refused" until
// Start). It is stopped at test cleanup.
func New(t testing.TB, opts Options) *Server {
	t.Helper()
	testenv.MustHaveRoot(t)
	bins := testenv.MustHaveCommand(t, "sshd")
	s := &Server{t: t, opts: opts, sshd: bins[0], Dir: t.TempDir(), procs: map[*os.Process]bool{}}
	if !filepath.IsAbs(s.sshd) {
		abs, err := filepath.Abs(s.sshd)
		if err != nil {
			t.Fatal(err)
		}
		s.sshd = abs // sshd re-execs itself and needs an absolute path
	}
	if opts.Hostname != "" {
		s.unshare = testenv.MustHaveCommand(t, "unshare")[0]
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatalf("create privilege separation directory: %v", err)
	}
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	s.User = u.Username

	// Reserve a port; Start listens on it again.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Addr = ln.Addr().String()
	ln.Close()

	s.ClientKeyFile = filepath.Join(s.Dir, "client_key")
	s.ClientKey = GenerateKeyFile(t, s.ClientKeyFile, "ed25519")
	s.AuthorizedKeysFile = filepath.Join(s.Dir, "authorized_keys")
	if err := os.WriteFile(s.AuthorizedKeysFile, ssh.MarshalAuthorizedKey(s.ClientKey.PublicKey()), 0o600); err != nil {
		t.Fatal(err)
	}
	s.LogFile = filepath.Join(s.Dir, "sshd.log")
	s.newHostKeys()
	t.Cleanup(s.Stop)
	t.Cleanup(func() {
		if t.Failed() {
			if b, err := os.ReadFile(s.LogFile); err == nil {
				t.Logf("sshd log (%s):\n%s", s.LogFile, lastLines(string(b), 40))
			}
		}
	})
	return s
}

// Start returns a running server: New followed by Start.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	s := New(t, opts)
	s.Start()
	return s
}

// newHostKeys generates host keys (a new "boot") and rewrites the config.
func (s *Server) newHostKeys() {
	t := s.t
	t.Helper()
	s.boots++
	types := s.opts.HostKeyTypes
	if len(types) == 0 {
		types = []string{"ed25519"}
	}
	var cfg strings.Builder
	s.HostKeys = nil
	for i, typ := range types {
		file := filepath.Join(s.Dir, fmt.Sprintf("ssh_host_%s_key.boot%d", typ, s.boots))
		signer := GenerateKeyFile(t, file, typ)
		s.HostKeys = append(s.HostKeys, signer.PublicKey())
		if i == 0 {
			s.HostKey, s.HostKeyFile = signer.PublicKey(), file
		}
		fmt.Fprintf(&cfg, "HostKey %s\n", file)
	}
	fmt.Fprintf(&cfg, `PidFile %s
AuthorizedKeysFile %s
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
Subsystem sftp internal-sftp
LogLevel VERBOSE
`, filepath.Join(s.Dir, "sshd.pid"), s.AuthorizedKeysFile)
	cfg.WriteString(s.opts.ExtraConfig)
	s.ConfigFile = filepath.Join(s.Dir, "sshd_config")
	if err := os.WriteFile(s.ConfigFile, []byte(cfg.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(s.sshd, "-t", "-f", s.ConfigFile).CombinedOutput(); err != nil {
		t.Fatalf("sshd -t: %v\n%s", err, out)
	}
}

// Start listens on Addr and serves connections. It fails the test if the
// address cannot be bound.
func (s *Server) Start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return
	}
	ln, err := net.Listen("tcp", s.Addr)
	if err != nil {
		s.t.Fatalf("sshdtest: listen on %s: %v", s.Addr, err)
	}
	s.ln = ln
	s.wg.Add(1)
	go s.serve(ln)
}

func (s *Server) serve(ln net.Listener) {
	defer s.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handle(c.(*net.TCPConn))
		}()
	}
}

func (s *Server) handle(c *net.TCPConn) {
	f, err := c.File()
	c.Close()
	if err != nil {
		return
	}
	defer f.Close()
	logf, err := os.OpenFile(s.LogFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return
	}
	defer logf.Close()
	var cmd *exec.Cmd
	if s.opts.Hostname != "" {
		cmd = exec.Command(s.unshare, "--uts", "sh", "-c", `hostname "$1" && exec "$2" -i -e -f "$3"`,
			"sh", s.opts.Hostname, s.sshd, s.ConfigFile)
	} else {
		cmd = exec.Command(s.sshd, "-i", "-e", "-f", s.ConfigFile)
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = f, f, logf
	s.mu.Lock()
	if s.ln == nil { // stopped meanwhile
		s.mu.Unlock()
		return
	}
	if err := cmd.Start(); err != nil {
		s.mu.Unlock()
		fmt.Fprintf(logf, "sshdtest: start sshd: %v\n", err)
		return
	}
	s.procs[cmd.Process] = true
	s.mu.Unlock()
	f.Close()
	_ = cmd.Wait()
	s.mu.Lock()
	delete(s.procs, cmd.Process)
	s.mu.Unlock()
}

// Stop closes the listener and kills every sshd it started with all their
// descendants (sessions), like a host losing power. Dials are refused until
// Start. Safe to call more than once.
func (s *Server) Stop() {
	s.mu.Lock()
	if s.ln != nil {
		s.ln.Close()
		s.ln = nil
	}
	for p := range s.procs {
		for _, pid := range descendants(p.Pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		_ = p.Kill()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// Reboot stops the server, gives it new host keys (HostKey, HostKeys and
// HostKeyFile change) and starts it again on the same address: a rescue
// system booting again.
func (s *Server) Reboot() {
	s.t.Helper()
	s.Stop()
	s.newHostKeys()
	s.Start()
}

// Authorize adds key to the authorized keys.
func (s *Server) Authorize(key ssh.PublicKey) {
	s.t.Helper()
	f, err := os.OpenFile(s.AuthorizedKeysFile, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		s.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(ssh.MarshalAuthorizedKey(key)); err != nil {
		s.t.Fatal(err)
	}
}

// KnownHostsFile writes a known_hosts file listing the current host keys
// for Addr and returns its path.
func (s *Server) KnownHostsFile() string {
	s.t.Helper()
	var b strings.Builder
	for _, k := range s.HostKeys {
		b.WriteString(knownhosts.Line([]string{s.Addr}, k) + "\n")
	}
	file := filepath.Join(s.Dir, fmt.Sprintf("known_hosts.boot%d", s.boots))
	if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
		s.t.Fatal(err)
	}
	return file
}

// Target returns a remote.Target for this server: its address, user and
// client key, with the current host keys pinned.
func (s *Server) Target() remote.Target {
	return remote.Target{
		Addr:    s.Addr,
		User:    s.User,
		KeyFile: s.ClientKeyFile,
		HostKey: remote.PinnedPolicy(s.HostKeys...),
	}
}

// GenerateKeyFile writes a new unencrypted private key of type typ
// ("ed25519", "ecdsa", "rsa") in OpenSSH format to file (mode 0600) and
// returns its signer.
func GenerateKeyFile(t testing.TB, file, typ string) ssh.Signer {
	t.Helper()
	var priv any
	var err error
	switch typ {
	case "ed25519":
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	case "ecdsa":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "rsa":
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		err = fmt.Errorf("unknown key type %q", typ)
	}
	if err != nil {
		t.Fatalf("generate %s key: %v", typ, err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "sshdtest")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return signer
}

// descendants returns the pids of all processes below pid, deepest last.
func descendants(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	children := map[int][]int{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may contain spaces and parens.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 {
			continue
		}
		ppid, err := strconv.Atoi(f[1])
		if err != nil {
			continue
		}
		children[ppid] = append(children[ppid], p)
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
