package steps

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/takeover-dev/takeover/runbooks"
	"github.com/takeover-dev/takeover/steps/remote"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Hosts holds the SSH connections of a run: to the spare (checked against
// its known_hosts), to the primary's normal OS (planned mode), and to the
// primary's rescue system, whose host key is new at every boot: it is
// trusted on first contact by the confirm-rescue step, journalled, and
// pinned for the rest of the run.
type Hosts struct {
	rb  *runbooks.Runbook
	log zerolog.Logger
	// Dialer, if set, opens TCP connections (tests, network namespaces).
	Dialer func(ctx context.Context, network, addr string) (net.Conn, error)

	mu      sync.Mutex
	spare   *remote.Client
	primary *remote.Client
	rescue  *remote.Client
}

// NewHosts returns an empty connection set for rb.
func NewHosts(rb *runbooks.Runbook, log zerolog.Logger) *Hosts {
	return &Hosts{rb: rb, log: log}
}

// Close closes every connection.
func (h *Hosts) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range []*remote.Client{h.spare, h.primary, h.rescue} {
		if c != nil {
			c.Close()
		}
	}
	h.spare, h.primary, h.rescue = nil, nil, nil
}

func (h *Hosts) opts(wait time.Duration) remote.DialOptions {
	return remote.DialOptions{Wait: wait, Log: h.log, Dialer: h.Dialer}
}

// alive reports whether a cached client still answers.
func alive(c *remote.Client) bool {
	if c == nil {
		return false
	}
	_, _, err := c.SSH().SendRequest("keepalive@openssh.com", true, nil)
	return err == nil
}

func expand(p string) string {
	if p == "" {
		return ""
	}
	if x, err := runbooks.ExpandPath(p); err == nil {
		return x
	}
	return p
}

// Spare returns a connection to the spare.
func (h *Hosts) Spare(ctx context.Context) (*remote.Client, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if alive(h.spare) {
		return h.spare, nil
	}
	s := h.rb.Spare.SSH
	c, err := remote.Dial(ctx, remote.Target{Addr: s.Address, User: s.User, KeyFile: expand(s.Key), KnownHosts: expand(s.KnownHosts)}, h.opts(30*time.Second))
	if err != nil {
		return nil, fmt.Errorf("ssh to spare %s: %w", h.rb.Spare.Server, err)
	}
	h.spare = c
	return c, nil
}

// Primary returns a connection to the primary's normal OS (runbook
// primary.ssh), used in planned mode and to wait for it after failback.
func (h *Hosts) Primary(ctx context.Context, wait time.Duration) (*remote.Client, error) {
	if h.rb.Primary.SSH == nil {
		return nil, fmt.Errorf("runbook %s has no primary.ssh: the primary's normal OS cannot be reached", h.rb.Name)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if alive(h.primary) {
		return h.primary, nil
	}
	s := h.rb.Primary.SSH
	c, err := remote.Dial(ctx, remote.Target{Addr: s.Address, User: s.User, KeyFile: expand(s.Key), KnownHosts: expand(s.KnownHosts)}, h.opts(wait))
	if err != nil {
		return nil, fmt.Errorf("ssh to primary %s (normal OS): %w", h.rb.Primary.Server, err)
	}
	h.primary = c
	return c, nil
}

// DropPrimary forgets the connection to the primary's normal OS (it is
// about to reboot).
func (h *Hosts) DropPrimary() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.primary != nil {
		h.primary.Close()
		h.primary = nil
	}
}

// DropRescue forgets the rescue connection (the primary is about to reboot).
func (h *Hosts) DropRescue() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.rescue != nil {
		h.rescue.Close()
		h.rescue = nil
	}
}

// rescueAddr is where the rescue system's sshd answers.
func (h *Hosts) rescueAddr() string {
	port := h.rb.Primary.Rescue.Port
	if port == 0 {
		port = 22
	}
	return net.JoinHostPort(h.rb.Primary.Address.String(), strconv.Itoa(port))
}

// normalHostKeys returns the primary's normal-OS host keys from its
// known_hosts file, if the runbook gives one: a rescue system presenting
// one of them is not the rescue system.
func (h *Hosts) normalHostKeys() ([]ssh.PublicKey, error) {
	if h.rb.Primary.SSH == nil || h.rb.Primary.SSH.KnownHosts == "" {
		return nil, nil
	}
	var keys []ssh.PublicKey
	// knownhosts reports the keys it knows for an address through a KeyError
	// when offered a key it does not know.
	cb, err := knownhosts.New(expand(h.rb.Primary.SSH.KnownHosts))
	if err != nil {
		return nil, fmt.Errorf("read primary known_hosts: %w", err)
	}
	addr := h.rb.Primary.SSH.Address
	probe, err := probeKey()
	if err != nil {
		return nil, err
	}
	err = cb(addr, &net.TCPAddr{IP: net.ParseIP(h.rb.Primary.Address.String())}, probe)
	var ke *knownhosts.KeyError
	if errors.As(err, &ke) {
		for _, k := range ke.Want {
			keys = append(keys, k.Key)
		}
	}
	return keys, nil
}

// Rescue returns a connection to the primary's rescue system. pinned is the
// host key recorded for this run (nil on first contact); onFirst journals
// the first key seen before the connection proceeds.
func (h *Hosts) Rescue(ctx context.Context, pinned ssh.PublicKey, onFirst func(ssh.PublicKey) error, wait time.Duration) (*remote.Client, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if alive(h.rescue) && (pinned == nil || string(h.rescue.HostKey().Marshal()) == string(pinned.Marshal())) {
		return h.rescue, nil
	}
	forbidden, err := h.normalHostKeys()
	if err != nil {
		return nil, err
	}
	pol := &remote.TOFU{Pinned: pinned, Forbidden: forbidden, OnFirst: onFirst}
	r := h.rb.Primary.Rescue
	c, err := remote.Dial(ctx, remote.Target{Addr: h.rescueAddr(), User: r.User, KeyFile: expand(r.Key), HostKey: pol}, h.opts(wait))
	if err != nil {
		return nil, fmt.Errorf("ssh to rescue system of %s: %w", h.rb.Primary.Server, err)
	}
	h.rescue = c
	return c, nil
}

func probeKey() (ssh.PublicKey, error) {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return ssh.NewPublicKey(pub)
}

// shq quotes s for a POSIX shell.
func shq(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
