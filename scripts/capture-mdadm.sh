#!/usr/bin/env bash
# capture-mdadm.sh captures real mdadm, /proc/mdstat, lsblk and blkid output
# from an md RAID1 for the parser tests of steps/disks. The host kernel of
# the development machine has no md driver, so the array is built inside a
# throw-away VM: the stock Debian kernel under qemu TCG (no KVM needed), a
# busybox initramfs, two small raw disks on virtio-blk.
#
# Usage (manual, as root; not run by the test suite):
#   scripts/install-deps.sh --tier2      # qemu-system-x86, mdadm, cpio
#   scripts/capture-mdadm.sh [OUTDIR]    # OUTDIR defaults to steps/disks/testdata
#
# Environment: KVER=6.1.0-56-amd64 picks the kernel ABI (default: the one
# linux-image-amd64 depends on); KEEP=1 keeps the temp dir for debugging.
# Network: only `apt-get download linux-image-$KVER` (the Debian mirror of
# the host's sources.list). Everything else happens under a temp dir that is
# removed on exit. Takes about 20 s plus the download (two TCG boots).
#
# Boot 1 ("create", disks A and B): mdadm --create a RAID1 /dev/md0 named
# www over /dev/vda and /dev/vdb, capture /proc/mdstat during the initial
# resync (throttled), wait for it, mkfs.ext4 -L www, capture the "clean" set,
# then mdadm --fail/--remove /dev/vdb and capture the "failed" set.
# Boot 2 ("dead-disk", disk A only, as a rescue system sees a server whose
# second disk died): capture the set before assembly, then
# mdadm --assemble --run /dev/md0 /dev/vda and capture the set again.
# A set is: mdadm --examine --scan -v, /proc/mdstat, mdadm --detail /dev/md0,
# lsblk -J -b -o NAME,KNAME,PATH,TYPE,SIZE,FSTYPE,LABEL,UUID,MOUNTPOINT,PKNAME,
# blkid -o export. The guest prints each output between
# "@@CAPTURE-BEGIN name@@" and "@@CAPTURE-END@@" on the serial console;
# the host writes it to OUTDIR/captured-vm-<name>.txt.
set -euo pipefail

die() { echo "capture-mdadm: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root"
for c in qemu-system-x86_64 mdadm cpio apt-get dpkg-deb strings gzip busybox lsblk blkid mke2fs; do
  command -v $c >/dev/null || die "$c missing: run scripts/install-deps.sh --tier2"
done
here=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$here/steps/disks/testdata}
[ -d "$out" ] || die "output directory $out does not exist"
out=$(cd "$out" && pwd)

T=$(mktemp -d /tmp/capture-mdadm.XXXXXX)
cleanup() { if [ "${KEEP:-}" = 1 ]; then echo "capture-mdadm: kept $T"; else rm -rf "$T"; fi; }
trap cleanup EXIT

# 1. The kernel and its modules, from the Debian package (not installed).
if [ -z "${KVER:-}" ]; then
  KVER=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/{sub("linux-image-","",$2); print $2; exit}')
fi
[ -n "$KVER" ] || die "cannot tell the kernel ABI from apt-cache depends linux-image-amd64; set KVER"
echo "capture-mdadm: downloading linux-image-$KVER"
(cd "$T" && apt-get download -q "linux-image-$KVER" >/dev/null) || die "apt-get download linux-image-$KVER failed"
dpkg-deb -x "$T"/linux-image-"${KVER}"_*.deb "$T/k"
rm -f "$T"/linux-image-*.deb
K=$T/k/boot/vmlinuz-$KVER
M=$T/k/lib/modules/$KVER
[ -f "$K" ] || die "no $K in the package"

