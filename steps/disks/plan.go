package disks

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/takeover-dev/takeover/runbooks"
)

// Action is one decision of Plan. Cmd, when set, is a command to run on
// the rescue system, in order; Disk and Device, when set, say which device
// exports the runbook disk named Disk. Why explains the action in words fit
// for the journal and the plan output.
type Action struct {
	Cmd    string
	Why    string
	Disk   string
	Device string
	// Rediscover asks the caller to run the commands, discover again and
	// call Plan again: some disks are identified by label or UUID and may
	// live on arrays that are only now being assembled.
	Rediscover bool
}

// Errors of Plan; test with errors.Is.
var (
	// ErrDegraded: an array to assemble misses members and the runbook
	// does not allow running degraded.
	ErrDegraded = errors.New("md array degraded")
	// ErrMounted: a device to export is mounted on the rescue system.
	ErrMounted = errors.New("device mounted on the rescue system")
	// ErrNoDevice: a runbook disk matches no device, or several.
	ErrNoDevice = errors.New("no unique device for disk")
)

// Mapping returns the disk name → device path decisions of actions.
func Mapping(actions []Action) map[string]string {
	m := map[string]string{}
	for _, a := range actions {
		if a.Disk != "" {
			m[a.Disk] = a.Device
		}
	}
	return m
}

// normUUID puts array UUIDs in one form: mdadm prints 8:8:8:8, blkid and
// lsblk 8-4-4-4-12.
func normUUID(s string) string {
	return strings.ToLower(strings.NewReplacer(":", "", "-", "").Replace(s))
}

// mdPaths returns the names an md device goes by: /dev/md/1 and /dev/md1
// are the same array.
func mdPaths(p string) []string {
	out := []string{p}
	if rest, ok := strings.CutPrefix(p, "/dev/md/"); ok && isDigits(rest) {
		out = append(out, "/dev/md"+rest)
	}
	if rest, ok := strings.CutPrefix(p, "/dev/md"); ok && isDigits(rest) {
		out = append(out, "/dev/md/"+rest)
	}
	return out
}

func isDigits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}

// arrayState is what discovery says about one array.
type arrayState struct {
	MDArray
	members []string // present member paths
	active  string   // path of the running md device, if assembled
}

