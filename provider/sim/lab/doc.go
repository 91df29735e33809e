// Package lab builds and tears down the tier-1 takeover lab: network
// namespaces on this machine that model an OVH setup, with real OpenSSH
// servers, a real ext4 disk image and a routed failover IP, driven by the OVH
// simulator in provider/sim.
//
// # Topology
//
// All names carry Config.Prefix (default "tk-"); all addresses come from
// [Config] (defaults shown):
//
//	tk-sw       the provider's router and switch: bridges brpub (10.200.0.1/24)
//	            and brpriv (the vRack, no address); leg "cli" 10.199.0.1/24
//	            towards the client; ip_forward on; the failover IP
//	            10.200.0.100/32 is routed "via" the main IP of its server.
//	tk-client   10.199.0.10/24, default route via 10.199.0.1
//	tk-primary  ns1.ip-10-200-0-11.eu: eth0 10.200.0.11, eth1 10.201.0.11,
//	            failover IP on lo
//	tk-spare    ns2.ip-10-200-0-12.eu: eth0 10.200.0.12, eth1 10.201.0.12,
//	            failover IP on lo, sshd (hostname "spare")
//	tk-ops      10.200.0.13 / 10.201.0.13: the orchestrator and the simulator
//	            (http://10.200.0.13:8080/1.0)
//
// The primary has two personalities. Its normal OS loop-mounts
// primary/www.img at primary/www, serves it with busybox httpd on port 80
// and runs sshd with a fixed host key under hostname "web1" (in the root
// mount namespace, so what it unmounts is unmounted for real). Its rescue
// system (after a reboot into a boot of type "rescue") runs only sshd, with a
// fresh host key per boot, hostname "rescue-customer-ns1", the simulator's
// rescueSshKey as its only authorized key, and fake /proc/cmdline and boot_id
// files in its private mount namespace. [Lab.RebootHook] and [Lab.MoveHook]
// are what the simulator calls to make its reboots and IP moves real.
//
// # Files
//
// Under Dir (default /run/takeover-lab, mode 0700); a static runbook for
// the default lab can name these paths:
//
//	ovh.conf                   go-ovh credentials for the simulator (0600):
//	                           [default] endpoint=http://10.200.0.13:8080/1.0
//	                           and a section of that name with the keys
//	keys/admin_ed25519(.pub)   operator key: root on the spare and on the
//	                           primary's normal OS
//	keys/rescue_ed25519(.pub)  rescue key pair: the runbook's rescue key,
//	                           whose public half becomes rescueSshKey
//	known_hosts                host keys of the spare and of the primary's
//	                           normal OS, by public and private address
//	keys/*_host_ed25519_key    those host keys
//	primary/www.img            the primary's disk (ext4, label "labwww":
//	                           index.html holding IndexBody, data/hello.txt)
//	primary/www                where the normal OS mounts it
//	primary/rescue/            the current rescue boot: fresh host key,
//	                           authorized_keys, fake cmdline and boot_id
//	spare/mnt/www, spare/nbd   mount point and nbdfuse directory for the
//	                           spare's import (mounts are global)
//	logs/<daemon>.log, state.json
//
// Inside the rescue system the disk image is also at /srv/disk/www.img
// (Config.RescueDisk), in the rescue's own mount namespace. Hosts are
// reached over SSH on port 22 of their public or private address; the
// rescue accepts only rescueSshKey as it was when the reboot ran.
//
// # Guarantees
//
// Everything the lab makes is recorded in Dir/state.json (namespaces,
// mounts, loop devices, processes by pid and start time) before or as it is
// made, and [Down] removes it by that record and by what it finds: every
// namespace with the prefix, every process inside them, every mount under
// Dir, every loop device backed by a file under Dir. Down then checks and
// returns an error naming whatever is left. Processes are only ever stopped
// by pid. Anything that mounts is started with nsenter --net (network
// namespace only), so its mounts land in the root mount namespace.
package lab
