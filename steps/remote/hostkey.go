package remote

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Sentinel errors of host key checks and authentication. Dial wraps them
// with the address it dialled; test with errors.Is.
var (
	// ErrHostKeyMismatch: the server presented a key other than the one
	// expected (known_hosts, pinned, recorded on first use) or a forbidden
	// one. It may signal an attack or the wrong machine; never retried.
	ErrHostKeyMismatch = errors.New("host key mismatch")
	// ErrHostKeyUnknown: the policy has no key for the host (e.g. the host
	// is absent from known_hosts). Never retried.
	ErrHostKeyUnknown = errors.New("host key unknown")
	// ErrAuth: the server refused every credential offered. Never retried.
	ErrAuth = errors.New("ssh authentication failed")
)

// hostKeyError carries a full message and the sentinel it stands for.
type hostKeyError struct {
	msg  string
	kind error
}

func (e *hostKeyError) Error() string { return e.msg }
func (e *hostKeyError) Unwrap() error { return e.kind }

// HostKeyPolicy decides whether the host key a server presents is accepted.
// Implementations must be safe for concurrent use.
type HostKeyPolicy interface {
	// HostKeyAlgorithms lists the host key algorithms to negotiate with
	// addr, most preferred first, so that a server holding several keys
	// presents one the policy can judge. Nil leaves the library default.
	HostKeyAlgorithms(addr string) ([]string, error)
	// CheckHostKey returns nil to accept key presented by addr (host:port as
	// dialled), or an error wrapping ErrHostKeyMismatch or ErrHostKeyUnknown
	// (or another error) to refuse it.
	CheckHostKey(addr string, key ssh.PublicKey) error
}

// Fingerprint returns the OpenSSH SHA256 fingerprint of key ("SHA256:...").
func Fingerprint(key ssh.PublicKey) string { return ssh.FingerprintSHA256(key) }

// ParseAuthorizedKey parses one public key in authorized_keys or
// known_hosts-key format ("ssh-ed25519 AAAA... comment").
func ParseAuthorizedKey(s string) (ssh.PublicKey, error) {
	key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(s))
	if err != nil {
		return nil, fmt.Errorf("parse public key: %w", err)
	}
	return key, nil
}

// PublicKeyOf returns the authorized_keys line (without comment or newline)
// of the public half of the unencrypted private key in keyFile, e.g. to set
// a provider's rescue SSH key.
func PublicKeyOf(keyFile string) (string, error) {
	signer, err := loadSigner(keyFile)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey()))), nil
}

func loadSigner(keyFile string) (ssh.Signer, error) {
	pem, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("read private key: %w", err)
	}
	signer, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		// The error never contains key material.
		return nil, fmt.Errorf("parse private key %s: %w", keyFile, err)
	}
	return signer, nil
}

// algorithmsFor returns the host key algorithms that make a server present
// a key of key's type.
func algorithmsFor(key ssh.PublicKey) []string {
	if key.Type() == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256}
	}
	return []string{key.Type()}
}

func algorithmsForKeys(keys []ssh.PublicKey) []string {
	var algos []string
	seen := map[string]bool{}
	for _, k := range keys {
		for _, a := range algorithmsFor(k) {
			if !seen[a] {
				seen[a] = true
				algos = append(algos, a)
			}
		}
	}
	return algos
}

func keyEqual(a, b ssh.PublicKey) bool {
	return a != nil && b != nil && a.Type() == b.Type() && string(a.Marshal()) == string(b.Marshal())
}

// KnownHostsPolicy checks host keys against an OpenSSH known_hosts file.
// The file is read at each connection, so edits take effect at once; a
// missing or malformed file fails the dial. A host absent from the file is
// refused with ErrHostKeyUnknown, a host listed with other keys with
// ErrHostKeyMismatch. Nothing is ever added to the file.
func KnownHostsPolicy(file string) HostKeyPolicy { return knownHostsPolicy{file: file} }

type knownHostsPolicy struct{ file string }

// probeAddr is a net.Addr for knownhosts lookups by address only.
type probeAddr string

func (a probeAddr) Network() string { return "tcp" }
func (a probeAddr) String() string  { return string(a) }

func (p knownHostsPolicy) HostKeyAlgorithms(addr string) ([]string, error) {
	cb, err := knownhosts.New(p.file)
	if err != nil {
		return nil, fmt.Errorf("read known_hosts: %w", err)
	}
	// Ask about a key no host has; the error lists the keys known for addr.
	probe, err := ssh.NewPublicKey(ed25519.PublicKey(make([]byte, ed25519.PublicKeySize)))
	if err != nil {
		return nil, err
	}
	var ke *knownhosts.KeyError
	if err := cb(addr, probeAddr(addr), probe); errors.As(err, &ke) {
		keys := make([]ssh.PublicKey, 0, len(ke.Want))
		for _, w := range ke.Want {
			keys = append(keys, w.Key)
		}
		return algorithmsForKeys(keys), nil
	}
	return nil, nil
}