// Plan decides, from the rescue system's devices (lsblk, merged with blkid)
// and its md arrays (mdadm --examine --scan -v), which arrays to assemble
// and which device exports each of want. It returns commands as data and
// runs nothing.
//
// Arrays are assembled only when policy.Assemble is set, and only those a
// disk may need: the ones named by a disk's device, and all inactive ones
// when a disk identified by label or UUID is not found among the current
// devices (then the last action asks for Rediscover). An array missing
// members is assembled with --run only when policy.AllowDegraded; otherwise
// Plan fails with ErrDegraded naming the array and its present members.
//
// A disk maps to its explicit device (a path not under /dev/ is taken as a
// lab image file as is), or to the one device whose label and/or UUID
// match. Plan refuses (ErrNoDevice) a disk matching no device or several,
// a RAID member in place of its array, a filesystem type other than the
// runbook's, and two disks on one device; and (ErrMounted) a device that is
// mounted on the rescue system, or has a mounted partition or holder.
//
// A disk with an explicit device and a label and/or UUID is also refused
// (ErrNoDevice) when the device's filesystem has another label or UUID, or
// none: the rescue kernel may number disks differently from the primary's
// own. For an md array that is only being assembled the check needs a
// second look, so the last action asks for Rediscover. A lab image file is
// not inspected: its label and UUID are not compared.
func Plan(devs []BlockDevice, arrays []MDArray, want []runbooks.Disk, policy runbooks.RAID) ([]Action, error) {
	flat := Flatten(devs)
	byPath := map[string]BlockDevice{}
	for _, d := range flat {
		byPath[d.Path] = d
		byPath["/dev/"+d.KName] = d
	}
	states := arrayStates(devs, flat, arrays)

	var actions []Action
	assembling := map[string]bool{} // array device path → planned
	assemble := func(st arrayState, why string) error {
		if st.active != "" || assembling[st.Device] {
			return nil
		}
		if !policy.Assemble {
			return fmt.Errorf("md array %s (UUID %s) is not assembled and the runbook has raid.assemble false", st.Device, st.UUID)
		}
		cmd := fmt.Sprintf("mdadm --assemble %s --uuid=%s", st.Device, st.UUID)
		missing := st.NumDevices - len(st.members)
		if len(st.members) == 0 {
			return fmt.Errorf("%w: md array %s (UUID %s) has no members present", ErrDegraded, st.Device, st.UUID)
		}
		if missing > 0 {
			if !policy.AllowDegraded {
				return fmt.Errorf("%w: md array %s (UUID %s) has %d of %d members (%s), %d missing; set raid.allow_degraded to run it degraded",
					ErrDegraded, st.Device, st.UUID, len(st.members), st.NumDevices, strings.Join(st.members, ", "), missing)
			}
			cmd = fmt.Sprintf("mdadm --assemble --run %s --uuid=%s", st.Device, st.UUID)
			why += fmt.Sprintf("; degraded: %d of %d members, allowed by raid.allow_degraded", len(st.members), st.NumDevices)
		}
		cmd += " " + strings.Join(st.members, " ")
		assembling[st.Device] = true
		actions = append(actions, Action{Cmd: cmd, Why: why})
		return nil
	}

	findArray := func(dev string) (arrayState, bool) {
		for _, st := range states {
			for _, p := range mdPaths(dev) {
				for _, q := range mdPaths(st.Device) {
					if p == q || (st.active != "" && p == st.active) {
						return st, true
					}
				}
			}
		}
		return arrayState{}, false
	}

	used := map[string]string{} // device → disk
	var unresolved []string     // disks to find by label or uuid after assembling
	var unverified []string     // disks whose explicit array is assembled now: check its label/uuid after
	for _, d := range want {
		dev := d.Device
		if dev == "auto" {
			dev = ""
		}
		var target, why string
		switch {
		case dev != "" && !strings.HasPrefix(dev, "/dev/"):
			target, why = dev, "image file named by the runbook"
		case dev != "":
			if st, ok := findArray(dev); ok {
				if st.active != "" {
					if bd, ok := byPath[st.active]; ok {
						if err := checkDevice(d, bd, flat); err != nil {
							return nil, err
						}
					}
					target, why = st.active, fmt.Sprintf("md array %s named by the runbook, already assembled", st.Device)
					break
				}
				if err := assemble(st, fmt.Sprintf("assemble md array %s for disk %s", st.Device, d.Name)); err != nil {
					return nil, err
				}
				if d.Label != "" || d.UUID != "" {
					unverified = append(unverified, d.Name)
				}
				target, why = dev, fmt.Sprintf("md array %s named by the runbook, assembled above", st.Device)
				break
			}
			bd, ok := byPath[dev]
			if !ok {
				err := fmt.Errorf("%w: disk %s: device %s not found on the rescue system", ErrNoDevice, d.Name, dev)
				if strings.HasPrefix(dev, "/dev/md") && len(arrays) > 0 {
					// md numbers are not in the superblock: the rescue system
					// names arrays after their superblock name (/dev/md/www)
					var known []string
					for _, a := range arrays {
						known = append(known, fmt.Sprintf("%s (name %s, UUID %s)", a.Device, a.Name, a.UUID))
					}
					err = fmt.Errorf("%w; the md arrays found are %s: name one of those as device, or identify the disk by label or uuid with device: auto",
						err, strings.Join(known, ", "))
				}
				return nil, err
			}
			if err := checkDevice(d, bd, flat); err != nil {
				return nil, err
			}
			target, why = bd.Path, "device named by the runbook"
		default:
			if d.Label == "" && d.UUID == "" {
				return nil, fmt.Errorf("%w: disk %s: no device, label or uuid to find it by", ErrNoDevice, d.Name)
			}
			var matches []BlockDevice
			for _, bd := range flat {
				if isMember(bd) {
					continue
				}
				if (d.Label == "" || bd.Label == d.Label) && (d.UUID == "" || strings.EqualFold(bd.UUID, d.UUID)) {
					matches = append(matches, bd)
				}
			}
			if len(matches) == 0 {
				unresolved = append(unresolved, d.Name)
				continue
			}
			if len(matches) > 1 {
				var ps []string
				for _, m := range matches {
					ps = append(ps, m.Path)
				}
				return nil, fmt.Errorf("%w: disk %s: %s matches %d devices (%s)", ErrNoDevice, d.Name, describe(d), len(matches), strings.Join(ps, ", "))
			}
			if err := checkDevice(d, matches[0], flat); err != nil {
				return nil, err
			}
			target, why = matches[0].Path, "found by "+describe(d)
		}
		if other, ok := used[target]; ok {
			return nil, fmt.Errorf("disks %s and %s both map to %s: one writer per device", other, d.Name, target)
		}
		used[target] = d.Name
		actions = append(actions, Action{Disk: d.Name, Device: target, Why: fmt.Sprintf("disk %s is %s: %s", d.Name, target, why)})
	}

	if len(unresolved) == 0 && len(unverified) > 0 {
		actions = append(actions, Action{Rediscover: true,
			Why: fmt.Sprintf("discover again after assembling: check the label or uuid of disk(s) %s", strings.Join(unverified, ", "))})
	}
	if len(unresolved) > 0 {
		var pending []arrayState
		for _, st := range states {
			if st.active == "" {
				pending = append(pending, st)
			}
		}
		if len(pending) == 0 || !policy.Assemble {
			return nil, fmt.Errorf("%w: %s: no device with that label or uuid on the rescue system", ErrNoDevice, strings.Join(unresolved, ", "))
		}
		for _, st := range pending {
			if err := assemble(st, fmt.Sprintf("assemble md array %s: it may hold disk(s) %s", st.Device, strings.Join(unresolved, ", "))); err != nil {
				return nil, err
			}
		}
		actions = append(actions, Action{Rediscover: true,
			Why: fmt.Sprintf("discover again after assembling: disk(s) %s are identified by label or uuid", strings.Join(unresolved, ", "))})
	}
	return actions, nil
}

