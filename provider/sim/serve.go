package sim

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// ServeOptions configures Serve.
type ServeOptions struct {
	// Addr is the listen address; "" means "127.0.0.1:0" (a free port).
	Addr string
	// TLS serves HTTPS. The certificate is CertFile/KeyFile, or when those
	// are empty a self-signed one made (or reused) by EnsureCert in CertDir.
	TLS               bool
	CertFile, KeyFile string
	CertDir           string
	// Ready, if set, is called once the listener is up.
	Ready func(Listening)
}

// Listening describes a running simulator server.
type Listening struct {
	Endpoint string // API base URL, e.g. "https://127.0.0.1:40123/1.0"
	CertFile string // PEM certificate clients must trust ("" without TLS)
}

// Serve serves s on o.Addr until ctx is cancelled, then shuts the HTTP
// server down (in-flight requests get 5 s) and returns nil. It does not
// Close s.
func Serve(ctx context.Context, s *Sim, o ServeOptions) error {
	addr := o.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var tlsCfg *tls.Config
	certFile := ""
	if o.TLS {
		certFile, keyFile := o.CertFile, o.KeyFile
		if certFile == "" || keyFile == "" {
			if o.CertDir == "" {
				return errors.New("serve sim: TLS needs a certificate or a directory to make one in")
			}
			var err error
			if certFile, keyFile, err = EnsureCert(o.CertDir); err != nil {
				return fmt.Errorf("serve sim: %w", err)
			}
		}
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return fmt.Errorf("serve sim: load certificate %s: %w", certFile, err)
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
		o.CertFile = certFile
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("serve sim: listen on %s: %w", addr, err)
	}
	scheme := "http"
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
		scheme = "https"
		certFile = o.CertFile
	}
	hs := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second, ErrorLog: nil}
	done := make(chan error, 1)
	go func() { done <- hs.Serve(ln) }()
	if o.Ready != nil {
		o.Ready(Listening{Endpoint: scheme + "://" + ln.Addr().String() + "/1.0", CertFile: certFile})
	}
	select {
	case err := <-done:
		return fmt.Errorf("serve sim: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		return fmt.Errorf("serve sim: shut down: %w", err)
	}
	<-done
	return nil
}

// EnsureCert returns sim-cert.pem and sim-key.pem in dir, creating a
// self-signed ECDSA P-256 certificate for 127.0.0.1, ::1 and localhost
// (valid one year, key mode 0600) unless a readable pair is already there.
func EnsureCert(dir string) (certFile, keyFile string, err error) {
	certFile, keyFile = filepath.Join(dir, "sim-cert.pem"), filepath.Join(dir, "sim-key.pem")
	if _, err := tls.LoadX509KeyPair(certFile, keyFile); err == nil {
		return certFile, keyFile, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("make sim certificate: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return "", "", fmt.Errorf("make sim certificate: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "takeover OVH API simulator"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", fmt.Errorf("make sim certificate: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", "", fmt.Errorf("make sim certificate: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", fmt.Errorf("make sim certificate: %w", err)
	}
	if err := writeFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return "", "", err
	}
	if err := writeFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}

// writeFile writes data to path atomically (temp file, fsync, rename).
func writeFile(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// CertPool returns a pool holding the PEM certificate in certFile, for
// clients of a TLS simulator.
func CertPool(certFile string) (*x509.CertPool, error) {
	data, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("read sim certificate: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("read sim certificate %s: no PEM certificate", certFile)
	}
	return pool, nil
}
