package sim

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ovh/go-ovh/ovh"

	"github.com/takeover-dev/takeover/provider"
)

const sampleConfig = `
apps:
  - key: AK
    secret: AS
    consumer: CK
    rules: [{method: GET, path: "/ip/*"}]
servers:
  - name: ns1.ip-10-200-0-11.eu
    ip: 10.200.0.11
    datacenter: gra3
  - name: ns2.ip-10-200-0-12.eu
    ip: 10.200.0.12
    bootId: 7
    monitoring: false
    boots:
      - {bootId: 1, bootType: harddisk, kernel: hd}
      - {bootId: 7, bootType: rescue, kernel: rescue12-customer, description: Rescue}
ips:
  - {block: 10.200.0.100/32, routedTo: ns1.ip-10-200-0-11.eu}
  - {block: 10.200.0.101}
latency: {taskStart: 2s, rebootDoing: 20s, moveDoing: 5s, listLag: 500ms}
seed: 7
signatureWindow: 60s
`

func TestParseConfig(t *testing.T) {
	cfg, err := ParseConfig([]byte(sampleConfig))
	if err != nil {
		t.Fatal(err)
	}
	no := false
	want := Config{
		Apps: []App{{Key: "AK", Secret: "AS", Consumer: "CK", Rules: []Rule{{Method: "GET", Path: "/ip/*"}}}},
		Servers: []ServerConfig{
			{Name: "ns1.ip-10-200-0-11.eu", IP: "10.200.0.11", Datacenter: "gra3"},
			{Name: "ns2.ip-10-200-0-12.eu", IP: "10.200.0.12", BootID: 7, Monitoring: &no, Boots: []provider.Boot{
				{ID: 1, Type: "harddisk", Kernel: "hd"},
				{ID: 7, Type: "rescue", Kernel: "rescue12-customer", Description: "Rescue"},
			}},
		},
		IPs:             []IPConfig{{Block: "10.200.0.100/32", RoutedTo: "ns1.ip-10-200-0-11.eu"}, {Block: "10.200.0.101"}},
		Latency:         Latency{TaskStart: 2 * time.Second, RebootDoing: 20 * time.Second, MoveDoing: 5 * time.Second, ListLag: 500 * time.Millisecond},
		Seed:            7,
		SignatureWindow: time.Minute,
	}
	for _, d := range []string{
		cmp.Diff(want.Apps, cfg.Apps), cmp.Diff(want.Servers, cfg.Servers), cmp.Diff(want.IPs, cfg.IPs),
		cmp.Diff(want.Latency, cfg.Latency), cmp.Diff(want.Seed, cfg.Seed), cmp.Diff(want.SignatureWindow, cfg.SignatureWindow),
	} {
		if d != "" {
			t.Errorf("config (-want +got):\n%s", d)
		}
	}
	s := New(cfg)
	defer s.Close()
	if srv, _ := s.Server("ns2.ip-10-200-0-12.eu"); srv.BootID != 7 || srv.Monitoring {
		t.Errorf("server from config = %+v", srv)
	}
	if b, _ := s.Booted("ns2.ip-10-200-0-12.eu"); b.Kernel != "rescue12-customer" {
		t.Errorf("initial running boot = %+v", b)
	}
}

