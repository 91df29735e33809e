package disks

import (
	"bufio"
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// MDArray is one ARRAY line of `mdadm --examine --scan` (with -v: level,
// num-devices and the devices line).
type MDArray struct {
	Device     string   // /dev/md/1, /dev/md0, ...
	Metadata   string   // 1.2, 0.90, ...
	UUID       string   // as mdadm prints it: 8:8:8:8 hex
	Name       string   // host:name (metadata 1.x)
	Level      string   // raid1, ... (-v only)
	NumDevices int      // raid devices, 0 when not printed
	Spares     int      // spares=
	Devices    []string // members found by the scan (-v only)
}

// ParseMdadmExamineScan parses `mdadm --examine --scan [-v]`. A devices=
// line belongs to the ARRAY line before it.
func ParseMdadmExamineScan(data []byte) ([]MDArray, error) {
	var out []MDArray
	sc := bufio.NewScanner(bytes.NewReader(data))
	n := 0
	for sc.Scan() {
		n++
		raw := sc.Text()
		line := strings.TrimSpace(raw)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if fields[0] != "ARRAY" {
			// A continuation line: "   devices=/dev/sda1,/dev/sdb1".
			if len(out) == 0 || (raw[0] != ' ' && raw[0] != '\t') {
				return nil, fmt.Errorf("parse mdadm --examine --scan: line %d: unexpected %q", n, line)
			}
			if err := setMDField(&out[len(out)-1], fields); err != nil {
				return nil, fmt.Errorf("parse mdadm --examine --scan: line %d: %w", n, err)
			}
			continue
		}
		var a MDArray
		rest := fields[1:]
		if len(rest) > 0 && !strings.Contains(rest[0], "=") {
			a.Device, rest = rest[0], rest[1:]
		}
		if err := setMDField(&a, rest); err != nil {
			return nil, fmt.Errorf("parse mdadm --examine --scan: line %d: %w", n, err)
		}
		if a.UUID == "" {
			return nil, fmt.Errorf("parse mdadm --examine --scan: line %d: ARRAY without UUID", n)
		}
		out = append(out, a)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("parse mdadm --examine --scan: %w", err)
	}
	return out, nil
}

func setMDField(a *MDArray, fields []string) error {
	for _, f := range fields {
		key, val, ok := strings.Cut(f, "=")
		if !ok {
			return fmt.Errorf("%q is not key=value", f)
		}
		var err error
		switch strings.ToLower(key) {
		case "metadata":
			a.Metadata = val
		case "uuid":
			a.UUID = val
		case "name":
			a.Name = val
		case "level":
			a.Level = val
		case "num-devices":
			a.NumDevices, err = strconv.Atoi(val)
		case "spares":
			a.Spares, err = strconv.Atoi(val)
		case "devices":
			a.Devices = strings.Split(val, ",")
		}
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
	}
	return nil
}

// MDStat is /proc/mdstat.
type MDStat struct {
	Personalities []string
	Arrays        []MDStatArray
}

// MDStatArray is one array of /proc/mdstat.
type MDStatArray struct {
	Name     string // md1
	State    string // active, inactive
	ReadOnly string // "", "read-only", "auto-read-only"
	Level    string // raid1, ... (empty when inactive)
	Members  []MDMember
	Blocks   uint64 // 1 KiB blocks
	Super    string // superblock version, e.g. 1.2
	// RaidDisks and ActiveDisks are [n/m]; Status is [UU_] (U up, _ down).
	RaidDisks, ActiveDisks int
	Status                 string
	Sync                   *MDSync // a resync, recovery, reshape or check, if any
	Bitmap                 string
}

// Degraded reports whether fewer members are active than the array has
// slots.
func (a MDStatArray) Degraded() bool { return a.RaidDisks > 0 && a.ActiveDisks < a.RaidDisks }

// MDMember is one member in an mdstat line, such as sdb1[1](F).
type MDMember struct {
	Device      string // sdb1
	Slot        int
	Faulty      bool // (F)
	Spare       bool // (S)
	WriteMostly bool // (W)
	Replacement bool // (R)
}

// MDSync is a running or pending resync, recovery, reshape or check.
type MDSync struct {
	Action      string  // resync, recovery, reshape, check, repair
	Percent     float64 // -1 when pending or delayed
	Done, Total uint64  // blocks
	Finish      string  // e.g. 71.6min
	Speed       string  // e.g. 203200K/sec
	Pending     string  // DELAYED, PENDING when not running
}

var (
	reMember   = regexp.MustCompile(`^([^\[\s]+)\[(\d+)\]((?:\([A-Z]\))*)$`)
	reDisks    = regexp.MustCompile(`\[(\d+)/(\d+)\]\s+\[([U_]+)\]`)
	reBlocks   = regexp.MustCompile(`^(\d+) blocks(?: super (\S+))?`)
	reProgress = regexp.MustCompile(`(resync|recovery|reshape|check|repair)\s*=\s*([\d.]+)%\s*\((\d+)/(\d+)\)(?:\s*finish=(\S+))?(?:\s*speed=(\S+))?`)
	rePending  = regexp.MustCompile(`^(resync|recovery|reshape|check|repair)\s*=\s*(\w+)$`)
	reArray    = regexp.MustCompile(`^(md\w*|md_d\d+)\s*:\s*(.*)$`)
)

// ParseMdstat parses /proc/mdstat.
func ParseMdstat(data []byte) (MDStat, error) {
	var st MDStat
	var cur *MDStatArray
	sc := bufio.NewScanner(bytes.NewReader(data))
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "":
			cur = nil
		case strings.HasPrefix(line, "Personalities :"):
			for _, p := range strings.Fields(strings.TrimPrefix(line, "Personalities :")) {
				st.Personalities = append(st.Personalities, strings.Trim(p, "[]"))
			}
		case strings.HasPrefix(line, "unused devices:"):
			cur = nil
		case reArray.MatchString(line):
			m := reArray.FindStringSubmatch(line)
			a, err := parseMDHead(m[1], strings.Fields(m[2]))
			if err != nil {
				return MDStat{}, fmt.Errorf("parse mdstat: line %d: %w", n, err)
			}
			st.Arrays = append(st.Arrays, a)
			cur = &st.Arrays[len(st.Arrays)-1]
		case cur == nil:
			return MDStat{}, fmt.Errorf("parse mdstat: line %d: unexpected %q", n, line)
		case reBlocks.MatchString(line):
			m := reBlocks.FindStringSubmatch(line)
			cur.Blocks, _ = strconv.ParseUint(m[1], 10, 64)
			cur.Super = m[2]
			if d := reDisks.FindStringSubmatch(line); d != nil {
				cur.RaidDisks, _ = strconv.Atoi(d[1])
				cur.ActiveDisks, _ = strconv.Atoi(d[2])
				cur.Status = d[3]
			}
		case reProgress.MatchString(line):
			m := reProgress.FindStringSubmatch(line)
			pct, _ := strconv.ParseFloat(m[2], 64)
			done, _ := strconv.ParseUint(m[3], 10, 64)
			total, _ := strconv.ParseUint(m[4], 10, 64)
			cur.Sync = &MDSync{Action: m[1], Percent: pct, Done: done, Total: total, Finish: m[5], Speed: m[6]}
		case rePending.MatchString(line):
			m := rePending.FindStringSubmatch(line)
			cur.Sync = &MDSync{Action: m[1], Percent: -1, Pending: m[2]}
		case strings.HasPrefix(line, "bitmap:"):
			cur.Bitmap = strings.TrimSpace(strings.TrimPrefix(line, "bitmap:"))
		default:
			// Other detail lines (e.g. "unused devices" variants) are not needed.
		}
	}
	if err := sc.Err(); err != nil {
		return MDStat{}, fmt.Errorf("parse mdstat: %w", err)
	}
	return st, nil
}

