package runbooks

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"
)

func TestDefaults(t *testing.T) {
	rb, err := Load("testdata/valid/minimal.yaml")
	if err != nil {
		t.Fatal(err)
	}
	priv := netip.MustParseAddr("192.168.10.11")
	want := &Runbook{
		Name:     "web-gra",
		Provider: Provider{Kind: "ovh", Endpoint: "ovh-eu"},
		Primary: Primary{
			Server:         "ns3956771.ip-169-254-10.eu",
			Address:        priv, // defaults to private_address
			PrivateAddress: priv,
			Rescue:         Rescue{Kernel: "rescue12-customer", Key: "~/.ssh/takeover_rescue", User: "root", Port: 22},
		},
		Spare: Spare{
			Server:         "ns3956772.ip-169-254-10.eu",
			PrivateAddress: netip.MustParseAddr("192.168.10.12"),
			SSH:            SSH{Address: "192.168.10.12:22", User: "root", KnownHosts: "~/.ssh/known_hosts"},
		},
		Data: Data{
			Transport: "nbd",
			NBD:       NBD{Server: "nbd-server", Port: 10809},
			Attach:    "auto",
			Disks:     []Disk{{Name: "www", Device: "/dev/md2", Mount: "/srv/www"}},
		},
		Services: []Service{{
			Name:   "nginx",
			Start:  "systemctl start nginx",
			Stop:   "systemctl stop nginx",
			Health: []Health{{HTTP: "http://127.0.0.1/", Status: 200, Timeout: Duration{10 * time.Second}}},
		}},
		FailoverIPs: []IPBlock{{netip.MustParsePrefix("203.0.113.7/32")}},
		Timeouts: Timeouts{
			Fence:     Duration{10 * time.Minute},
			RescueSSH: Duration{5 * time.Minute},
			IPMove:    Duration{5 * time.Minute},
			Services:  Duration{2 * time.Minute},
			Step:      Duration{15 * time.Minute},
		},
		Modes: ModeOptions{
			Disaster: DisasterOptions{Confirm: true},
			Drill:    DrillOptions{Failback: true},
		},
		File: "testdata/valid/minimal.yaml",
	}
	if diff := cmp.Diff(want, rb, cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
		cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("Load minimal.yaml (-want +got):\n%s", diff)
	}
}

