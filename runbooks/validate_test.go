package runbooks

import (
	"os"
	"strings"
	"testing"
)

// parseVariant parses testdata/valid/minimal.yaml with old replaced by
// repl and returns the errors as one string ("" when valid).
func parseVariant(t *testing.T, old, repl string) string {
	t.Helper()
	data, err := os.ReadFile("testdata/valid/minimal.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), old) {
		t.Fatalf("minimal.yaml lacks %q", old)
	}
	_, err = Parse("v.yaml", []byte(strings.Replace(string(data), old, repl, 1)))
	if err != nil {
		return err.Error()
	}
	return ""
}

func TestEndpointURLs(t *testing.T) {
	tests := []struct {
		endpoint string
		err      string // "" for valid
	}{
		{"https://eu.api.ovh.com/1.0", ""},
		{"http://127.0.0.1:8080/1.0", ""},
		{"http://10.200.0.13:8080/1.0", ""},
		{"http://172.31.255.1/1.0", ""},
		{"http://192.168.1.1/1.0", ""},
		{"http://[::1]:8080/1.0", ""},
		{"http://[fd12:3456::1]/1.0", ""},
		{"http://[::ffff:10.0.0.1]/1.0", ""},
		{"http://203.0.113.5:8080/1.0", "plain-http endpoint"},
		{"http://172.32.0.1/1.0", "plain-http endpoint"},
		{"http://169.254.1.1/1.0", "plain-http endpoint"},
		{"http://[2001:db8::1]/1.0", "plain-http endpoint"},
		{"http://localhost:8080/1.0", "plain-http endpoint"},
		{"https://user@eu.api.ovh.com/1.0", "carries credentials"},
		{"http://user:pw@127.0.0.1/1.0", "carries credentials"},
		{"https://eu.api.ovh.com/1.0?", "query or fragment"},
		{"https://eu.api.ovh.com/1.0?a=b", "query or fragment"},
		{"https://eu.api.ovh.com/1.0#", "query or fragment"},
	}
	for _, tt := range tests {
		t.Run(tt.endpoint, func(t *testing.T) {
			got := parseVariant(t, "endpoint: ovh-eu", "endpoint: "+tt.endpoint)
			if tt.err == "" && got != "" || !strings.Contains(got, tt.err) {
				t.Errorf("got %q, want an error containing %q", got, tt.err)
			}
			if strings.Contains(got, "pw@") {
				t.Errorf("error repeats the password: %s", got)
			}
		})
	}
}

func TestHealthURLCredentialsRedacted(t *testing.T) {
	for _, u := range []string{"http://mon:hunter2@127.0.0.1/h", "http://mon:hunter2@[::1]:80/h?x=@", "https://hunter2@x/"} {
		got := parseVariant(t, "http: http://127.0.0.1/", "http: "+u)
		if !strings.Contains(got, "carries credentials") {
			t.Errorf("%s: got %q, want a credentials error", u, got)
		}
		if strings.Contains(got, "hunter2") {
			t.Errorf("%s: error repeats the secret: %s", u, got)
		}
	}
}

func TestSystemDirs(t *testing.T) {
	tests := []struct {
		path           string
		overlap, hides string
	}{
		{"/", "/bin", "/bin"}, // "/" has its own messages
		{"/etc", "/etc", "/etc"},
		{"/etc/copy", "/etc", ""},
		{"/var", "/var/lib", "/var/lib"},
		{"/var/lib", "/var/lib", "/var/lib"},
		{"/var/lib/postgresql", "/var/lib", ""},
		{"/var/library", "", ""},
		{"/var/www", "", ""},
		{"/lib", "/lib", "/lib"},
		{"/libx32/x", "/libx32", ""},
		{"/run/takeover-lab/mnt", "/run", ""},
		{"/srv/copy", "", ""},
		{"/usrdata", "", ""},
		{"/home", "", ""},
	}
	for _, tt := range tests {
		if got := systemOverlap(tt.path); got != tt.overlap {
			t.Errorf("systemOverlap(%q) = %q, want %q", tt.path, got, tt.overlap)
		}
		if got := hiddenSystemDir(tt.path); got != tt.hides {
			t.Errorf("hiddenSystemDir(%q) = %q, want %q", tt.path, got, tt.hides)
		}
	}
}
