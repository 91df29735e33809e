package remote

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// Target is a host to reach over SSH.
type Target struct {
	Addr       string // host:port
	User       string // default root
	KeyFile    string // unencrypted private key file; empty: the ssh-agent at $SSH_AUTH_SOCK
	KnownHosts string // known_hosts file, used when HostKey is nil
	// HostKey decides which host keys are accepted. When nil, KnownHosts
	// must be set and KnownHostsPolicy(KnownHosts) is used.
	HostKey HostKeyPolicy
}

// DialOptions tune Dial. The zero value is usable.
type DialOptions struct {
	// Wait bounds how long Dial keeps retrying a host that refuses or does
	// not answer (e.g. while it reboots). The context's deadline bounds it
	// too; with neither, Dial makes one attempt.
	Wait time.Duration
	// AttemptTimeout bounds one TCP connect plus SSH handshake; default 10s.
	AttemptTimeout time.Duration
	// KeepAlive is the interval of keepalive@openssh.com requests; the
	// connection is closed after 3 unanswered ones. Default 15s; negative
	// disables keepalives.
	KeepAlive time.Duration
	// Log receives attempt and keepalive diagnostics.
	Log zerolog.Logger
	// Dialer opens the TCP connection; default net.Dialer. Tests and
	// callers working inside a network namespace replace it.
	Dialer func(ctx context.Context, network, addr string) (net.Conn, error)
}

const (
	defaultAttemptTimeout = 10 * time.Second
	defaultKeepAlive      = 15 * time.Second
	keepAliveMisses       = 3
	firstBackoff          = 250 * time.Millisecond
	maxBackoff            = 5 * time.Second
)

// Client is an SSH connection to one host. It is safe for concurrent use.
type Client struct {
	addr    string
	user    string
	conn    *ssh.Client
	hostKey ssh.PublicKey
	log     zerolog.Logger

	done      chan struct{}
	closeOnce sync.Once
}

// permanentError marks an attempt failure that waiting cannot fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Dial connects to t, checking its host key with t's policy and
// authenticating with t's key file or the ssh-agent. Connection failures
// are retried with backoff (see DialOptions.Wait); host key refusals
// (ErrHostKeyMismatch, ErrHostKeyUnknown), authentication failures (ErrAuth)
// and local configuration errors are returned at once. Errors name the
// user and address.
func Dial(ctx context.Context, t Target, opts DialOptions) (*Client, error) {
	user := t.User
	if user == "" {
		user = "root"
	}
	who := user + "@" + t.Addr
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("ssh to %s: %w", who, err)
	}
	policy := t.HostKey
	if policy == nil {
		if t.KnownHosts == "" {
			return nil, fmt.Errorf("ssh to %s: no host key policy and no known_hosts file", who)
		}
		policy = KnownHostsPolicy(t.KnownHosts)
	}
	algos, err := policy.HostKeyAlgorithms(t.Addr)
	if err != nil {
		return nil, fmt.Errorf("ssh to %s: %w", who, err)
	}
	auth, closeAuth, err := authMethod(t.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("ssh to %s: %w", who, err)
	}
	defer closeAuth()

	if opts.AttemptTimeout <= 0 {
		opts.AttemptTimeout = defaultAttemptTimeout
	}
	if opts.Dialer == nil {
		var d net.Dialer
		opts.Dialer = d.DialContext
	}
	if opts.Wait > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.Wait)
		defer cancel()
	}
	_, retry := ctx.Deadline()

	start := time.Now()
	backoff := firstBackoff
	for attempt := 1; ; attempt++ {
		c, err := dialOnce(ctx, t.Addr, user, policy, algos, auth, opts)
		if err == nil {
			c.log = opts.Log
			c.startKeepAlive(opts.KeepAlive)
			opts.Log.Debug().Str("addr", t.Addr).Int("attempt", attempt).
				Str("host_key", Fingerprint(c.hostKey)).Msg("ssh connected")
			return c, nil
		}
		var perm *permanentError
		if errors.As(err, &perm) {
			return nil, fmt.Errorf("ssh to %s: %w", who, perm.err)
		}
		if !retry || ctx.Err() != nil {
			return nil, fmt.Errorf("ssh to %s: gave up after %d attempts in %s: %w",
				who, attempt, time.Since(start).Round(time.Millisecond), err)
		}
		opts.Log.Debug().Err(err).Str("addr", t.Addr).Int("attempt", attempt).
			Dur("backoff", backoff).Msg("ssh not reachable yet, retrying")
		timer := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, fmt.Errorf("ssh to %s: gave up after %d attempts in %s: %w",
				who, attempt, time.Since(start).Round(time.Millisecond), err)
		case <-timer.C:
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// authMethod returns the public key auth method for keyFile, or for the
// ssh-agent when keyFile is empty, and a function releasing it.
func authMethod(keyFile string) (ssh.AuthMethod, func(), error) {
	if keyFile != "" {
		signer, err := loadSigner(keyFile)
		if err != nil {
			return nil, nil, err
		}
		return ssh.PublicKeys(signer), func() {}, nil
	}
	sock := os.Getenv("SSH_AUTH_SOCK")
	if sock == "" {
		return nil, nil, errors.New("no key file and no ssh-agent (SSH_AUTH_SOCK is empty)")
	}
	conn, err := net.Dial("unix", sock)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to ssh-agent: %w", err)
	}
	return ssh.PublicKeysCallback(agent.NewClient(conn).Signers), func() { conn.Close() }, nil
}

