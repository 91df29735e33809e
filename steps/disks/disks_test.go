package disks

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/takeover-dev/takeover/runbooks"
)

func read(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseLsblkCaptured(t *testing.T) {
	devs, err := ParseLsblk(read(t, "lsblk-loops.json"))
	if err != nil {
		t.Fatal(err)
	}
	want := []BlockDevice{
		{Name: "loop0", KName: "loop0", Path: "/dev/loop0", Type: "loop", Size: 67108864, MountPoint: "/tmp/diskcap.J5JF/mnt"},
		{Name: "loop1", KName: "loop1", Path: "/dev/loop1", Type: "loop", Size: 33554432},
		{Name: "loop2", KName: "loop2", Path: "/dev/loop2", Type: "loop", Size: 16777216},
		{Name: "loop3", KName: "loop3", Path: "/dev/loop3", Type: "loop", Size: 16777216},
		{Name: "zram0", KName: "zram0", Path: "/dev/zram0", Type: "disk"},
		{Name: "vda", KName: "vda", Path: "/dev/vda", Type: "disk", Size: 274877906944, MountPoint: "/"},
	}
	if diff := cmp.Diff(want, devs); diff != "" {
		t.Errorf("ParseLsblk (-want +got):\n%s", diff)
	}

	ids, err := ParseBlkid(read(t, "blkid-loops.txt"))
	if err != nil {
		t.Fatal(err)
	}
	merged := Merge(devs, ids)
	want[0].FSType, want[0].Label, want[0].UUID = "ext4", "www", "3f1c1b9e-5d7a-4e0b-9a51-2b0c6f1d7e42"
	want[1].FSType, want[1].Label, want[1].UUID = "ext4", "data", "56dc08c8-84ea-4164-b4f1-8d8f3303350b"
	want[3].FSType, want[3].Label, want[3].UUID = "swap", "swap0", "55cb98d1-759b-44c6-870c-acdb6fe1553d"
	if diff := cmp.Diff(want, merged); diff != "" {
		t.Errorf("Merge (-want +got):\n%s", diff)
	}
}

func TestParseLsblkTree(t *testing.T) {
	devs, err := ParseLsblk(read(t, "lsblk-rescue-raid1.json"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range Flatten(devs) {
		got = append(got, d.Path+" "+d.Type+" "+d.PKName+" "+d.Label)
	}
	want := []string{
		"/dev/sda disk  ", "/dev/sda1 part sda ns3001234:1", "/dev/md1 raid1 sda1 root",
		"/dev/sda2 part sda ns3001234:2", "/dev/md2 raid1 sda2 www",
		"/dev/sdb disk  ", "/dev/sdb1 part sdb ns3001234:1", "/dev/sdb2 part sdb ns3001234:2",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Flatten (-want +got):\n%s", diff)
	}
}

func TestParseLsblkErrors(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"not json", `lsblk: unknown column`, "parse lsblk json"},
		{"no key", `{"devices": []}`, `no "blockdevices"`},
		{"human size", `{"blockdevices":[{"name":"sda","size":"1.8T"}]}`, "run lsblk with -b"},
		{"string size ok", `{"blockdevices":[{"name":"sda","size":"1024"}]}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseLsblk([]byte(tt.in))
			if tt.want == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestParseBlkid(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []BlkidDevice
		wantErr string
	}{
		{name: "escaped and no blank line", in: "DEVNAME=/dev/sda1\nLABEL=my\\ disk\nTYPE=ext4\nDEVNAME=/dev/sda2\nTYPE=swap\n",
			want: []BlkidDevice{
				{DevName: "/dev/sda1", Label: "my disk", Type: "ext4", Tags: map[string]string{"DEVNAME": "/dev/sda1", "LABEL": "my disk", "TYPE": "ext4"}},
				{DevName: "/dev/sda2", Type: "swap", Tags: map[string]string{"DEVNAME": "/dev/sda2", "TYPE": "swap"}},
			}},
		{name: "empty", in: "", want: nil},
		{name: "garbage", in: "DEVNAME=/dev/sda1\nnonsense\n", wantErr: "line 2"},
		{name: "no devname", in: "TYPE=ext4\n\n", wantErr: "without DEVNAME"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseBlkid([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseMdadmExamineScan(t *testing.T) {
	tests := []struct {
		file string
		want []MDArray
	}{
		{"mdadm-examine-scan.txt", []MDArray{
			{Device: "/dev/md/1", Metadata: "1.2", UUID: "6b8b4567:327b23c6:643c9869:66334873", Name: "ns3001234:1"},
			{Device: "/dev/md/2", Metadata: "1.2", UUID: "74b0dc51:19495cff:2ae8944a:625558ec", Name: "ns3001234:2"},
		}},
		{"mdadm-examine-scan-v-degraded.txt", []MDArray{
			{Device: "/dev/md/1", Level: "raid1", Metadata: "1.2", NumDevices: 2, UUID: "6b8b4567:327b23c6:643c9869:66334873", Name: "ns3001234:1", Devices: []string{"/dev/sda1"}},
			{Device: "/dev/md/2", Level: "raid1", Metadata: "1.2", NumDevices: 2, UUID: "74b0dc51:19495cff:2ae8944a:625558ec", Name: "ns3001234:2", Devices: []string{"/dev/sda2"}},
			{Device: "/dev/md0", Level: "raid1", NumDevices: 2, UUID: "a1b2c3d4:e5f60718:293a4b5c:6d7e8f90", Spares: 1, Devices: []string{"/dev/sdc1", "/dev/sdd1", "/dev/sde1"}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, err := ParseMdadmExamineScan(read(t, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	for _, bad := range []string{"devices=/dev/sda1\n", "ARRAY /dev/md0 metadata=1.2\n", "ARRAY /dev/md0 UUID=x num-devices=two\n", "mdadm: No arrays found\n"} {
		if _, err := ParseMdadmExamineScan([]byte(bad)); err == nil {
			t.Errorf("ParseMdadmExamineScan(%q) succeeded", bad)
		}
	}
}

func TestParseMdstat(t *testing.T) {
	got, err := ParseMdstat(read(t, "mdstat-degraded-recovery.txt"))
	if err != nil {
		t.Fatal(err)
	}
	want := MDStat{
		Personalities: []string{"raid1", "linear", "multipath", "raid0", "raid6", "raid5", "raid4", "raid10"},
		Arrays: []MDStatArray{
			{Name: "md2", State: "active", Level: "raid1",
				Members: []MDMember{{Device: "sdb2", Slot: 2}, {Device: "sda2", Slot: 0}},
				Blocks:  1932409984, Super: "1.2", RaidDisks: 2, ActiveDisks: 1, Status: "U_",
				Sync:   &MDSync{Action: "recovery", Percent: 8.5, Done: 164254720, Total: 1932409984, Finish: "144.6min", Speed: "203712K/sec"},
				Bitmap: "15/15 pages [60KB], 65536KB chunk"},
			{Name: "md1", State: "active", Level: "raid1",
				Members: []MDMember{{Device: "sda1", Slot: 0}, {Device: "sdb1", Slot: 1, Faulty: true}},
				Blocks:  20955136, Super: "1.2", RaidDisks: 2, ActiveDisks: 1, Status: "U_"},
			{Name: "md3", State: "active", ReadOnly: "auto-read-only", Level: "raid1",
				Members: []MDMember{{Device: "sdc1", Slot: 1}, {Device: "sdd1", Slot: 0}},
				Blocks:  976630464, Super: "1.2", RaidDisks: 2, ActiveDisks: 2, Status: "UU",
				Sync: &MDSync{Action: "resync", Percent: -1, Pending: "PENDING"}},
			{Name: "md127", State: "inactive",
				Members: []MDMember{{Device: "sde1", Slot: 1, Spare: true}},
				Blocks:  976630488, Super: "1.2"},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	var degraded []string
	for _, a := range got.Arrays {
		if a.Degraded() {
			degraded = append(degraded, a.Name)
		}
	}
	if diff := cmp.Diff([]string{"md2", "md1"}, degraded); diff != "" {
		t.Errorf("Degraded (-want +got):\n%s", diff)
	}

	clean, err := ParseMdstat(read(t, "mdstat-clean.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(clean.Arrays) != 2 || clean.Arrays[0].Degraded() || clean.Arrays[1].Degraded() {
		t.Errorf("clean mdstat: %+v", clean.Arrays)
	}
	if _, err := ParseMdstat([]byte("Personalities : \nmd0 : active raid1 sda1\n")); err == nil {
		t.Error("member without slot accepted")
	}
}

func TestParseMdadmDetail(t *testing.T) {
	tests := []struct {
		file         string
		want         MDDetail
		wantDegraded bool
	}{
		{"mdadm-detail-degraded.txt", MDDetail{
			Device: "/dev/md2", Version: "1.2", Level: "raid1", ArraySize: 1932409984,
			RaidDevices: 2, TotalDevices: 1, State: []string{"clean", "degraded"},
			ActiveDevices: 1, WorkingDevices: 1, Name: "ns3001234:2",
			UUID: "74b0dc51:19495cff:2ae8944a:625558ec", Events: "48211",
			Members: []MDDetailMember{
				{Number: 0, Major: 8, Minor: 2, RaidDevice: 0, State: []string{"active", "sync"}, Device: "/dev/sda2"},
				{Number: -1, Major: 0, Minor: 0, RaidDevice: 1, State: []string{"removed"}},
			}}, true},
		{"mdadm-detail-clean.txt", MDDetail{
			Device: "/dev/md1", Version: "1.2", Level: "raid1", ArraySize: 20955136,
			RaidDevices: 2, TotalDevices: 3, State: []string{"clean"},
			ActiveDevices: 2, WorkingDevices: 3, SpareDevices: 1, Name: "ns3001234:1",
			UUID: "6b8b4567:327b23c6:643c9869:66334873", Events: "97",
			Members: []MDDetailMember{
				{Number: 0, Major: 8, Minor: 1, RaidDevice: 0, State: []string{"active", "sync"}, Device: "/dev/sda1"},
				{Number: 1, Major: 8, Minor: 17, RaidDevice: 1, State: []string{"active", "sync"}, Device: "/dev/sdb1"},
				{Number: 2, Major: 8, Minor: 33, RaidDevice: -1, State: []string{"spare"}, Device: "/dev/sdc1"},
			}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, err := ParseMdadmDetail(read(t, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if got.Degraded() != tt.wantDegraded {
				t.Errorf("Degraded() = %v", got.Degraded())
			}
		})
	}
	if _, err := ParseMdadmDetail([]byte("mdadm: cannot open /dev/md9: No such file or directory\n")); err == nil {
		t.Error("error output accepted")
	}
}

func TestPlan(t *testing.T) {
	loops := func(t *testing.T) []BlockDevice {
		devs, err := ParseLsblk(read(t, "lsblk-loops.json"))
		if err != nil {
			t.Fatal(err)
		}
		ids, err := ParseBlkid(read(t, "blkid-loops.txt"))
		if err != nil {
			t.Fatal(err)
		}
		return Merge(devs, ids)
	}
	lsblk := func(name string) func(*testing.T) []BlockDevice {
		return func(t *testing.T) []BlockDevice {
			devs, err := ParseLsblk(read(t, name))
			if err != nil {
				t.Fatal(err)
			}
			return devs
		}
	}
	examine := func(t *testing.T, name string) []MDArray {
		a, err := ParseMdadmExamineScan(read(t, name))
		if err != nil {
			t.Fatal(err)
		}
		return a[:2]
	}
	assembled := lsblk("lsblk-rescue-raid1.json")
	dead := lsblk("lsblk-rescue-unassembled-degraded.json")
	both := runbooks.RAID{Assemble: true, AllowDegraded: true}

	tests := []struct {
		name     string
		devs     func(*testing.T) []BlockDevice
		examine  string
		want     []runbooks.Disk
		policy   runbooks.RAID
		wantActs []Action
		wantErr  error
		errText  string
	}{
		{name: "loop by label", devs: loops,
			want:     []runbooks.Disk{{Name: "data", Label: "data", FSType: "ext4"}},
			wantActs: []Action{{Disk: "data", Device: "/dev/loop1", Why: "disk data is /dev/loop1: found by label data"}}},
		{name: "loop by uuid and device", devs: loops,
			want: []runbooks.Disk{{Name: "d", UUID: "56DC08C8-84EA-4164-B4F1-8D8F3303350B"}, {Name: "blank", Device: "/dev/loop2"}},
			wantActs: []Action{
				{Disk: "d", Device: "/dev/loop1", Why: "disk d is /dev/loop1: found by uuid 56DC08C8-84EA-4164-B4F1-8D8F3303350B"},
				{Disk: "blank", Device: "/dev/loop2", Why: "disk blank is /dev/loop2: device named by the runbook"},
			}},
		{name: "mounted on rescue refused", devs: loops,
			want: []runbooks.Disk{{Name: "www", Label: "www"}}, wantErr: ErrMounted,
			errText: "/dev/loop0 is mounted at /tmp/diskcap.J5JF/mnt"},
		{name: "mounted root disk refused", devs: loops,
			want: []runbooks.Disk{{Name: "os", Device: "/dev/vda"}}, wantErr: ErrMounted},
		{name: "fstype mismatch", devs: loops,
			want: []runbooks.Disk{{Name: "s", Label: "swap0", FSType: "ext4"}}, wantErr: ErrNoDevice, errText: "holds swap"},
		{name: "label not found, no arrays", devs: loops,
			want: []runbooks.Disk{{Name: "x", Label: "nope"}}, wantErr: ErrNoDevice},
		{name: "same device twice", devs: loops,
			want:    []runbooks.Disk{{Name: "a", Label: "data"}, {Name: "b", Device: "/dev/loop1"}},
			errText: "one writer per device"},
		{name: "lab image file", devs: loops,
			want:     []runbooks.Disk{{Name: "img", Device: "/srv/lab/www.img"}},
			wantActs: []Action{{Disk: "img", Device: "/srv/lab/www.img", Why: "disk img is /srv/lab/www.img: image file named by the runbook"}}},
		{name: "explicit device with matching label and uuid", devs: loops,
			want:     []runbooks.Disk{{Name: "d", Device: "/dev/loop1", Label: "data", UUID: "56DC08C8-84EA-4164-B4F1-8D8F3303350B"}},
			wantActs: []Action{{Disk: "d", Device: "/dev/loop1", Why: "disk d is /dev/loop1: device named by the runbook"}}},
		{name: "explicit device with another label", devs: loops,
			want: []runbooks.Disk{{Name: "www", Device: "/dev/loop1", Label: "www"}}, wantErr: ErrNoDevice,
			errText: "disk www: /dev/loop1 has label data, the runbook says label www; the rescue kernel may number disks differently"},
		{name: "explicit device with another uuid", devs: loops,
			want: []runbooks.Disk{{Name: "d", Device: "/dev/loop1", Label: "data", UUID: "3f1c1b9e-5d7a-4e0b-9a51-2b0c6f1d7e42"}}, wantErr: ErrNoDevice,
			errText: "/dev/loop1 has label data and uuid 56dc08c8-84ea-4164-b4f1-8d8f3303350b, the runbook says label data and uuid 3f1c1b9e-5d7a-4e0b-9a51-2b0c6f1d7e42"},
		{name: "explicit device without a label", devs: loops,
			want: []runbooks.Disk{{Name: "blank", Device: "/dev/loop2", Label: "blank"}}, wantErr: ErrNoDevice,
			errText: "/dev/loop2 has no label, the runbook says label blank"},
		{name: "lab image file: label not compared", devs: loops,
			want:     []runbooks.Disk{{Name: "img", Device: "/srv/lab/www.img", Label: "other"}},
			wantActs: []Action{{Disk: "img", Device: "/srv/lab/www.img", Why: "disk img is /srv/lab/www.img: image file named by the runbook"}}},
		{name: "assembled array with another label", devs: assembled, examine: "mdadm-examine-scan.txt",
			want: []runbooks.Disk{{Name: "www", Device: "/dev/md2", Label: "root"}}, wantErr: ErrNoDevice,
			errText: "/dev/md2 has label www, the runbook says label root"},
		{name: "array assembled now: label checked after rediscovery", devs: dead, examine: "mdadm-examine-scan-v-degraded.txt", policy: both,
			want: []runbooks.Disk{{Name: "www", Device: "/dev/md2", Label: "www"}},
			wantActs: []Action{
				{Cmd: "mdadm --assemble --run /dev/md/2 --uuid=74b0dc51:19495cff:2ae8944a:625558ec /dev/sda2",
					Why: "assemble md array /dev/md/2 for disk www; degraded: 1 of 2 members, allowed by raid.allow_degraded"},
				{Disk: "www", Device: "/dev/md2", Why: "disk www is /dev/md2: md array /dev/md/2 named by the runbook, assembled above"},
				{Rediscover: true, Why: "discover again after assembling: check the label or uuid of disk(s) www"},
			}},
		{name: "assembled array by label", devs: assembled, examine: "mdadm-examine-scan.txt", policy: both,
			want:     []runbooks.Disk{{Name: "www", Label: "www"}},
			wantActs: []Action{{Disk: "www", Device: "/dev/md2", Why: "disk www is /dev/md2: found by label www"}}},
		{name: "assembled array by /dev/md/2", devs: assembled, examine: "mdadm-examine-scan.txt",
			want:     []runbooks.Disk{{Name: "www", Device: "/dev/md/2"}},
			wantActs: []Action{{Disk: "www", Device: "/dev/md2", Why: "disk www is /dev/md2: md array /dev/md/2 named by the runbook, already assembled"}}},
		{name: "member refused", devs: assembled, examine: "mdadm-examine-scan.txt",
			want: []runbooks.Disk{{Name: "www", Device: "/dev/sda2"}}, wantErr: ErrNoDevice, errText: "not its member"},
		{name: "degraded refused", devs: dead, examine: "mdadm-examine-scan-v-degraded.txt",
			policy: runbooks.RAID{Assemble: true},
			want:   []runbooks.Disk{{Name: "www", Device: "/dev/md2"}}, wantErr: ErrDegraded,
			errText: "md array /dev/md/2 (UUID 74b0dc51:19495cff:2ae8944a:625558ec) has 1 of 2 members (/dev/sda2), 1 missing"},
		{name: "degraded allowed", devs: dead, examine: "mdadm-examine-scan-v-degraded.txt", policy: both,
			want: []runbooks.Disk{{Name: "www", Device: "/dev/md2"}},
			wantActs: []Action{
				{Cmd: "mdadm --assemble --run /dev/md/2 --uuid=74b0dc51:19495cff:2ae8944a:625558ec /dev/sda2",
					Why: "assemble md array /dev/md/2 for disk www; degraded: 1 of 2 members, allowed by raid.allow_degraded"},
				{Disk: "www", Device: "/dev/md2", Why: "disk www is /dev/md2: md array /dev/md/2 named by the runbook, assembled above"},
			}},
		{name: "assembly disabled", devs: dead, examine: "mdadm-examine-scan-v-degraded.txt",
			want: []runbooks.Disk{{Name: "www", Device: "/dev/md2"}}, errText: "raid.assemble false"},
		{name: "label behind unassembled arrays", devs: dead, examine: "mdadm-examine-scan-v-degraded.txt", policy: both,
			want: []runbooks.Disk{{Name: "www", Label: "www"}},
			wantActs: []Action{
				{Cmd: "mdadm --assemble --run /dev/md/1 --uuid=6b8b4567:327b23c6:643c9869:66334873 /dev/sda1",
					Why: "assemble md array /dev/md/1: it may hold disk(s) www; degraded: 1 of 2 members, allowed by raid.allow_degraded"},
				{Cmd: "mdadm --assemble --run /dev/md/2 --uuid=74b0dc51:19495cff:2ae8944a:625558ec /dev/sda2",
					Why: "assemble md array /dev/md/2: it may hold disk(s) www; degraded: 1 of 2 members, allowed by raid.allow_degraded"},
				{Rediscover: true, Why: "discover again after assembling: disk(s) www are identified by label or uuid"},
			}},
		{name: "members from lsblk when scan lacks -v", devs: dead, examine: "mdadm-examine-scan.txt", policy: runbooks.RAID{Assemble: true},
			want: []runbooks.Disk{{Name: "root", Device: "/dev/md1"}},
			wantActs: []Action{
				{Cmd: "mdadm --assemble /dev/md/1 --uuid=6b8b4567:327b23c6:643c9869:66334873 /dev/sda1",
					Why: "assemble md array /dev/md/1 for disk root"},
				{Disk: "root", Device: "/dev/md1", Why: "disk root is /dev/md1: md array /dev/md/1 named by the runbook, assembled above"},
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var arrays []MDArray
			if tt.examine != "" {
				arrays = examine(t, tt.examine)
			}
			got, err := Plan(tt.devs(t), arrays, tt.want, tt.policy)
			if tt.wantErr != nil || tt.errText != "" {
				if err == nil {
					t.Fatalf("Plan succeeded with %+v, want an error", got)
				}
				if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
					t.Errorf("error %v, want %v", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.errText) {
					t.Errorf("error %q lacks %q", err, tt.errText)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.wantActs, got); diff != "" {
				t.Errorf("Plan (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMapping(t *testing.T) {
	acts := []Action{{Cmd: "mdadm --assemble ..."}, {Disk: "www", Device: "/dev/md2"}, {Rediscover: true}}
	if diff := cmp.Diff(map[string]string{"www": "/dev/md2"}, Mapping(acts)); diff != "" {
		t.Error(diff)
	}
}