# modfile NAME prints the .ko of a module ("-" and "_" are the same), or
# nothing when the module is built in.
modfile() {
  local re=${1//[-_]/[-_]}
  find "$M/kernel" -regex ".*/$re\.ko" | head -1
}
# loadorder NAME... prints the .ko files to insmod, dependencies first
# (from the depends= field of each module's .modinfo).
declare -A seen=()
loadorder() {
  local m f d
  for m in "$@"; do
    m=${m//-/_}
    [ -n "${seen[$m]:-}" ] && continue
    seen[$m]=1
    f=$(modfile "$m")
    if [ -z "$f" ]; then
      grep -q "/${m//[-_]/[-_]}\.ko$" "$M/modules.builtin" || die "module $m: no .ko and not built in"
      continue
    fi
    for d in $(strings "$f" | sed -n 's/^depends=//p' | tr ',' ' '); do loadorder "$d"; done
    echo "$f"
  done
}
mods=$(loadorder virtio_pci virtio_blk md_mod raid1)

# 2. The initramfs: busybox, the modules, mdadm, mke2fs, lsblk, blkid and
# their libraries.
R=$T/root
mkdir -p "$R"/{bin,sbin,proc,sys,dev,tmp,run,etc,lib/modules}
cp /bin/busybox "$R/bin/"
: > "$R/etc/modules.order"
for f in $mods; do
  cp "$f" "$R/lib/modules/"
  basename "$f" >> "$R/etc/modules.order"
done
cp /etc/mke2fs.conf "$R/etc/"
for b in $(command -v mdadm) $(command -v mke2fs) $(command -v lsblk) $(command -v blkid); do
  mkdir -p "$R$(dirname "$b")"
  cp "$b" "$R$b"
  for l in $(ldd "$b" | grep -o '/[^ ]*'); do
    mkdir -p "$R$(dirname "$l")"
    cp -L "$l" "$R$l"
  done
done
ln -s "$(command -v mke2fs)" "$R/sbin/mkfs.ext4"
echo "root:x:0:0:root:/root:/bin/sh" > "$R/etc/passwd"
cat > "$R/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/sbin:/usr/sbin:/bin:/usr/bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev; mount -t tmpfs run /run
echo 1 > /proc/sys/kernel/printk
for m in $(cat /etc/modules.order); do insmod /lib/modules/$m || echo "@@ERROR insmod $m@@"; done
hostname rescue
phase=$(sed -n 's/.*capture=\([a-z-]*\).*/\1/p' /proc/cmdline)
n=0; while [ ! -b /dev/vda ] && [ $n -lt 50 ]; do sleep 0.1; n=$((n+1)); done
cap() {  # cap NAME COMMAND...
  echo "@@CAPTURE-BEGIN $1@@"; shift
  "$@" 2>&1
  echo "@@CAPTURE-END@@"
}
capset() {  # capset SUFFIX: the full set
  cap examine-scan-v-$1 mdadm --examine --scan -v
  cap mdstat-$1 cat /proc/mdstat
  [ -b /dev/md0 ] && cap detail-$1 mdadm --detail /dev/md0
  cap lsblk-$1 lsblk -J -b -o NAME,KNAME,PATH,TYPE,SIZE,FSTYPE,LABEL,UUID,MOUNTPOINT,PKNAME
  cap blkid-$1 blkid -o export
}
echo; echo "@@INFO kernel=$(uname -r) mdadm=$(mdadm --version 2>&1)@@"
case $phase in
create)
  echo 50 > /proc/sys/dev/raid/speed_limit_max
  mdadm --create /dev/md0 --run --level=1 --raid-devices=2 --metadata=1.2 --name=www /dev/vda /dev/vdb 2>&1 || echo "@@ERROR create@@"
  sleep 1
  cap mdstat-resync cat /proc/mdstat
  echo 200000 > /proc/sys/dev/raid/speed_limit_max
  mdadm --wait /dev/md0
  mkfs.ext4 -q -L www /dev/md0 || echo "@@ERROR mkfs@@"
  sync
  capset clean
  mdadm /dev/md0 --fail /dev/vdb --remove /dev/vdb 2>&1 || echo "@@ERROR fail@@"
  sleep 1
  capset failed
  mdadm --stop /dev/md0
  ;;
dead-disk)
  capset unassembled
  mdadm --assemble --run /dev/md0 /dev/vda 2>&1 || echo "@@ERROR assemble@@"
  sleep 1
  capset assembled
  mdadm --stop /dev/md0
  ;;
*) echo "@@ERROR no capture= phase@@" ;;
esac
sync
echo "@@DONE@@"
poweroff -f
EOF
chmod +x "$R/init"
(cd "$R" && find . | cpio -o -H newc --quiet | gzip -1) > "$T/initrd.cpio.gz"

# 3. Two boots. Disk A and B are 64 MiB sparse raw images.
truncate -s 64M "$T/a.img" "$T/b.img"
boot() {  # boot PHASE DISK...
  local phase=$1 d args=() i=0
  shift
  for d in "$@"; do
    args+=(-drive "file=$d,format=raw,if=none,id=d$i,cache=unsafe" -device "virtio-blk-pci,drive=d$i")
    i=$((i + 1))
  done
  echo "capture-mdadm: boot $phase ($# disks)"
  timeout 300 qemu-system-x86_64 -accel tcg -cpu max -m 512 -smp 1 -M pc -nographic -no-reboot -net none \
    -kernel "$K" -initrd "$T/initrd.cpio.gz" \
    -append "console=ttyS0 panic=-1 quiet loglevel=1 capture=$phase" \
    "${args[@]}" < /dev/null > "$T/$phase.log" 2>&1 || true
  tr -d '\r' < "$T/$phase.log" > "$T/$phase.txt"
  grep -q '@@DONE@@' "$T/$phase.txt" || { tail -30 "$T/$phase.txt" >&2; die "boot $phase did not finish"; }
  if grep '@@ERROR' "$T/$phase.txt" >&2; then die "boot $phase failed (see above)"; fi
  sed -n 's/.*@@INFO \(.*\)@@$/capture-mdadm: guest \1/p' "$T/$phase.txt"
}
boot create "$T/a.img" "$T/b.img"
boot dead-disk "$T/a.img"

# 4. Extract the blocks.
for phase in create dead-disk; do
  awk -v dir="$out" '
    /^@@CAPTURE-BEGIN /{ name = $2; sub(/@@$/, "", name); f = dir "/captured-vm-" name ".txt"; printf "" > f; next }
    /^@@CAPTURE-END@@/{ close(f); print "capture-mdadm: wrote " f; f = ""; next }
    f != "" { print >> f }
  ' "$T/$phase.txt"
done