func dialOnce(ctx context.Context, addr, user string, policy HostKeyPolicy, algos []string,
	auth ssh.AuthMethod, opts DialOptions) (*Client, error) {
	actx, cancel := context.WithTimeout(ctx, opts.AttemptTimeout)
	defer cancel()
	nc, err := opts.Dialer(actx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	// Bound the handshake by the attempt's deadline and cancellation.
	if dl, ok := actx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
	}
	stop := context.AfterFunc(actx, func() { nc.Close() })

	var hostKey ssh.PublicKey
	var hostKeyErr error
	cfg := &ssh.ClientConfig{
		User: user,
		Auth: []ssh.AuthMethod{auth},
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			hostKeyErr = policy.CheckHostKey(addr, key)
			if hostKeyErr == nil {
				hostKey = key
			}
			return hostKeyErr
		},
		HostKeyAlgorithms: algos,
		Timeout:           opts.AttemptTimeout,
	}
	sc, chans, reqs, err := ssh.NewClientConn(nc, addr, cfg)
	if !stop() {
		// The attempt timed out or ctx was cancelled while handshaking.
		if err == nil {
			sc.Close()
		}
		nc.Close()
		if err == nil {
			err = actx.Err()
		}
		if hostKeyErr != nil {
			return nil, &permanentError{hostKeyErr}
		}
		return nil, err
	}
	if err != nil {
		nc.Close()
		switch {
		case hostKeyErr != nil:
			return nil, &permanentError{hostKeyErr}
		case hostKey != nil && strings.Contains(err.Error(), "unable to authenticate"):
			return nil, &permanentError{fmt.Errorf("%w: server refused the offered keys", ErrAuth)}
		}
		return nil, err
	}
	_ = nc.SetDeadline(time.Time{})
	return &Client{
		addr:    addr,
		user:    user,
		conn:    ssh.NewClient(sc, chans, reqs),
		hostKey: hostKey,
		done:    make(chan struct{}),
	}, nil
}

func (c *Client) startKeepAlive(every time.Duration) {
	if every < 0 {
		return
	}
	if every == 0 {
		every = defaultKeepAlive
	}
	go c.keepAlive(every)
	go func() {
		// Mark the client done when the connection ends for any reason.
		_ = c.conn.Wait()
		c.closeOnce.Do(func() { close(c.done) })
	}()
}

func (c *Client) keepAlive(every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	missed := 0
	for {
		select {
		case <-c.done:
			return
		case <-tick.C:
		}
		reply := make(chan error, 1)
		go func() {
			_, _, err := c.conn.SendRequest("keepalive@openssh.com", true, nil)
			reply <- err
		}()
		select {
		case <-c.done:
			return
		case err := <-reply:
			if err != nil {
				return // the connection is gone; Wait reports it
			}
			missed = 0
		case <-tick.C:
			missed++
			if missed >= keepAliveMisses {
				c.log.Warn().Str("addr", c.addr).Int("missed", missed).
					Msg("ssh keepalives unanswered, closing connection")
				c.conn.Close()
				return
			}
		}
	}
}

// Addr returns the address dialled (host:port).
func (c *Client) Addr() string { return c.addr }

// HostKey returns the host key the server presented and the policy accepted.
func (c *Client) HostKey() ssh.PublicKey { return c.hostKey }

// SSH returns the underlying connection, e.g. for port forwarding. Closing
// it closes the Client.
func (c *Client) SSH() *ssh.Client { return c.conn }

// Wait blocks until the connection ends (Close, keepalive failure, server
// gone) and returns why.
func (c *Client) Wait() error { return c.conn.Wait() }

// Close closes the connection; running commands and transfers fail. It is
// safe to call more than once.
func (c *Client) Close() error {
	err := c.conn.Close()
	c.closeOnce.Do(func() { close(c.done) })
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
