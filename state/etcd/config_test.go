package etcd

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestParseURL(t *testing.T) {
	tests := []struct {
		url  string
		env  map[string]string
		want Config
	}{
		{url: "etcd://127.0.0.1:2379/team", want: Config{Endpoints: []string{"127.0.0.1:2379"}, Prefix: "/team"}},
		{url: "etcd://etcd1", want: Config{Endpoints: []string{"etcd1:2379"}, Prefix: "/takeover"}},
		{url: "etcd://etcd1/", want: Config{Endpoints: []string{"etcd1:2379"}, Prefix: "/takeover"}},
		{url: "etcd://a:1,b:2,c/x/y/", want: Config{Endpoints: []string{"a:1", "b:2", "c:2379"}, Prefix: "/x/y"}},
		{url: "etcd://[::1]:2380,[fe80::1]/p", want: Config{Endpoints: []string{"[::1]:2380", "[fe80::1]:2379"}, Prefix: "/p"}},
		{url: "etcd://h/sp%20ace", want: Config{Endpoints: []string{"h:2379"}, Prefix: "/sp ace"}},
		{
			url:  "etcd://h:1/p?dial-timeout=2s&timeout=1m",
			want: Config{Endpoints: []string{"h:1"}, Prefix: "/p", DialTimeout: 2 * time.Second, RequestTimeout: time.Minute},
		},
		{url: "etcds://h:1", want: Config{Endpoints: []string{"h:1"}, Prefix: "/takeover", TLS: true}},
		{
			url:  "etcds://h:1/p?ca=/etc/ca.pem&cert=/c.pem&key=/k.pem",
			want: Config{Endpoints: []string{"h:1"}, Prefix: "/p", TLS: true, CAFile: "/etc/ca.pem", CertFile: "/c.pem", KeyFile: "/k.pem"},
		},
		{
			url:  "etcds://h:1/p?ca=/url-ca.pem",
			env:  map[string]string{EnvCA: "/env-ca.pem", EnvCert: "/env-c.pem", EnvKey: "/env-k.pem"},
			want: Config{Endpoints: []string{"h:1"}, Prefix: "/p", TLS: true, CAFile: "/url-ca.pem", CertFile: "/env-c.pem", KeyFile: "/env-k.pem"},
		},
		{
			url:  "etcd://h:1/p",
			env:  map[string]string{EnvUsername: "takeover", EnvPassword: "s3cret"},
			want: Config{Endpoints: []string{"h:1"}, Prefix: "/p", Username: "takeover", Password: "s3cret"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			got, err := parseURL(tc.url, func(k string) string { return tc.env[k] })
			if err != nil {
				t.Fatalf("parseURL(%q): %v", tc.url, err)
			}
			if diff := cmp.Diff(tc.want, got, cmpopts.IgnoreFields(Config{}, "Log")); diff != "" {
				t.Errorf("parseURL(%q) (-want +got):\n%s", tc.url, diff)
			}
		})
	}
}

func TestParseURLErrors(t *testing.T) {
	tests := []struct {
		url     string
		env     map[string]string
		wantErr string
	}{
		{url: "127.0.0.1:2379", wantErr: "want etcd://host:port/prefix"},
		{url: "http://127.0.0.1:2379", wantErr: `unknown scheme "http", want etcd or etcds`},
		{url: "etcd://", wantErr: "no host"},
		{url: "etcd:///prefix", wantErr: "no host"},
		{url: "etcd://a,,b", wantErr: "empty host in host list"},
		{url: "etcd://:2379", wantErr: `host ":2379": empty host name`},
		{url: "etcd://h:0", wantErr: `invalid port "0"`},
		{url: "etcd://h:99999", wantErr: `invalid port "99999"`},
		{url: "etcd://h:port", wantErr: `invalid port "port"`},
		{url: "etcd://::1:2379", wantErr: `host "::1:2379"`},
		{url: "etcd://h/a//b", wantErr: "empty segment"},
		{url: "etcd://h/%zz", wantErr: "prefix: invalid URL escape"},
		{url: "etcd://h/p#frag", wantErr: "fragments are not allowed"},
		{url: "etcd://h/p?bogus=1", wantErr: `unknown option "bogus" (known: ca, cert, key, dial-timeout, timeout)`},
		{url: "etcd://h/p?timeout=soon", wantErr: `option timeout="soon": want a positive duration`},
		{url: "etcd://h/p?dial-timeout=-1s", wantErr: `option dial-timeout="-1s": want a positive duration`},
		{url: "etcd://h/p?timeout=1s&timeout=2s", wantErr: "option timeout given 2 times"},
		{url: "etcd://h/p?ca=/ca.pem", wantErr: "etcd:// is plaintext; use etcds://"},
		{url: "etcd://h/p", env: map[string]string{EnvCA: "/ca.pem"}, wantErr: "etcd:// is plaintext; use etcds://"},
		{url: "etcds://h/p?cert=/c.pem", wantErr: "needs both cert and key"},
		{url: "etcd://h/p", env: map[string]string{EnvUsername: "u"}, wantErr: "set both TAKEOVER_ETCD_USERNAME and TAKEOVER_ETCD_PASSWORD, or neither"},
		{url: "etcd://h/p", env: map[string]string{EnvPassword: "p"}, wantErr: "set both"},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			_, err := parseURL(tc.url, func(k string) string { return tc.env[k] })
			if err == nil {
				t.Fatalf("parseURL(%q) succeeded, want error containing %q", tc.url, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("parseURL(%q) error %q, want it to contain %q", tc.url, err, tc.wantErr)
			}
		})
	}
}

// TestParseURLCredentials checks that credentials in a URL are refused with
// a hint, and that the error does not repeat them.
func TestParseURLCredentials(t *testing.T) {
	for _, u := range []string{
		"etcd://root:hunter2@127.0.0.1:2379/p",
		"etcds://root:hunter2@a:1,b:2",
		"etcd://hunter2@h",
	} {
		_, err := parseURL(u, func(string) string { return "" })
		if err == nil {
			t.Fatalf("parseURL(%q) accepted credentials", u)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("parseURL(%q) error repeats the secret: %v", u, err)
		}
		if !strings.Contains(err.Error(), "set TAKEOVER_ETCD_USERNAME and TAKEOVER_ETCD_PASSWORD instead") {
			t.Errorf("parseURL(%q) error has no hint: %v", u, err)
		}
	}
}

// TestParseURLEnv checks that the exported ParseURL reads the environment.
func TestParseURLEnv(t *testing.T) {
	t.Setenv(EnvUsername, "ops")
	t.Setenv(EnvPassword, "pw")
	t.Setenv(EnvCA, "/ca.pem")
	t.Setenv(EnvCert, "")
	t.Setenv(EnvKey, "")
	got, err := ParseURL("etcds://h:1/p")
	if err != nil {
		t.Fatal(err)
	}
	want := Config{Endpoints: []string{"h:1"}, Prefix: "/p", TLS: true, CAFile: "/ca.pem", Username: "ops", Password: "pw"}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(Config{}, "Log")); diff != "" {
		t.Errorf("ParseURL (-want +got):\n%s", diff)
	}
	if s := got.String(); strings.Contains(s, "pw") || s != "etcds://h:1/p" {
		t.Errorf("String() = %q, want etcds://h:1/p without the password", s)
	}
}
