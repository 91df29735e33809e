// Package disks reads what the rescue system reports about its disks and
// plans what to do with them before they are exported.
//
// The parsers are pure functions over the output of lsblk -J -b, blkid -o
// export, mdadm --examine --scan [-v], /proc/mdstat and mdadm --detail.
// They accept what those tools print in the versions found on rescue
// systems and fail with an error naming the line they cannot read, rather
// than guess.
//
// Plan turns the discovered devices, md arrays and the runbook's disks into
// commands (as data: the caller runs them over SSH and journals them) and
// into a mapping from each runbook disk to the device to export. It
// enforces the invariants of the data path: an md array is assembled
// degraded only if the runbook allows it; a runbook disk maps to exactly one
// device and no two disks share one; RAID members are never exported in
// place of their array; and nothing the rescue system has mounted is
// exported, because the rescue side never mounts what it exports.
//
// Without udev (minimal rescue images, containers) lsblk leaves FSTYPE,
// LABEL and UUID empty; Merge fills them in from blkid.
package disks
