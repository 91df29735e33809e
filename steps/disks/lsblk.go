package disks

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
)

// LsblkColumns are the columns ParseLsblk expects:
// lsblk -J -b -o LsblkColumns.
const LsblkColumns = "NAME,KNAME,PATH,TYPE,SIZE,FSTYPE,LABEL,UUID,MOUNTPOINT,PKNAME"

// LsblkCommand is the discovery command whose output ParseLsblk reads.
const LsblkCommand = "lsblk -J -b -o " + LsblkColumns

// BlockDevice is one node of lsblk's device tree. Empty strings stand for
// lsblk's nulls. An md array or LVM volume over several members appears
// under each of them.
type BlockDevice struct {
	Name       string        `json:"name"`
	KName      string        `json:"kname"`
	Path       string        `json:"path"`
	Type       string        `json:"type"` // disk, part, loop, raid1, lvm, rom, ...
	Size       uint64        `json:"size"` // bytes
	FSType     string        `json:"fstype"`
	Label      string        `json:"label"`
	UUID       string        `json:"uuid"`
	MountPoint string        `json:"mountpoint"`
	PKName     string        `json:"pkname"`
	Children   []BlockDevice `json:"children,omitempty"`
}

type lsblkJSON struct {
	BlockDevices []lsblkNode `json:"blockdevices"`
}

type lsblkNode struct {
	Name       *string         `json:"name"`
	KName      *string         `json:"kname"`
	Path       *string         `json:"path"`
	Type       *string         `json:"type"`
	Size       json.RawMessage `json:"size"`
	FSType     *string         `json:"fstype"`
	Label      *string         `json:"label"`
	UUID       *string         `json:"uuid"`
	MountPoint *string         `json:"mountpoint"`
	PKName     *string         `json:"pkname"`
	Children   []lsblkNode     `json:"children"`
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// ParseLsblk parses the JSON of LsblkCommand. SIZE may be a number (-b,
// util-linux ≥ 2.33) or a string of digits (older versions).
func ParseLsblk(data []byte) ([]BlockDevice, error) {
	var doc lsblkJSON
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("parse lsblk json: %w", err)
	}
	if doc.BlockDevices == nil {
		return nil, fmt.Errorf("parse lsblk json: no \"blockdevices\" key")
	}
	return convertNodes(doc.BlockDevices)
}

func convertNodes(nodes []lsblkNode) ([]BlockDevice, error) {
	var out []BlockDevice
	for _, n := range nodes {
		d := BlockDevice{
			Name: str(n.Name), KName: str(n.KName), Path: str(n.Path), Type: str(n.Type),
			FSType: str(n.FSType), Label: str(n.Label), UUID: str(n.UUID),
			MountPoint: str(n.MountPoint), PKName: str(n.PKName),
		}
		if d.Name == "" {
			return nil, fmt.Errorf("parse lsblk json: device without name")
		}
		if d.KName == "" {
			d.KName = d.Name
		}
		if d.Path == "" {
			d.Path = "/dev/" + d.KName
		}
		size, err := parseSize(n.Size)
		if err != nil {
			return nil, fmt.Errorf("parse lsblk json: size of %s: %w", d.Name, err)
		}
		d.Size = size
		if d.Children, err = convertNodes(n.Children); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

func parseSize(raw json.RawMessage) (uint64, error) {
	s := string(bytes.TrimSpace(raw))
	if s == "" || s == "null" {
		return 0, nil
	}
	if uq, err := strconv.Unquote(s); err == nil {
		s = uq
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a byte count (run lsblk with -b)", s)
	}
	return n, nil
}

// Flatten lists every device of the tree once (by kernel name), parents
// before children, in lsblk's order.
func Flatten(devs []BlockDevice) []BlockDevice {
	var out []BlockDevice
	seen := map[string]bool{}
	var walk func([]BlockDevice)
	walk = func(ds []BlockDevice) {
		for _, d := range ds {
			if !seen[d.KName] {
				seen[d.KName] = true
				flat := d
				flat.Children = nil
				out = append(out, flat)
			}
			walk(d.Children)
		}
	}
	walk(devs)
	return out
}