func parseMDHead(name string, f []string) (MDStatArray, error) {
	a := MDStatArray{Name: name}
	if len(f) == 0 {
		return a, fmt.Errorf("%s: no state", name)
	}
	a.State, f = f[0], f[1:]
	if len(f) > 0 && strings.HasPrefix(f[0], "(") {
		a.ReadOnly, f = strings.Trim(f[0], "()"), f[1:]
	}
	if a.State == "active" && len(f) > 0 && !reMember.MatchString(f[0]) {
		a.Level, f = f[0], f[1:]
	}
	for _, tok := range f {
		m := reMember.FindStringSubmatch(tok)
		if m == nil {
			return a, fmt.Errorf("%s: %q is not a member like sda1[0]", name, tok)
		}
		slot, _ := strconv.Atoi(m[2])
		mem := MDMember{Device: m[1], Slot: slot}
		mem.Faulty = strings.Contains(m[3], "(F)")
		mem.Spare = strings.Contains(m[3], "(S)")
		mem.WriteMostly = strings.Contains(m[3], "(W)")
		mem.Replacement = strings.Contains(m[3], "(R)")
		a.Members = append(a.Members, mem)
	}
	return a, nil
}

// MDDetail is `mdadm --detail /dev/mdX`.
type MDDetail struct {
	Device         string
	Version        string
	Level          string
	ArraySize      uint64 // KiB
	RaidDevices    int
	TotalDevices   int
	State          []string // e.g. clean, degraded, recovering
	ActiveDevices  int
	WorkingDevices int
	FailedDevices  int
	SpareDevices   int
	Name           string
	UUID           string
	Events         string
	RebuildStatus  string // e.g. "8% complete"
	Members        []MDDetailMember
}