func TestParseConfigErrors(t *testing.T) {
	for _, tc := range []struct{ name, yaml, want string }{
		{"unknown key", "servers:\n  - name: a\n    ip: 10.0.0.1\n    colour: red\n", "field colour not found"},
		{"unknown top key", "server: []\n", "field server is not a simulator setting"},
		{"bad duration", "latency: {taskStart: soon}\n", "into time.Duration"},
		{"duplicate server", "servers:\n  - {name: a, ip: 10.0.0.1}\n  - {name: a, ip: 10.0.0.2}\n", `server "a": listed twice`},
		{"bad ip", "servers:\n  - {name: a, ip: 10.0.0}\n", `server "a": ip`},
		{"unknown boot", "servers:\n  - {name: a, ip: 10.0.0.1, bootId: 5}\n", "boot id 5 is not one of its boots"},
		{"route to unknown server", "ips:\n  - {block: 10.0.0.9/32, routedTo: b}\n", `routed to unknown server "b"`},
		{"host bits", "ips:\n  - {block: 10.0.0.9/24}\n", "host bits set"},
		{"main address as ip", "servers:\n  - {name: a, ip: 10.0.0.1}\nips:\n  - {block: 10.0.0.1}\n", "main address"},
		{"incomplete app", "apps:\n  - {key: AK, secret: AS}\n", "key, secret and consumer are all required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	if _, err := LoadConfig(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Error("LoadConfig of a missing file succeeded")
	}
	if cfg, err := ParseConfig(nil); err != nil || len(cfg.Servers) != 0 {
		t.Errorf("empty config: %v %+v", err, cfg)
	}
}

func TestLoadConfigAndOvhConf(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sim.yaml")
	if err := os.WriteFile(path, []byte(sampleConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	app, err := GenerateApp()
	if err != nil {
		t.Fatal(err)
	}
	if len(app.Key) != 16 || len(app.Secret) != 32 || len(app.Consumer) != 32 {
		t.Errorf("generated app shapes %d/%d/%d", len(app.Key), len(app.Secret), len(app.Consumer))
	}
	cfg.Apps = []App{app}
	s := New(cfg)
	srv := httptest.NewServer(s)
	t.Cleanup(func() { srv.Close(); s.Close() })

	// go-ovh reads ./ovh.conf: point it at the simulator through the file.
	endpoint := srv.URL + "/1.0"
	if err := os.WriteFile(filepath.Join(dir, "ovh.conf"), []byte(OvhConf(endpoint, app)), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	c, err := ovh.NewEndpointClient(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	var servers []string
	if err := c.GetWithContext(t.Context(), "/dedicated/server", &servers); err != nil {
		t.Fatal(err)
	}
	if len(servers) != 2 {
		t.Errorf("servers = %v", servers)
	}
	c, err = ovh.NewDefaultClient()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.GetWithContext(t.Context(), "/dedicated/server", &servers); err != nil {
		t.Errorf("client from [default] endpoint: %v", err)
	}
}

func TestServeTLS(t *testing.T) {
	cfg := testConfig(t)
	s := New(cfg)
	defer s.Close()
	certDir := t.TempDir()
	ctx, cancel := context.WithCancel(t.Context())
	ready := make(chan Listening, 1)
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, s, ServeOptions{TLS: true, CertDir: certDir, Ready: func(l Listening) { ready <- l }})
	}()
	var l Listening
	select {
	case l = <-ready:
	case err := <-done:
		t.Fatalf("Serve: %v", err)
	}
	if !strings.HasPrefix(l.Endpoint, "https://127.0.0.1:") || !strings.HasSuffix(l.Endpoint, "/1.0") {
		t.Errorf("endpoint %q", l.Endpoint)
	}
	pool, err := CertPool(l.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ovh.NewClient(l.Endpoint, testApp.Key, testApp.Secret, testApp.Consumer)
	if err != nil {
		t.Fatal(err)
	}
	c.Client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	// Signed over an https:// URL.
	var servers []string
	if err := c.GetWithContext(t.Context(), "/dedicated/server", &servers); err != nil || len(servers) != 2 {
		t.Errorf("GET over TLS: %v %v", servers, err)
	}
	// The certificate names localhost too.
	data, err := os.ReadFile(l.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := cert.VerifyHostname("localhost"); err != nil {
		t.Error(err)
	}
	if cert.PublicKeyAlgorithm != x509.ECDSA {
		t.Errorf("certificate key algorithm %v, want ECDSA", cert.PublicKeyAlgorithm)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve after cancel: %v", err)
	}
	// The pair is reused, not regenerated.
	certFile, _, err := EnsureCert(certDir)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := os.ReadFile(certFile)
	if !bytes.Equal(data, again) {
		t.Error("EnsureCert regenerated an existing certificate")
	}
	if fi, err := os.Stat(filepath.Join(certDir, "sim-key.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode: %v %v", fi, err)
	}
}

func TestServeNeedsCert(t *testing.T) {
	s := New(testConfig(t))
	defer s.Close()
	if err := Serve(t.Context(), s, ServeOptions{TLS: true}); err == nil {
		t.Error("Serve with TLS and no certificate source succeeded")
	}
}
