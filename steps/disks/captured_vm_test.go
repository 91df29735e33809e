package disks

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/takeover-dev/takeover/runbooks"
)

// The captured-vm-* files are real output of mdadm 4.2, util-linux 2.38.1
// and Linux 6.1.0-56-amd64, captured by scripts/capture-mdadm.sh in a TCG VM
// (see testdata/README). Their UUIDs come from that one run.
const (
	vmArrayUUID = "c20adc42:9c63719c:16262f63:ec263e33"  // md superblock, as mdadm prints it
	vmArrayBlk  = "c20adc42-9c63-719c-1626-2f63ec263e33" // the same, as blkid prints it
	vmFSUUID    = "3f3805af-bd4c-4415-8dd9-0517520ab8e0" // ext4 on /dev/md0
	vmSubA      = "0d43ad5d-5188-1505-5558-dde819e5ecf6" // member /dev/vda
	vmSubB      = "865b20d1-c26f-f018-dd86-4cb7679c81b1" // member /dev/vdb
	vmMDSize    = 66060288                               // bytes of /dev/md0
	vmDiskSize  = 67108864                               // bytes of /dev/vda, /dev/vdb
)

func TestParseMdadmExamineScanCapturedVM(t *testing.T) {
	both := []string{"/dev/vdb", "/dev/vda"}
	tests := []struct {
		file    string
		devices []string
	}{
		{"captured-vm-examine-scan-v-clean.txt", both},
		// vdb was failed and removed, but its superblock still names the array.
		{"captured-vm-examine-scan-v-failed.txt", both},
		{"captured-vm-examine-scan-v-unassembled.txt", []string{"/dev/vda"}},
		{"captured-vm-examine-scan-v-assembled.txt", []string{"/dev/vda"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, err := ParseMdadmExamineScan(read(t, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			want := []MDArray{{Device: "/dev/md/www", Level: "raid1", Metadata: "1.2", NumDevices: 2,
				UUID: vmArrayUUID, Name: "rescue:www", Devices: tt.devices}}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseMdstatCapturedVM(t *testing.T) {
	members := func(ms ...MDMember) []MDMember { return ms }
	vda, vdb := MDMember{Device: "vda", Slot: 0}, MDMember{Device: "vdb", Slot: 1}
	md0 := func(m []MDMember, active int, status string, sync *MDSync) []MDStatArray {
		return []MDStatArray{{Name: "md0", State: "active", Level: "raid1", Members: m, Blocks: 64512, Super: "1.2",
			RaidDisks: 2, ActiveDisks: active, Status: status, Sync: sync}}
	}
	tests := []struct {
		file         string
		arrays       []MDStatArray
		wantDegraded bool
	}{
		{"captured-vm-mdstat-resync.txt", md0(members(vdb, vda), 2, "UU",
			&MDSync{Action: "resync", Percent: 2.3, Done: 1792, Total: 64512, Finish: "0.5min", Speed: "1792K/sec"}), false},
		{"captured-vm-mdstat-clean.txt", md0(members(vdb, vda), 2, "UU", nil), false},
		{"captured-vm-mdstat-failed.txt", md0(members(vda), 1, "U_", nil), true},
		{"captured-vm-mdstat-unassembled.txt", nil, false},
		{"captured-vm-mdstat-assembled.txt", md0(members(vda), 1, "U_", nil), true},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, err := ParseMdstat(read(t, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			want := MDStat{Personalities: []string{"raid1"}, Arrays: tt.arrays}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			for _, a := range got.Arrays {
				if a.Degraded() != tt.wantDegraded {
					t.Errorf("%s: Degraded() = %v, want %v", a.Name, a.Degraded(), tt.wantDegraded)
				}
			}
		})
	}
}

func TestParseMdadmDetailCapturedVM(t *testing.T) {
	memA := MDDetailMember{Number: 0, Major: 254, Minor: 0, RaidDevice: 0, State: []string{"active", "sync"}, Device: "/dev/vda"}
	memB := MDDetailMember{Number: 1, Major: 254, Minor: 16, RaidDevice: 1, State: []string{"active", "sync"}, Device: "/dev/vdb"}
	removed := MDDetailMember{Number: -1, Major: 0, Minor: 0, RaidDevice: 1, State: []string{"removed"}}
	detail := func(total int, state []string, active int, events string, members ...MDDetailMember) MDDetail {
		return MDDetail{Device: "/dev/md0", Version: "1.2", Level: "raid1", ArraySize: 64512,
			RaidDevices: 2, TotalDevices: total, State: state, ActiveDevices: active, WorkingDevices: active,
			Name: "rescue:www", UUID: vmArrayUUID, Events: events, Members: members}
	}
	tests := []struct {
		file         string
		want         MDDetail
		wantDegraded bool
	}{
		// Just after mkfs the array still has writes in flight: "active", not "clean".
		{"captured-vm-detail-clean.txt", detail(2, []string{"active"}, 2, "18", memA, memB), false},
		{"captured-vm-detail-failed.txt", detail(1, []string{"clean", "degraded"}, 1, "21", memA, removed), true},
		{"captured-vm-detail-assembled.txt", detail(1, []string{"clean", "degraded"}, 1, "21", memA, removed), true},
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
				t.Errorf("Degraded() = %v, want %v", got.Degraded(), tt.wantDegraded)
			}
		})
	}
}

// vmDevices returns lsblk-<set> merged with blkid-<set>.
func vmDevices(t *testing.T, set string) []BlockDevice {
	t.Helper()
	devs, err := ParseLsblk(read(t, "captured-vm-lsblk-"+set+".txt"))
	if err != nil {
		t.Fatal(err)
	}
	ids, err := ParseBlkid(read(t, "captured-vm-blkid-"+set+".txt"))
	if err != nil {
		t.Fatal(err)
	}
	return Merge(devs, ids)
}

func TestParseLsblkBlkidCapturedVM(t *testing.T) {
	disk := func(name string, children ...BlockDevice) BlockDevice {
		return BlockDevice{Name: name, KName: name, Path: "/dev/" + name, Type: "disk", Size: vmDiskSize, Children: children}
	}
	md0 := func(parent string) BlockDevice {
		return BlockDevice{Name: "md0", KName: "md0", Path: "/dev/md0", Type: "raid1", Size: vmMDSize, PKName: parent}
	}
	tests := []struct {
		set  string
		want []BlockDevice
	}{
		// The array appears under each member; no udev, so no FSTYPE/LABEL/UUID.
		{"clean", []BlockDevice{disk("vda", md0("vda")), disk("vdb", md0("vdb"))}},
		{"failed", []BlockDevice{disk("vda", md0("vda")), disk("vdb")}},
		{"unassembled", []BlockDevice{disk("vda")}},
		{"assembled", []BlockDevice{disk("vda", md0("vda"))}},
	}
	for _, tt := range tests {
		t.Run(tt.set, func(t *testing.T) {
			got, err := ParseLsblk(read(t, "captured-vm-lsblk-"+tt.set+".txt"))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseLsblk (-want +got):\n%s", diff)
			}
		})
	}

	member := func(dev, sub string) BlkidDevice {
		return BlkidDevice{DevName: dev, Type: "linux_raid_member", Label: "rescue:www", UUID: vmArrayBlk,
			Tags: map[string]string{"DEVNAME": dev, "TYPE": "linux_raid_member", "LABEL": "rescue:www", "UUID": vmArrayBlk, "UUID_SUB": sub}}
	}
	fs := BlkidDevice{DevName: "/dev/md0", Type: "ext4", Label: "www", UUID: vmFSUUID,
		Tags: map[string]string{"DEVNAME": "/dev/md0", "TYPE": "ext4", "LABEL": "www", "UUID": vmFSUUID, "BLOCK_SIZE": "1024"}}
	a, b := member("/dev/vda", vmSubA), member("/dev/vdb", vmSubB)
	blkid := []struct {
		set  string
		want []BlkidDevice
	}{
		{"clean", []BlkidDevice{b, fs, a}},
		{"failed", []BlkidDevice{b, fs, a}},
		{"unassembled", []BlkidDevice{a}},
		{"assembled", []BlkidDevice{a, fs}},
	}
	for _, tt := range blkid {
		t.Run("blkid-"+tt.set, func(t *testing.T) {
			got, err := ParseBlkid(read(t, "captured-vm-blkid-"+tt.set+".txt"))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseBlkid (-want +got):\n%s", diff)
			}
		})
	}

	var got []string
	for _, d := range Flatten(vmDevices(t, "clean")) {
		got = append(got, strings.Join([]string{d.Path, d.Type, d.FSType, d.Label, d.UUID}, " "))
	}
	want := []string{
		"/dev/vda disk linux_raid_member rescue:www " + vmArrayBlk,
		"/dev/md0 raid1 ext4 www " + vmFSUUID,
		"/dev/vdb disk linux_raid_member rescue:www " + vmArrayBlk,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Flatten(Merge) (-want +got):\n%s", diff)
	}
}

// TestPlanCapturedVM plans on a real rescue view: disk B is gone, the
// array is not assembled (unassembled set), then after
// mdadm --assemble --run (assembled set), and on the healthy array.
func TestPlanCapturedVM(t *testing.T) {
	examine := func(t *testing.T, set string) []MDArray {
		a, err := ParseMdadmExamineScan(read(t, "captured-vm-examine-scan-v-"+set+".txt"))
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	assembleCmd := "mdadm --assemble --run /dev/md/www --uuid=" + vmArrayUUID + " /dev/vda"
	degradedWhy := "; degraded: 1 of 2 members, allowed by raid.allow_degraded"
	tests := []struct {
		name     string
		set      string
		want     []runbooks.Disk
		policy   runbooks.RAID
		wantActs []Action
		wantErr  error
		errText  string
	}{
		{name: "degraded refused", set: "unassembled", policy: runbooks.RAID{Assemble: true, AllowDegraded: false},
			want: []runbooks.Disk{{Name: "www", Device: "/dev/md/www"}}, wantErr: ErrDegraded,
			errText: "md array /dev/md/www (UUID " + vmArrayUUID + ") has 1 of 2 members (/dev/vda), 1 missing"},
		{name: "degraded refused, by label", set: "unassembled", policy: runbooks.RAID{Assemble: true, AllowDegraded: false},
			want: []runbooks.Disk{{Name: "www", Label: "www"}}, wantErr: ErrDegraded, errText: "1 missing"},
		{name: "degraded allowed", set: "unassembled", policy: runbooks.RAID{Assemble: true, AllowDegraded: true},
			want: []runbooks.Disk{{Name: "www", Device: "/dev/md/www", Label: "www"}},
			wantActs: []Action{
				{Cmd: assembleCmd, Why: "assemble md array /dev/md/www for disk www" + degradedWhy},
				{Disk: "www", Device: "/dev/md/www", Why: "disk www is /dev/md/www: md array /dev/md/www named by the runbook, assembled above"},
				{Rediscover: true, Why: "discover again after assembling: check the label or uuid of disk(s) www"},
			}},
		{name: "degraded allowed, by label", set: "unassembled", policy: runbooks.RAID{Assemble: true, AllowDegraded: true},
			want: []runbooks.Disk{{Name: "www", Label: "www", FSType: "ext4"}},
			wantActs: []Action{
				{Cmd: assembleCmd, Why: "assemble md array /dev/md/www: it may hold disk(s) www" + degradedWhy},
				{Rediscover: true, Why: "discover again after assembling: disk(s) www are identified by label or uuid"},
			}},
		{name: "member refused", set: "unassembled", policy: runbooks.RAID{Assemble: true, AllowDegraded: true},
			want: []runbooks.Disk{{Name: "www", Device: "/dev/vda"}}, wantErr: ErrNoDevice,
			errText: "/dev/vda is a linux_raid_member"},
		{name: "after assembly: by label", set: "assembled", policy: runbooks.RAID{Assemble: true, AllowDegraded: false},
			want:     []runbooks.Disk{{Name: "www", Label: "www", UUID: vmFSUUID, FSType: "ext4"}},
			wantActs: []Action{{Disk: "www", Device: "/dev/md0", Why: "disk www is /dev/md0: found by label www and uuid " + vmFSUUID}}},
		{name: "after assembly: by array name", set: "assembled", policy: runbooks.RAID{Assemble: true, AllowDegraded: false},
			want:     []runbooks.Disk{{Name: "www", Device: "/dev/md/www", Label: "www"}},
			wantActs: []Action{{Disk: "www", Device: "/dev/md0", Why: "disk www is /dev/md0: md array /dev/md/www named by the runbook, already assembled"}}},
		{name: "after assembly: another label", set: "assembled", policy: runbooks.RAID{Assemble: true},
			want: []runbooks.Disk{{Name: "data", Device: "/dev/md0", Label: "data"}}, wantErr: ErrNoDevice,
			errText: "/dev/md0 has label www, the runbook says label data"},
		{name: "healthy: by label", set: "clean",
			want:     []runbooks.Disk{{Name: "www", Label: "www"}},
			wantActs: []Action{{Disk: "www", Device: "/dev/md0", Why: "disk www is /dev/md0: found by label www"}}},
		{name: "failed member still running: by array name", set: "failed",
			want:     []runbooks.Disk{{Name: "www", Device: "/dev/md/www"}},
			wantActs: []Action{{Disk: "www", Device: "/dev/md0", Why: "disk www is /dev/md0: md array /dev/md/www named by the runbook, already assembled"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Plan(vmDevices(t, tt.set), examine(t, tt.set), tt.want, tt.policy)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Plan = %+v, %v; want %v", got, err, tt.wantErr)
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