// MDDetailMember is one row of the member table; RaidDevice is -1 for "-"
// (spare, faulty) and Device empty for a removed slot.
type MDDetailMember struct {
	Number, Major, Minor, RaidDevice int
	State                            []string // active sync, spare, faulty, removed, spare rebuilding
	Device                           string
}

// Degraded reports whether the array runs with members missing.
func (d MDDetail) Degraded() bool {
	for _, s := range d.State {
		if s == "degraded" {
			return true
		}
	}
	return d.RaidDevices > 0 && d.ActiveDevices < d.RaidDevices
}

// ParseMdadmDetail parses `mdadm --detail /dev/mdX`.
func ParseMdadmDetail(data []byte) (MDDetail, error) {
	var d MDDetail
	sc := bufio.NewScanner(bytes.NewReader(data))
	n := 0
	inTable := false
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		if d.Device == "" && strings.HasSuffix(line, ":") && strings.HasPrefix(line, "/") {
			d.Device = strings.TrimSuffix(line, ":")
			continue
		}
		if strings.HasPrefix(line, "Number") && strings.Contains(line, "RaidDevice") {
			inTable = true
			continue
		}
		if inTable {
			m, err := parseDetailRow(line)
			if err != nil {
				return MDDetail{}, fmt.Errorf("parse mdadm --detail: line %d: %w", n, err)
			}
			d.Members = append(d.Members, m)
			continue
		}
		key, val, ok := strings.Cut(line, " : ")
		if !ok {
			continue // e.g. "Consistency Policy" variants without value
		}
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		var err error
		switch key {
		case "Version":
			d.Version = val
		case "Raid Level":
			d.Level = val
		case "Array Size":
			d.ArraySize, err = strconv.ParseUint(strings.Fields(val)[0], 10, 64)
		case "Raid Devices":
			d.RaidDevices, err = strconv.Atoi(val)
		case "Total Devices":
			d.TotalDevices, err = strconv.Atoi(val)
		case "State":
			for _, s := range strings.Split(val, ",") {
				if s = strings.TrimSpace(s); s != "" {
					d.State = append(d.State, s)
				}
			}
		case "Active Devices":
			d.ActiveDevices, err = strconv.Atoi(val)
		case "Working Devices":
			d.WorkingDevices, err = strconv.Atoi(val)
		case "Failed Devices":
			d.FailedDevices, err = strconv.Atoi(val)
		case "Spare Devices":
			d.SpareDevices, err = strconv.Atoi(val)
		case "Name":
			d.Name = strings.Fields(val)[0] // drop "(local to host x)"
		case "UUID":
			d.UUID = val
		case "Events":
			d.Events = val
		case "Rebuild Status":
			d.RebuildStatus = val
		}
		if err != nil {
			return MDDetail{}, fmt.Errorf("parse mdadm --detail: line %d: %s: %w", n, key, err)
		}
	}
	if err := sc.Err(); err != nil {
		return MDDetail{}, fmt.Errorf("parse mdadm --detail: %w", err)
	}
	if d.UUID == "" || d.RaidDevices == 0 {
		return MDDetail{}, fmt.Errorf("parse mdadm --detail: no UUID or Raid Devices: not mdadm --detail output")
	}
	return d, nil
}

func parseDetailRow(line string) (MDDetailMember, error) {
	f := strings.Fields(line)
	if len(f) < 5 {
		return MDDetailMember{}, fmt.Errorf("short member row %q", line)
	}
	num := func(s string) (int, error) {
		if s == "-" {
			return -1, nil
		}
		return strconv.Atoi(s)
	}
	var m MDDetailMember
	var err error
	for i, p := range []*int{&m.Number, &m.Major, &m.Minor, &m.RaidDevice} {
		if *p, err = num(f[i]); err != nil {
			return m, fmt.Errorf("member row %q: %w", line, err)
		}
	}
	rest := f[4:]
	if last := rest[len(rest)-1]; strings.HasPrefix(last, "/") {
		m.Device, rest = last, rest[:len(rest)-1]
	}
	m.State = rest
	return m, nil
}
