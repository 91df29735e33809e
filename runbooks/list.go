package runbooks

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// DefaultDir is where `takeover runbook list` looks when given no directory.
const DefaultDir = "/etc/takeover/runbooks"

// Summary is one line of `takeover runbook list`. For an invalid file, Err
// holds its [ErrorList] (or the read error) and the other fields hold what
// could be decoded; Name falls back to the file name without extension.
type Summary struct {
	Name        string
	File        string
	Description string
	Primary     string // primary.server
	Spare       string // spare.server
	IPs         []netip.Prefix
	Err         error
}

// List reads every *.yaml and *.yml file directly in dir, sorted by file
// name. Invalid runbooks are listed with their error, not left out. The error
// is non-nil only when dir itself cannot be read.
func List(dir string) ([]Summary, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list runbooks: %w", err)
	}
	var out []Summary
	for _, e := range entries {
		ext := filepath.Ext(e.Name())
		if e.IsDir() || (ext != ".yaml" && ext != ".yml") {
			continue
		}
		file := filepath.Join(dir, e.Name())
		s := Summary{File: file, Name: strings.TrimSuffix(e.Name(), ext)}
		data, err := os.ReadFile(file)
		if err != nil {
			s.Err = fmt.Errorf("read runbook: %w", err)
			out = append(out, s)
			continue
		}
		rb, errs := parse(file, data)
		if rb.Name != "" {
			s.Name = rb.Name
		}
		s.Description = rb.Description
		s.Primary = rb.Primary.Server
		s.Spare = rb.Spare.Server
		for _, b := range rb.FailoverIPs {
			if b.IsValid() {
				s.IPs = append(s.IPs, b.Prefix)
			}
		}
		if len(errs) > 0 {
			s.Err = errs
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b Summary) int { return strings.Compare(a.File, b.File) })
	return out, nil
}

// ExpandPath expands a leading "~/" in a key or known_hosts path from a
// runbook to the current user's home directory; other paths are returned
// unchanged. Runbooks store paths as written.
func ExpandPath(p string) (string, error) {
	rest, ok := strings.CutPrefix(p, "~/")
	if !ok {
		return p, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("expand %s: %w", p, err)
	}
	return filepath.Join(home, rest), nil
}