func TestDefaultsNFS(t *testing.T) {
	rb, err := Load("testdata/valid/nfs.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// NBD defaults do not leak into an NFS runbook; the bare address is a /32.
	if rb.Data.Attach != "" || rb.Data.NBD != (NBD{}) {
		t.Errorf("NBD settings on an NFS runbook: attach %q, nbd %+v", rb.Data.Attach, rb.Data.NBD)
	}
	if got, want := rb.FailoverIPs[0].Prefix, netip.MustParsePrefix("141.95.10.20/32"); got != want {
		t.Errorf("failover IP = %v, want %v", got, want)
	}
	if rb.Data.NFS.Version != 3 {
		t.Errorf("nfs.version = %d, want 3 as written", rb.Data.NFS.Version)
	}
}

// TestExplicitFalse checks that a default-true option written as false
// stays false.
func TestExplicitFalse(t *testing.T) {
	rb, err := Load("../runbooks/lab.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if rb.Modes.Disaster.Confirm {
		t.Error("modes.disaster.confirm: false was overridden by the default")
	}
	if !rb.Modes.Drill.Failback {
		t.Error("modes.drill.failback default true not applied")
	}
}

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		e    Error
		want string
	}{
		{Error{File: "a.yaml", Line: 3, Column: 7, Msg: "name: required", Hint: "add it"}, "a.yaml:3:7: name: required (hint: add it)"},
		{Error{File: "a.yaml", Line: 3, Column: 7, Msg: "bad"}, "a.yaml:3:7: bad"},
		{Error{File: "a.yaml", Line: 4, Msg: "syntax error: x"}, "a.yaml:4: syntax error: x"},
		{Error{File: "a.yaml", Msg: "syntax error: y"}, "a.yaml: syntax error: y"},
		{Error{Msg: "z"}, "z"},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

func TestErrorListSortedAndReachable(t *testing.T) {
	base, err := os.ReadFile("testdata/valid/minimal.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// Problems written bottom-up must come back top-down.
	data := "zzz: 1\n" + strings.Replace(string(base), "name: web-gra", "name: BAD", 1) + "aaa: 2\n"
	last := strings.Count(data, "\n")
	_, err = Parse("x.yaml", []byte(data))
	var list ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("want ErrorList, got %T", err)
	}
	var e *Error
	if !errors.As(err, &e) || e.Line != 1 {
		t.Fatalf("errors.As(*Error) = %v, want the first error (line 1)", e)
	}
	lines := strings.Split(err.Error(), "\n")
	want := []string{
		`x.yaml:1:1: unknown key "zzz"`,
		`x.yaml:3:7: name: invalid name "BAD"`,
		fmt.Sprintf(`x.yaml:%d:1: unknown key "aaa"`, last),
	}
	if len(lines) != len(want) || len(list) != len(want) {
		t.Fatalf("want %d errors, got:\n%v", len(want), err)
	}
	for i := range want {
		if !strings.HasPrefix(lines[i], want[i]) {
			t.Errorf("line %d = %q, want prefix %q", i, lines[i], want[i])
		}
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("want fs.ErrNotExist, got %v", err)
	}
	var list ErrorList
	if errors.As(err, &list) {
		t.Fatalf("a read error is not an ErrorList: %v", err)
	}
}

func TestParseMode(t *testing.T) {
	for _, m := range Modes() {
		got, err := ParseMode(string(m))
		if err != nil || got != m {
			t.Errorf("ParseMode(%q) = %q, %v", m, got, err)
		}
	}
	for _, s := range []string{"", "Disaster", "failback"} {
		if _, err := ParseMode(s); err == nil {
			t.Errorf("ParseMode(%q) succeeded", s)
		}
	}
}

func TestSuggest(t *testing.T) {
	keys := []string{"name", "description", "provider", "primary", "spare", "private_address", "failover_ips"}
	tests := []struct{ in, want string }{
		{"nmae", "name"},
		{"privat_address", "private_address"},
		{"private-address", "private_address"},
		{"failover_ip", "failover_ips"},
		{"Spare", "spare"},
		{"colour", ""},
		{"x", ""},
	}
	for _, tt := range tests {
		if got := suggest(tt.in, keys); got != tt.want {
			t.Errorf("suggest(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestList(t *testing.T) {
	dir := t.TempDir()
	copyFile(t, "testdata/valid/minimal.yaml", filepath.Join(dir, "web.yaml"))
	copyFile(t, "testdata/invalid/same-server.yaml", filepath.Join(dir, "broken.yml"))
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not a runbook"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "sub.yaml"), 0o755); err != nil {
		t.Fatal(err)
	}
	got, err := List(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("List = %d entries, want 2: %+v", len(got), got)
	}
	broken, web := got[0], got[1]
	if broken.File != filepath.Join(dir, "broken.yml") || broken.Err == nil || broken.Name != "web-gra" {
		t.Errorf("broken entry = %+v, want its name, file and error", broken)
	}
	var list ErrorList
	if !errors.As(broken.Err, &list) || !strings.Contains(list.Error(), "same server") {
		t.Errorf("broken entry error = %v", broken.Err)
	}
	wantWeb := Summary{
		Name:    "web-gra",
		File:    filepath.Join(dir, "web.yaml"),
		Primary: "ns3956771.ip-169-254-10.eu",
		Spare:   "ns3956772.ip-169-254-10.eu",
		IPs:     []netip.Prefix{netip.MustParsePrefix("203.0.113.7/32")},
	}
	if diff := cmp.Diff(wantWeb, web, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("web entry (-want +got):\n%s", diff)
	}
	if _, err := List(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("List(missing dir) = %v, want fs.ErrNotExist", err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestMarshalRoundTrip checks that a decoded runbook written back with
// yaml.v3 (Duration and IPBlock marshal as text) parses to the same value.
func TestMarshalRoundTrip(t *testing.T) {
	files := append(testdataFiles(t, "valid"), "lab.yaml")
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			rb, err := Load(f)
			if err != nil {
				t.Fatal(err)
			}
			out, err := yaml.Marshal(rb)
			if err != nil {
				t.Fatal(err)
			}
			back, err := Parse(f, out)
			if err != nil {
				t.Fatalf("re-parse:\n%v\n---\n%s", err, out)
			}
			cmpAddr := cmp.Comparer(func(a, b netip.Addr) bool { return a == b })
			cmpPrefix := cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })
			if diff := cmp.Diff(rb, back, cmpAddr, cmpPrefix); diff != "" {
				t.Errorf("round trip (-first +second):\n%s", diff)
			}
		})
	}
}

func TestLenientUnmarshal(t *testing.T) {
	var v struct {
		D Duration  `yaml:"d"`
		B []IPBlock `yaml:"b"`
	}
	if err := yaml.Unmarshal([]byte("d: 90s\nb: [203.0.113.7, 2001:db8::/48]\n"), &v); err != nil {
		t.Fatal(err)
	}
	if v.D.Duration != 90*time.Second || v.B[0].Prefix != netip.MustParsePrefix("203.0.113.7/32") || v.B[1].Prefix != netip.MustParsePrefix("2001:db8::/48") {
		t.Errorf("got %+v", v)
	}
	if err := yaml.Unmarshal([]byte("d: 5\n"), &v); err == nil {
		t.Error("duration without unit accepted")
	}
	if err := yaml.Unmarshal([]byte("b: [300.1.1.1]\n"), &v); err == nil {
		t.Error("bad IP block accepted")
	}
}

func TestExpandPath(t *testing.T) {
	t.Setenv("HOME", "/home/op")
	for in, want := range map[string]string{
		"~/.ssh/id": "/home/op/.ssh/id",
		"/etc/key":  "/etc/key",
		"~other/x":  "~other/x",
	} {
		got, err := ExpandPath(in)
		if err != nil || got != want {
			t.Errorf("ExpandPath(%q) = %q, %v, want %q", in, got, err, want)
		}
	}
}

func TestSSHAddressDefaultPort(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.1":          "10.0.0.1:22",
		"10.0.0.1:2222":     "10.0.0.1:2222",
		"fd00::1":           "[fd00::1]:22",
		"[fd00::1]:2222":    "[fd00::1]:2222",
		"spare.example.net": "spare.example.net:22",
	} {
		got, err := hostPort(in, true)
		if err != nil || got != want {
			t.Errorf("hostPort(%q) = %q, %v, want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", ":22", "host:0", "host:x", "bad host:22", "a:b:c"} {
		if got, err := hostPort(in, true); err == nil {
			t.Errorf("hostPort(%q) = %q, want an error", in, got)
		}
	}
}

func TestDurationJSON(t *testing.T) {
	b, err := json.Marshal(struct{ T Duration }{Duration{90 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), `{"T":"1m30s"}`; got != want {
		t.Fatalf("Marshal = %s, want %s", got, want)
	}
	var v struct{ T Duration }
	if err := json.Unmarshal(b, &v); err != nil || v.T.Duration != 90*time.Second {
		t.Fatalf("Unmarshal = %v, %v", v, err)
	}
}
