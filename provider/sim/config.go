package sim

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/takeover-dev/takeover/provider"
)

// fileConfig is the YAML form of Config. Unknown keys are errors.
type fileConfig struct {
	Apps []struct {
		Key      string `yaml:"key"`
		Secret   string `yaml:"secret"`
		Consumer string `yaml:"consumer"`
		Rules    []Rule `yaml:"rules"`
	} `yaml:"apps"`
	Servers []struct {
		Name           string `yaml:"name"`
		IP             string `yaml:"ip"`
		Datacenter     string `yaml:"datacenter"`
		BootID         int64  `yaml:"bootId"`
		Monitoring     *bool  `yaml:"monitoring"`
		NoIntervention bool   `yaml:"noIntervention"`
		RescueSSHKey   string `yaml:"rescueSshKey"`
		RescueMail     string `yaml:"rescueMail"`
		Boots          []struct {
			ID          int64  `yaml:"bootId"`
			Type        string `yaml:"bootType"`
			Kernel      string `yaml:"kernel"`
			Description string `yaml:"description"`
		} `yaml:"boots"`
	} `yaml:"servers"`
	IPs []struct {
		Block    string `yaml:"block"`
		RoutedTo string `yaml:"routedTo"`
	} `yaml:"ips"`
	Latency struct {
		TaskStart   time.Duration `yaml:"taskStart"`
		RebootDoing time.Duration `yaml:"rebootDoing"`
		MoveDoing   time.Duration `yaml:"moveDoing"`
		ListLag     time.Duration `yaml:"listLag"`
	} `yaml:"latency"`
	Seed            int64         `yaml:"seed"`
	SignatureWindow time.Duration `yaml:"signatureWindow"`
}

// LoadConfig reads a simulator config file (YAML, unknown keys refused):
//
//	apps:
//	  - {key: AK, secret: AS, consumer: CK}   # optional rules: [{method: GET, path: "/ip/*"}]
//	servers:
//	  - name: ns1.ip-10-200-0-11.eu
//	    ip: 10.200.0.11
//	    datacenter: gra3
//	    bootId: 1                # optional; boots: [...] optional (default DefaultBoots)
//	ips:
//	  - {block: 10.200.0.100/32, routedTo: ns1.ip-10-200-0-11.eu}
//	latency: {taskStart: 2s, rebootDoing: 20s, moveDoing: 5s, listLag: 0s}
//	seed: 1
//	signatureWindow: 180s
//
// The returned Config has no Clock and a disabled Log; set them before New.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("load sim config: %w", err)
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		return Config{}, fmt.Errorf("load sim config %s: %w", path, err)
	}
	return cfg, nil
}

// ParseConfig parses the YAML form read by LoadConfig and validates it.
func ParseConfig(data []byte) (Config, error) {
	var fc fileConfig
	d := yaml.NewDecoder(bytes.NewReader(data))
	d.KnownFields(true)
	if err := d.Decode(&fc); err != nil && !errors.Is(err, io.EOF) {
		// yaml.v3 names Go types ("field x not found in type sim.fileConfig"):
		// say it in the file's terms
		msg := strings.ReplaceAll(err.Error(), "not found in type sim.fileConfig", "is not a simulator setting (known: apps, servers, ips, latency, seed, signatureWindow)")
		msg = regexp.MustCompile(`not found in type sim\.\w+`).ReplaceAllString(msg, "is not known here")
		return Config{}, fmt.Errorf("parse: %s", msg)
	}
	var cfg Config
	for _, a := range fc.Apps {
		cfg.Apps = append(cfg.Apps, App{Key: a.Key, Secret: a.Secret, Consumer: a.Consumer, Rules: a.Rules})
	}
	for _, sv := range fc.Servers {
		sc := ServerConfig{
			Name: sv.Name, IP: sv.IP, Datacenter: sv.Datacenter, BootID: sv.BootID,
			Monitoring: sv.Monitoring, NoIntervention: sv.NoIntervention,
			RescueSSHKey: sv.RescueSSHKey, RescueMail: sv.RescueMail,
		}
		for _, b := range sv.Boots {
			sc.Boots = append(sc.Boots, provider.Boot{ID: b.ID, Type: b.Type, Kernel: b.Kernel, Description: b.Description})
		}
		cfg.Servers = append(cfg.Servers, sc)
	}
	for _, ip := range fc.IPs {
		cfg.IPs = append(cfg.IPs, IPConfig{Block: ip.Block, RoutedTo: ip.RoutedTo})
	}
	cfg.Latency = Latency{
		TaskStart: fc.Latency.TaskStart, RebootDoing: fc.Latency.RebootDoing,
		MoveDoing: fc.Latency.MoveDoing, ListLag: fc.Latency.ListLag,
	}
	cfg.Seed = fc.Seed
	cfg.SignatureWindow = fc.SignatureWindow
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// GenerateApp returns an App with random key, secret and consumer key, in
// the shapes OVH uses (16, 32 and 32 characters).
func GenerateApp() (App, error) {
	var parts [3]string
	for i, n := range []int{16, 32, 32} {
		s, err := randomToken(n)
		if err != nil {
			return App{}, fmt.Errorf("generate sim app: %w", err)
		}
		parts[i] = s
	}
	return App{Key: parts[0], Secret: parts[1], Consumer: parts[2]}, nil
}

func randomToken(n int) (string, error) {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b), nil
}

// OvhConf renders an ovh.conf (the INI file go-ovh and python-ovh read)
// that points a client at endpoint (e.g. "http://127.0.0.1:8443/1.0") with
// app's credentials: a [default] section naming the endpoint and a section
// named after it. The result contains the secret: write it with mode 0600.
func OvhConf(endpoint string, app App) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[default]\nendpoint=%s\n\n[%s]\n", endpoint, endpoint)
	fmt.Fprintf(&b, "application_key=%s\napplication_secret=%s\nconsumer_key=%s\n", app.Key, app.Secret, app.Consumer)
	return b.String()
}
