package lab

import (
	"bufio"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"os"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/takeover-dev/takeover/provider/sim"
)

// writeKeyPair writes an OpenSSH ed25519 private key at path (0600) and its
// public half at path.pub, and returns the public key.
func writeKeyPair(path, comment string) (ssh.PublicKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key %s: %w", path, err)
	}
	blk, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, fmt.Errorf("generate key %s: %w", path, err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(blk), 0o600); err != nil {
		return nil, fmt.Errorf("write key %s: %w", path, err)
	}
	spub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("generate key %s: %w", path, err)
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(spub))) + " " + comment + "\n"
	if err := os.WriteFile(path+".pub", []byte(line), 0o644); err != nil {
		return nil, fmt.Errorf("write key %s.pub: %w", path, err)
	}
	return spub, nil
}

// writeKnownHosts writes the spare's and the primary's normal host keys,
// each under its public and private address.
func writeKnownHosts(c Config, primary, spare ssh.PublicKey) error {
	lines := knownhosts.Line([]string{c.Primary.Public.Addr().String(), c.Primary.Private.Addr().String()}, primary) + "\n" +
		knownhosts.Line([]string{c.Spare.Public.Addr().String(), c.Spare.Private.Addr().String()}, spare) + "\n"
	if err := os.WriteFile(c.Paths().KnownHosts, []byte(lines), 0o600); err != nil {
		return fmt.Errorf("write known_hosts: %w", err)
	}
	return nil
}

// writeOVHConf writes go-ovh's configuration for the simulator (0600).
func writeOVHConf(c Config, app sim.App) error {
	if err := os.WriteFile(c.Paths().OVHConf, []byte(sim.OvhConf(c.Endpoint(), app)), 0o600); err != nil {
		return fmt.Errorf("write ovh.conf: %w", err)
	}
	return nil
}

// ReadCredentials reads the application keys back from the lab's ovh.conf.
func (c Config) ReadCredentials() (sim.App, error) {
	c = c.withDefaults()
	f, err := os.Open(c.Paths().OVHConf)
	if err != nil {
		return sim.App{}, fmt.Errorf("read lab credentials: %w", err)
	}
	defer f.Close()
	var cr sim.App
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(l, "[") && strings.HasSuffix(l, "]") {
			section = l[1 : len(l)-1]
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok || section != c.Endpoint() {
			continue
		}
		switch strings.TrimSpace(k) {
		case "application_key":
			cr.Key = strings.TrimSpace(v)
		case "application_secret":
			cr.Secret = strings.TrimSpace(v)
		case "consumer_key":
			cr.Consumer = strings.TrimSpace(v)
		}
	}
	if err := sc.Err(); err != nil {
		return sim.App{}, fmt.Errorf("read lab credentials: %w", err)
	}
	if cr.Key == "" || cr.Secret == "" || cr.Consumer == "" {
		return sim.App{}, fmt.Errorf("read lab credentials: %s has no keys for %s", c.Paths().OVHConf, c.Endpoint())
	}
	return cr, nil
}
