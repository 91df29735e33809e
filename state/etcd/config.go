package etcd

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// Defaults applied by [Open] to zero fields of [Config].
const (
	DefaultPrefix         = "/takeover"
	DefaultPort           = "2379"
	DefaultDialTimeout    = 5 * time.Second
	DefaultRequestTimeout = 10 * time.Second
)

// Environment variables read by [ParseURL]. Credentials are only ever taken
// from the environment, never from the URL, so they stay out of shell
// history, process lists and logs.
const (
	EnvCA       = "TAKEOVER_ETCD_CA"
	EnvCert     = "TAKEOVER_ETCD_CERT"
	EnvKey      = "TAKEOVER_ETCD_KEY"
	EnvUsername = "TAKEOVER_ETCD_USERNAME"
	EnvPassword = "TAKEOVER_ETCD_PASSWORD"
)

// Config says how to reach etcd and where under it takeover keeps its keys.
type Config struct {
	// Endpoints are the etcd members, "host:port" (a scheme, if given, must
	// agree with TLS).
	Endpoints []string
	// Prefix is prepended to every key; it starts with "/" and has no
	// trailing "/". Empty means DefaultPrefix.
	Prefix string

	// TLS turns on TLS. With no CAFile the system roots verify the server.
	TLS      bool
	CAFile   string // PEM CA bundle that verifies the server
	CertFile string // PEM client certificate, with KeyFile
	KeyFile  string

	// Username and Password authenticate with etcd's user auth.
	Username string
	Password string

	// DialTimeout bounds Open's first contact with etcd; zero means
	// DefaultDialTimeout.
	DialTimeout time.Duration
	// RequestTimeout bounds each Store call that has no earlier deadline in
	// its ctx, so that an unreachable etcd makes calls fail instead of
	// hang; zero means DefaultRequestTimeout.
	RequestTimeout time.Duration

	// Log receives the store's diagnostics (lock acquired, lost, released).
	// The zero value discards them. The etcd client's own logs are always
	// discarded.
	Log zerolog.Logger
}

// String renders c as a URL without credentials.
func (c Config) String() string {
	scheme := "etcd"
	if c.TLS {
		scheme = "etcds"
	}
	prefix := c.Prefix
	if prefix == "" {
		prefix = DefaultPrefix
	}
	return scheme + "://" + strings.Join(c.Endpoints, ",") + prefix
}

// ParseURL parses a store URL:
//
//	etcd://host[:port][,host[:port]...][/prefix][?option=value&...]
//	etcds://...   the same over TLS
//
// The port defaults to 2379 and the prefix to /takeover. Options are
// ca, cert and key (PEM files, etcds only; they override TAKEOVER_ETCD_CA,
// TAKEOVER_ETCD_CERT and TAKEOVER_ETCD_KEY), dial-timeout and timeout
// (Go durations, see [Config]). Username and password come from
// TAKEOVER_ETCD_USERNAME and TAKEOVER_ETCD_PASSWORD; a URL with user
// information is refused.
func ParseURL(s string) (Config, error) {
	return parseURL(s, os.Getenv)
}

