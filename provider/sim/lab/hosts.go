package lab

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Process names in State.Processes.
const (
	procServe        = "serve"
	procSpareSSHD    = "spare-sshd"
	procPrimarySSHD  = "primary-sshd"
	procPrimaryHTTPD = "primary-httpd"
	procRescueSSHD   = "rescue-sshd"
)

// makeImage builds the primary's disk: ext4 from a staging directory.
func makeImage(ctx context.Context, c Config) error {
	p := c.Paths()
	stage := filepath.Join(c.Dir, "primary", "staging")
	files := map[string]string{
		"index.html":        IndexBody,
		"data/hello.txt":    "hello from the primary's disk\n",
		"data/customers.db": strings.Repeat("row\n", 4096),
		"etc/service.conf":  "listen 80\nroot /\n",
	}
	for name, body := range files {
		f := filepath.Join(stage, name)
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			return fmt.Errorf("stage disk image: %w", err)
		}
		if err := os.WriteFile(f, []byte(body), 0o644); err != nil {
			return fmt.Errorf("stage disk image: %w", err)
		}
	}
	if _, err := run(ctx, "mkfs.ext4", "-q", "-F", "-L", "labwww", "-d", stage, p.Image, "32M"); err != nil {
		return fmt.Errorf("make disk image: %w", err)
	}
	return os.RemoveAll(stage)
}

func writeSSHDConfig(path, hostKey, authorizedKeys string) error {
	cfg := fmt.Sprintf(`Port 22
ListenAddress 0.0.0.0
HostKey %s
PidFile none
AuthorizedKeysFile %s
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
UseDNS no
Subsystem sftp internal-sftp
`, hostKey, authorizedKeys)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return fmt.Errorf("write sshd config: %w", err)
	}
	return nil
}

// sshdScript sets the hostname, optionally bind-mounts fake /proc/cmdline,
// boot_id and uptime files and shows the disk image at a local path (a tmpfs over
// that path's top directory, then a bind mount), then becomes sshd. It runs
// under unshare, so hostname and mounts are private to this "machine".
const sshdScript = `set -e
echo "$1" > /proc/sys/kernel/hostname
if [ -n "$3" ]; then
  # This private mount namespace starts as a copy of every mount on the
  # host, other labs' and tests' loop, FUSE and netns mounts included; a
  # copy would keep their loop devices and FUSE files busy after they
  # unmount. Drop them: this "machine" owns none of them.
  awk '{ for (i = 7; i <= NF; i++) if ($i == "-") { fs = $(i+1); src = $(i+2); break }
         if (fs ~ /^fuse/ || src ~ /^\/dev\/loop/ || fs == "nsfs") print $5 }' /proc/self/mountinfo |
    sort -r | while read -r m; do umount -l "$(printf '%b' "$m")" 2>/dev/null || true; done
  mount --bind "$3" /proc/cmdline
  mount --bind "$4" /proc/sys/kernel/random/boot_id
  mount --bind "$(dirname "$3")/uptime" /proc/uptime
  # the rescue's own name must resolve without DNS (the lab has none):
  # nfs-ganesha stalls for seconds on a hostname lookup otherwise
  printf '127.0.0.1 localhost %s\n' "$1" > "$(dirname "$3")/hosts"
  mount --bind "$(dirname "$3")/hosts" /etc/hosts
fi
if [ -n "$5" ]; then
  top=/$(echo "$6" | cut -d/ -f2)
  mount -t tmpfs -o mode=0755 lab-disk "$top"
  mkdir -p "$(dirname "$6")"
  : > "$6"
  mount --bind "$5" "$6"
fi
exec /usr/sbin/sshd -D -e -f "$2"`

// startSSHD starts sshd in role's namespace with its own UTS namespace and,
// when fakeDir is set, a private mount namespace with fake /proc files
// taken from fakeDir/cmdline and fakeDir/boot_id, and disk (if set) shown
// at diskAt.
func startSSHD(c Config, role, name, hostname, conf, fakeDir, disk, diskAt string) (Proc, error) {
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		return Proc{}, fmt.Errorf("start %s: %w", name, err)
	}
	argv := []string{"unshare", "--uts"}
	cmdline, bootID := "", ""
	if fakeDir != "" {
		argv = append(argv, "--mount", "--propagation", "private")
		cmdline, bootID = filepath.Join(fakeDir, "cmdline"), filepath.Join(fakeDir, "boot_id")
	}
	argv = append(argv, "sh", "-c", sshdScript, "sshd", hostname, conf, cmdline, bootID, disk, diskAt)
	p, err := startDaemon(c.NSPath(role), filepath.Join(c.Paths().Logs, name+".log"), argv...)
	if err != nil {
		return Proc{}, fmt.Errorf("start %s: %w", name, err)
	}
	p.Cmd = fmt.Sprintf("sshd -f %s (hostname %s)", conf, hostname)
	return p, nil
}

