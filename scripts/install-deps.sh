#!/usr/bin/env bash
# install-deps.sh installs the Debian packages that takeover's tests, lab and demo use.
# It is idempotent: packages already present are not downloaded again.
# Usage: scripts/install-deps.sh [--tier2]
set -euo pipefail
if [ "$(id -u)" != 0 ]; then
  echo "install-deps: must run as root (apt-get); re-run with sudo" >&2
  exit 2
fi
pkgs=(
  openssh-server openssh-client            # real sshd per lab host, ssh for tests
  nbd-server nbdkit libnbd-bin             # NBD export (nbd-server, nbdkit) and nbdfuse/nbdinfo
  fuse3 e2fsprogs util-linux iproute2      # nbdfuse mounts, mkfs.ext4/e2fsck/debugfs, losetup, ip netns
  nfs-ganesha nfs-ganesha-vfs rpcbind libnfs-utils   # NFS export and the user-space NFS client
  etcd-server etcd-client                  # team state store tests
  busybox-static curl procps psmisc ca-certificates make git bc
  gcc libc6-dev                            # cgo for go test -race
)
if [ "${1:-}" = "--tier2" ]; then
  pkgs+=(qemu-system-x86 nbd-client mdadm lvm2 cpio)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#pkgs[@]} packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