func parseURL(s string, getenv func(string) string) (Config, error) {
	var c Config
	scheme, rest, ok := strings.Cut(s, "://")
	switch {
	case !ok:
		return c, fmt.Errorf("parse etcd url %q: want etcd://host:port/prefix or etcds://host:port/prefix", s)
	case scheme == "etcd":
	case scheme == "etcds":
		c.TLS = true
	default:
		return c, fmt.Errorf("parse etcd url %q: unknown scheme %q, want etcd or etcds", s, scheme)
	}
	rest, query, _ := strings.Cut(rest, "?")
	authority, path, hasPath := strings.Cut(rest, "/")
	if strings.Contains(authority, "@") {
		// Do not echo the URL: it holds a secret.
		return Config{}, fmt.Errorf("parse etcd url: credentials in the url are not accepted; set %s and %s instead", EnvUsername, EnvPassword)
	}
	if strings.Contains(rest, "#") {
		return c, fmt.Errorf("parse etcd url %q: fragments are not allowed", s)
	}

	if authority == "" {
		return c, fmt.Errorf("parse etcd url %q: no host", s)
	}
	for _, hp := range strings.Split(authority, ",") {
		ep, err := endpoint(hp)
		if err != nil {
			return c, fmt.Errorf("parse etcd url %q: %w", s, err)
		}
		c.Endpoints = append(c.Endpoints, ep)
	}

	c.Prefix = DefaultPrefix
	if hasPath {
		p, err := url.PathUnescape(path)
		if err != nil {
			return c, fmt.Errorf("parse etcd url %q: prefix: %w", s, err)
		}
		p = strings.TrimRight(p, "/")
		if p != "" {
			if strings.Contains(p, "//") {
				return c, fmt.Errorf("parse etcd url %q: prefix %q has an empty segment", s, "/"+p)
			}
			c.Prefix = "/" + p
		}
	}

	c.CAFile, c.CertFile, c.KeyFile = getenv(EnvCA), getenv(EnvCert), getenv(EnvKey)
	vals, err := url.ParseQuery(query)
	if err != nil {
		return c, fmt.Errorf("parse etcd url %q: options: %w", s, err)
	}
	for k, v := range vals {
		if len(v) != 1 {
			return c, fmt.Errorf("parse etcd url %q: option %s given %d times", s, k, len(v))
		}
		switch k {
		case "ca":
			c.CAFile = v[0]
		case "cert":
			c.CertFile = v[0]
		case "key":
			c.KeyFile = v[0]
		case "dial-timeout", "timeout":
			d, err := time.ParseDuration(v[0])
			if err != nil || d <= 0 {
				return c, fmt.Errorf("parse etcd url %q: option %s=%q: want a positive duration such as 5s", s, k, v[0])
			}
			if k == "timeout" {
				c.RequestTimeout = d
			} else {
				c.DialTimeout = d
			}
		default:
			return c, fmt.Errorf("parse etcd url %q: unknown option %q (known: ca, cert, key, dial-timeout, timeout)", s, k)
		}
	}
	if !c.TLS && (c.CAFile != "" || c.CertFile != "" || c.KeyFile != "") {
		return c, fmt.Errorf("parse etcd url %q: TLS files given (ca/cert/key or %s/%s/%s) but etcd:// is plaintext; use etcds://", s, EnvCA, EnvCert, EnvKey)
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return c, fmt.Errorf("parse etcd url %q: a client certificate needs both cert and key", s)
	}

	c.Username, c.Password = getenv(EnvUsername), getenv(EnvPassword)
	if (c.Username == "") != (c.Password == "") {
		return c, fmt.Errorf("parse etcd url %q: set both %s and %s, or neither", s, EnvUsername, EnvPassword)
	}
	return c, nil
}

// endpoint checks one host[:port] of a URL and adds the default port.
func endpoint(hp string) (string, error) {
	if hp == "" {
		return "", errors.New("empty host in host list")
	}
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		// No port: SplitHostPort wants one. Bracketed IPv6 without a port
		// ends in "]".
		if strings.Contains(hp, ":") && !strings.HasSuffix(hp, "]") {
			return "", fmt.Errorf("host %q: %w", hp, err)
		}
		host, port = strings.TrimSuffix(strings.TrimPrefix(hp, "["), "]"), DefaultPort
	}
	if host == "" {
		return "", fmt.Errorf("host %q: empty host name", hp)
	}
	if strings.ContainsAny(host, " /\\%") {
		return "", fmt.Errorf("host %q: invalid host name", hp)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("host %q: invalid port %q", hp, port)
	}
	return net.JoinHostPort(host, port), nil
}

// tlsConfig builds the client TLS configuration from the files in c.
func (c Config) tlsConfig() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read etcd CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("read etcd CA %s: no PEM certificate found", c.CAFile)
		}
		tc.RootCAs = pool
	}
	if c.CertFile != "" || c.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("load etcd client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}