func newUUID() string {
	var b [16]byte
	rand.Read(b[:]) //nolint:errcheck // never fails
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// writeBootFiles writes the fake /proc/cmdline and boot_id of a boot and
// returns the boot id.
func writeBootFiles(dir, cmdline string) (string, error) {
	id := newUUID()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("write boot files: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cmdline"), []byte(cmdline+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("write boot files: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "boot_id"), []byte(id+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("write boot files: %w", err)
	}
	// The lab's "machines" share the host kernel, whose uptime says nothing
	// about a lab boot: show a just-booted uptime so that confirm-rescue's
	// "booted after our request" check sees this boot as fresh.
	if err := os.WriteFile(filepath.Join(dir, "uptime"), []byte("1.00 1.00\n"), 0o644); err != nil {
		return "", fmt.Errorf("write boot files: %w", err)
	}
	return id, nil
}

func hostAddr(h Host, port int) string {
	return netip.AddrPortFrom(h.Public.Addr(), uint16(port)).String()
}

// startSpare starts the spare's sshd (fixed host key, hostname "spare").
func (l *Lab) startSpare(ctx context.Context, st *State) error {
	c, p := l.cfg, l.cfg.Paths()
	conf := filepath.Join(c.Dir, "spare", "sshd_config")
	if err := writeSSHDConfig(conf, p.SpareHostKey, p.OperatorKey+".pub"); err != nil {
		return err
	}
	pr, err := startSSHD(c, roleSpare, procSpareSSHD, c.Spare.Hostname, conf, "", "", "")
	if err != nil {
		return err
	}
	st.Processes[procSpareSSHD] = pr
	st.Spare = PersonalityNormal
	return c.waitTCP(ctx, roleOps, hostAddr(c.Spare, 22), 10*time.Second)
}

// startNormal boots the primary's normal OS: mount its disk, httpd, sshd.
func (l *Lab) startNormal(ctx context.Context, st *State) error {
	c, p := l.cfg, l.cfg.Paths()
	out, err := run(ctx, "losetup", "-f", "--show", p.Image)
	if err != nil {
		return fmt.Errorf("boot primary normal OS: %w", err)
	}
	dev := strings.TrimSpace(out)
	st.Loops = appendLoop(st.Loops, Loop{Device: dev, Backing: p.Image})
	if err := os.MkdirAll(p.PrimaryMount, 0o755); err != nil {
		return fmt.Errorf("boot primary normal OS: %w", err)
	}
	if err := unix.Mount(dev, p.PrimaryMount, "ext4", 0, ""); err != nil {
		return fmt.Errorf("boot primary normal OS: mount %s on %s: %w", dev, p.PrimaryMount, err)
	}
	st.Mounts = appendUnique(st.Mounts, p.PrimaryMount)
	httpd, err := startDaemon(c.NSPath(rolePrimary), filepath.Join(p.Logs, procPrimaryHTTPD+".log"),
		"busybox", "httpd", "-f", "-p", "0.0.0.0:80", "-h", p.PrimaryMount)
	if err != nil {
		return fmt.Errorf("boot primary normal OS: %w", err)
	}
	st.Processes[procPrimaryHTTPD] = httpd
	// The normal OS shares the root mount namespace (what it unmounts is
	// unmounted for real, as planned mode needs) and so the host's own
	// /proc/cmdline and boot_id.
	id, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return fmt.Errorf("boot primary normal OS: %w", err)
	}
	conf := filepath.Join(c.Dir, "primary", "sshd_config")
	if err := writeSSHDConfig(conf, p.PrimaryHostKey, p.OperatorKey+".pub"); err != nil {
		return err
	}
	sshd, err := startSSHD(c, rolePrimary, procPrimarySSHD, c.Primary.Hostname, conf, "", "", "")
	if err != nil {
		return err
	}
	st.Processes[procPrimarySSHD] = sshd
	st.Primary, st.BootUUID = PersonalityNormal, strings.TrimSpace(string(id))
	if err := c.waitTCP(ctx, roleOps, hostAddr(c.Primary, 80), 10*time.Second); err != nil {
		return fmt.Errorf("boot primary normal OS: %w", err)
	}
	if err := c.waitTCP(ctx, roleOps, hostAddr(c.Primary, 22), 10*time.Second); err != nil {
		return fmt.Errorf("boot primary normal OS: %w", err)
	}
	return nil
}

// startRescue boots the primary's rescue system: sshd only, with a fresh
// host key, the provider's rescue key and fake /proc files saying rescue.
func (l *Lab) startRescue(ctx context.Context, st *State, kernel, rescueKey string) error {
	c, p := l.cfg, l.cfg.Paths()
	if err := os.RemoveAll(p.Rescue); err != nil {
		return fmt.Errorf("boot primary rescue: %w", err)
	}
	if err := os.MkdirAll(p.Rescue, 0o700); err != nil {
		return fmt.Errorf("boot primary rescue: %w", err)
	}
	hostKey := filepath.Join(p.Rescue, "ssh_host_ed25519_key")
	if _, err := writeKeyPair(hostKey, "root@"+c.RescueHostname); err != nil {
		return fmt.Errorf("boot primary rescue: %w", err)
	}
	// Real OVH mails a root password when no key is set; here nobody gets in.
	ak := filepath.Join(p.Rescue, "authorized_keys")
	body := ""
	if k := strings.TrimSpace(rescueKey); k != "" {
		body = k + "\n"
	}
	if err := os.WriteFile(ak, []byte(body), 0o600); err != nil {
		return fmt.Errorf("boot primary rescue: %w", err)
	}
	if kernel == "" {
		kernel = c.RescueKernel
	}
	id, err := writeBootFiles(p.Rescue, fmt.Sprintf("BOOT_IMAGE=/boot/bzImage-%s root=/dev/ram0 rw rescue=1 console=tty0", kernel))
	if err != nil {
		return err
	}
	conf := filepath.Join(p.Rescue, "sshd_config")
	if err := writeSSHDConfig(conf, hostKey, ak); err != nil {
		return err
	}
	sshd, err := startSSHD(c, rolePrimary, procRescueSSHD, c.RescueHostname, conf, p.Rescue, p.Image, c.RescueDisk)
	if err != nil {
		return err
	}
	st.Processes[procRescueSSHD] = sshd
	st.Primary, st.BootUUID = PersonalityRescue, id
	if err := c.waitTCP(ctx, roleOps, hostAddr(c.Primary, 22), 10*time.Second); err != nil {
		return fmt.Errorf("boot primary rescue: %w", err)
	}
	return nil
}

// stopHost stops everything running on a host: its recorded daemons,
// every process in its namespace, and mounts and loop devices under its
// directory.
func (l *Lab) stopHost(ctx context.Context, st *State, role string, names ...string) error {
	var errs []error
	var ps []Proc
	for _, n := range names {
		if pr, ok := st.Processes[n]; ok {
			ps = append(ps, pr)
		}
	}
	if in, err := nsPIDs(l.cfg.NSPath(role)); err != nil {
		errs = append(errs, err)
	} else {
		ps = append(ps, in...)
	}
	if err := stopAll(ctx, 3*time.Second, ps); err != nil {
		errs = append(errs, fmt.Errorf("stop %s: %w", l.cfg.NS(role), err))
	}
	for _, n := range names {
		delete(st.Processes, n)
	}
	if err := releaseUnder(ctx, filepath.Join(l.cfg.Dir, role), st); err != nil {
		errs = append(errs, err)
	}
	return joinErrs(errs)
}

// releaseUnder unmounts every mount below dir (deepest first, lazily if
// busy) and detaches every loop device backed by a file below dir.
func releaseUnder(ctx context.Context, dir string, st *State) error {
	var errs []error
	loops, err := loopsUnder(dir)
	if err != nil {
		errs = append(errs, err)
	}
	// a filesystem on a lab loop device, wherever it is mounted (a runbook
	// may mount the imported disk outside dir)
	var devs []string
	for _, lp := range loops {
		devs = append(devs, lp.Device)
	}
	onLoops, err := mountsOf(devs)
	if err != nil {
		errs = append(errs, err)
	}
	for i := len(onLoops) - 1; i >= 0; i-- {
		if err := unmount(onLoops[i]); err != nil {
			errs = append(errs, err)
		}
	}
	mps, err := mountsUnder(dir)
	if err != nil {
		errs = append(errs, err)
	}
	for i := len(mps) - 1; i >= 0; i-- {
		if err := unmount(mps[i]); err != nil {
			errs = append(errs, err)
		}
	}
	for _, lp := range loops {
		if _, err := run(ctx, "losetup", "-d", lp.Device); err != nil {
			errs = append(errs, err)
		}
	}
	if st != nil {
		st.Mounts = filterOut(st.Mounts, func(m string) bool { return within(m, dir) })
		var keep []Loop
		for _, lp := range st.Loops {
			if !within(lp.Backing, dir) {
				keep = append(keep, lp)
			}
		}
		st.Loops = keep
	}
	return joinErrs(errs)
}

func within(path, dir string) bool {
	path, dir = filepath.Clean(path), filepath.Clean(dir)
	return path == dir || strings.HasPrefix(path, dir+"/")
}

func appendUnique(s []string, v string) []string {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	return append(s, v)
}

func appendLoop(s []Loop, v Loop) []Loop {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	return append(s, v)
}

func filterOut(s []string, drop func(string) bool) []string {
	var out []string
	for _, x := range s {
		if !drop(x) {
			out = append(out, x)
		}
	}
	return out
}

func joinErrs(errs []error) error { return errors.Join(errs...) }