func (p knownHostsPolicy) CheckHostKey(addr string, key ssh.PublicKey) error {
	cb, err := knownhosts.New(p.file)
	if err != nil {
		return fmt.Errorf("read known_hosts: %w", err)
	}
	err = cb(addr, probeAddr(addr), key)
	var ke *knownhosts.KeyError
	var re *knownhosts.RevokedError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ke) && len(ke.Want) == 0:
		return &hostKeyError{
			msg:  fmt.Sprintf("host key %s of %s is not in %s; refusing", Fingerprint(key), addr, p.file),
			kind: ErrHostKeyUnknown,
		}
	case errors.As(err, &ke):
		want := make([]string, 0, len(ke.Want))
		for _, w := range ke.Want {
			want = append(want, fmt.Sprintf("%s (%s:%d)", Fingerprint(w.Key), w.Filename, w.Line))
		}
		return &hostKeyError{
			msg: fmt.Sprintf("host key of %s does not match known_hosts: expected %s, got %s; refusing",
				addr, strings.Join(want, " or "), Fingerprint(key)),
			kind: ErrHostKeyMismatch,
		}
	case errors.As(err, &re):
		return &hostKeyError{
			msg:  fmt.Sprintf("host key %s of %s is revoked in %s; refusing", Fingerprint(key), addr, re.Revoked.Filename),
			kind: ErrHostKeyMismatch,
		}
	default:
		return fmt.Errorf("check host key of %s: %w", addr, err)
	}
}

// PinnedPolicy accepts exactly the given keys, e.g. the ones a provider
// reports for a freshly installed or rescued server. With no keys it
// refuses every host with ErrHostKeyUnknown.
func PinnedPolicy(keys ...ssh.PublicKey) HostKeyPolicy {
	return pinnedPolicy{keys: append([]ssh.PublicKey(nil), keys...)}
}

type pinnedPolicy struct{ keys []ssh.PublicKey }

func (p pinnedPolicy) HostKeyAlgorithms(string) ([]string, error) {
	return algorithmsForKeys(p.keys), nil
}

func (p pinnedPolicy) CheckHostKey(addr string, key ssh.PublicKey) error {
	if len(p.keys) == 0 {
		return &hostKeyError{
			msg:  fmt.Sprintf("host key %s of %s: no pinned key to check it against; refusing", Fingerprint(key), addr),
			kind: ErrHostKeyUnknown,
		}
	}
	want := make([]string, 0, len(p.keys))
	for _, k := range p.keys {
		if keyEqual(k, key) {
			return nil
		}
		want = append(want, Fingerprint(k))
	}
	return &hostKeyError{
		msg: fmt.Sprintf("host key of %s is not the pinned key: expected %s, got %s; refusing",
			addr, strings.Join(want, " or "), Fingerprint(key)),
		kind: ErrHostKeyMismatch,
	}
}

// TOFU trusts the first host key it sees and then only that key: the
// policy for rescue systems, which make new host keys at every boot. Use
// one TOFU value per rescue boot (a new boot needs a new TOFU, and the
// journal entry of the previous one must not be reused).
//
// The zero value is ready to use. Set Pinned to continue a boot whose key is
// already known (e.g. read back from the journal on resume). Use it through
// a pointer; it is safe for concurrent use.
type TOFU struct {
	// Pinned is the key recorded for this boot; nil until first use.
	Pinned ssh.PublicKey
	// Forbidden keys are refused outright, e.g. the primary's normal host
	// key: a rescue system presenting it is not the rescue system. Only a
	// key of the same type as the one presented can match.
	Forbidden []ssh.PublicKey
	// OnFirst is called with the first key seen, before the connection
	// proceeds; the caller journals it there. An error refuses the key and
	// leaves Pinned unset.
	OnFirst func(key ssh.PublicKey) error

	mu sync.Mutex
}

// Key returns the recorded key, or nil before first use.
func (p *TOFU) Key() ssh.PublicKey {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.Pinned
}

// HostKeyAlgorithms asks for the type of the recorded key once there is one.
func (p *TOFU) HostKeyAlgorithms(string) ([]string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.Pinned == nil {
		return nil, nil
	}
	return algorithmsFor(p.Pinned), nil
}

// CheckHostKey implements HostKeyPolicy.
func (p *TOFU) CheckHostKey(addr string, key ssh.PublicKey) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range p.Forbidden {
		if keyEqual(f, key) {
			return &hostKeyError{
				msg: fmt.Sprintf("host key of %s is %s, a forbidden key (e.g. the normal system's, not the rescue system's); refusing",
					addr, Fingerprint(key)),
				kind: ErrHostKeyMismatch,
			}
		}
	}
	if p.Pinned != nil {
		if keyEqual(p.Pinned, key) {
			return nil
		}
		return &hostKeyError{
			msg: fmt.Sprintf("host key of %s changed within one rescue boot: expected %s, got %s; refusing",
				addr, Fingerprint(p.Pinned), Fingerprint(key)),
			kind: ErrHostKeyMismatch,
		}
	}
	if p.OnFirst != nil {
		if err := p.OnFirst(key); err != nil {
			return fmt.Errorf("record first host key %s of %s: %w", Fingerprint(key), addr, err)
		}
	}
	p.Pinned = key
	return nil
}

var (
	_ HostKeyPolicy = knownHostsPolicy{}
	_ HostKeyPolicy = pinnedPolicy{}
	_ HostKeyPolicy = (*TOFU)(nil)
	_ net.Addr      = probeAddr("")
)