func describe(d runbooks.Disk) string {
	var parts []string
	if d.Label != "" {
		parts = append(parts, "label "+d.Label)
	}
	if d.UUID != "" {
		parts = append(parts, "uuid "+d.UUID)
	}
	return strings.Join(parts, " and ")
}

func isMember(bd BlockDevice) bool {
	return bd.FSType == "linux_raid_member" || bd.FSType == "LVM2_member"
}

// checkDevice refuses a RAID/LVM member, a device whose label or UUID is
// not the runbook's, a wrong filesystem type and a mounted device (itself,
// a partition of it or a holder on it).
func checkDevice(d runbooks.Disk, bd BlockDevice, flat []BlockDevice) error {
	if isMember(bd) {
		return fmt.Errorf("%w: disk %s: %s is a %s; export the array or volume, not its member", ErrNoDevice, d.Name, bd.Path, bd.FSType)
	}
	if err := checkIdentity(d, bd); err != nil {
		return err
	}
	if d.FSType != "" && bd.FSType != "" && bd.FSType != d.FSType {
		return fmt.Errorf("%w: disk %s: %s holds %s, the runbook says %s", ErrNoDevice, d.Name, bd.Path, bd.FSType, d.FSType)
	}
	if mp := mountedBelow(bd, flat); mp != "" {
		return fmt.Errorf("%w: disk %s: %s; the rescue side never mounts what it exports: unmount it first", ErrMounted, d.Name, mp)
	}
	return nil
}

// checkIdentity refuses a device whose filesystem label or UUID (from
// lsblk merged with blkid) differs from the runbook's, naming both.
func checkIdentity(d runbooks.Disk, bd BlockDevice) error {
	labelOK := d.Label == "" || bd.Label == d.Label
	uuidOK := d.UUID == "" || strings.EqualFold(bd.UUID, d.UUID)
	if labelOK && uuidOK {
		return nil
	}
	var has []string
	if d.Label != "" {
		has = append(has, orNone("label", bd.Label))
	}
	if d.UUID != "" {
		has = append(has, orNone("uuid", bd.UUID))
	}
	return fmt.Errorf("%w: disk %s: %s has %s, the runbook says %s; the rescue kernel may number disks differently: check which device holds the filesystem, or set device: auto",
		ErrNoDevice, d.Name, bd.Path, strings.Join(has, " and "), describe(d))
}

func orNone(what, v string) string {
	if v == "" {
		return "no " + what
	}
	return what + " " + v
}

// mountedBelow describes the first mount on bd or on any device built on
// it, or returns "".
func mountedBelow(bd BlockDevice, flat []BlockDevice) string {
	children := map[string][]BlockDevice{}
	for _, d := range flat {
		if d.PKName != "" {
			children[d.PKName] = append(children[d.PKName], d)
		}
	}
	seen := map[string]bool{}
	var walk func(BlockDevice) string
	walk = func(d BlockDevice) string {
		if seen[d.KName] {
			return ""
		}
		seen[d.KName] = true
		if d.MountPoint != "" {
			return fmt.Sprintf("%s is mounted at %s", d.Path, d.MountPoint)
		}
		for _, c := range children[d.KName] {
			if s := walk(c); s != "" {
				return s
			}
		}
		return ""
	}
	return walk(bd)
}

// arrayStates joins the examined arrays with lsblk's view: which members
// are present and whether the array already runs.
func arrayStates(tree, flat []BlockDevice, arrays []MDArray) []arrayState {
	var out []arrayState
	for _, a := range arrays {
		st := arrayState{MDArray: a}
		members := map[string]bool{}
		for _, m := range a.Devices {
			members[m] = true
		}
		for _, d := range flat {
			if d.FSType == "linux_raid_member" && normUUID(d.UUID) == normUUID(a.UUID) {
				members[d.Path] = true
			}
		}
		for m := range members {
			st.members = append(st.members, m)
		}
		sort.Strings(st.members)
		if st.NumDevices == 0 {
			st.NumDevices = len(st.members) // unknown without -v: cannot tell degraded
		}
		// Running: a raid device sits on top of one of the members.
		var find func([]BlockDevice, bool)
		find = func(ds []BlockDevice, underMember bool) {
			for _, d := range ds {
				if underMember && strings.HasPrefix(d.Type, "raid") || underMember && d.Type == "md" {
					st.active = d.Path
					return
				}
				find(d.Children, members[d.Path])
			}
		}
		find(tree, false)
		out = append(out, st)
	}
	return out
}
