package disks

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"
)

// BlkidDevice is one device of `blkid -o export`.
type BlkidDevice struct {
	DevName string
	Type    string // TYPE: ext4, xfs, swap, linux_raid_member, LVM2_member, ...
	Label   string
	UUID    string
	// Tags holds every KEY=value pair, including the ones above.
	Tags map[string]string
}

// ParseBlkid parses `blkid -o export`: KEY=value lines, one block per
// device, blocks separated by blank lines. Values are unescaped (blkid
// escapes shell-special characters with a backslash).
func ParseBlkid(data []byte) ([]BlkidDevice, error) {
	var out []BlkidDevice
	var cur *BlkidDevice
	flush := func(line int) error {
		if cur == nil {
			return nil
		}
		if cur.DevName == "" {
			return fmt.Errorf("parse blkid output: line %d: device block without DEVNAME", line)
		}
		out = append(out, *cur)
		cur = nil
		return nil
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			if err := flush(n); err != nil {
				return nil, err
			}
			continue
		}
		key, val, ok := strings.Cut(line, "=")
		if !ok || key == "" {
			return nil, fmt.Errorf("parse blkid output: line %d: %q is not KEY=value", n, line)
		}
		val = unescape(val)
		if key == "DEVNAME" && cur != nil {
			// Some versions print no blank line between devices.
			if err := flush(n); err != nil {
				return nil, err
			}
		}
		if cur == nil {
			cur = &BlkidDevice{Tags: map[string]string{}}
		}
		cur.Tags[key] = val
		switch key {
		case "DEVNAME":
			cur.DevName = val
		case "TYPE":
			cur.Type = val
		case "LABEL":
			cur.Label = val
		case "UUID":
			cur.UUID = val
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("parse blkid output: %w", err)
	}
	if err := flush(n + 1); err != nil {
		return nil, err
	}
	return out, nil
}

func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Merge returns devs with FSType, Label and UUID filled in from blkid where
// lsblk left them empty (lsblk reads them from udev, which minimal rescue
// systems lack). Devices are matched by path.
func Merge(devs []BlockDevice, ids []BlkidDevice) []BlockDevice {
	byPath := map[string]BlkidDevice{}
	for _, id := range ids {
		byPath[id.DevName] = id
	}
	var merge func([]BlockDevice) []BlockDevice
	merge = func(ds []BlockDevice) []BlockDevice {
		out := make([]BlockDevice, len(ds))
		for i, d := range ds {
			if id, ok := byPath[d.Path]; ok {
				if d.FSType == "" {
					d.FSType = id.Type
				}
				if d.Label == "" {
					d.Label = id.Label
				}
				if d.UUID == "" {
					d.UUID = id.UUID
				}
			}
			d.Children = merge(d.Children)
			if len(d.Children) == 0 {
				d.Children = nil
			}
			out[i] = d
		}
		return out
	}
	return merge(devs)
}
