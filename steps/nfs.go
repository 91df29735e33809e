package steps

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/takeover-dev/takeover/runbooks"
	"github.com/takeover-dev/takeover/steps/remote"
)

// NFS is the file-level transport: the rescue system mounts each disk (a
// file-level export needs a mounted filesystem; the spare then never sees
// the block device) and exports it to the spare's private address alone,
// with the kernel server (exportfs) on real rescue systems or nfs-ganesha
// where the kernel has no nfsd. The spare mounts it with the kernel client.

func nfsRoot(d runbooks.Disk) string { return rescueRunDir + "/nfs/" + d.Name }

const ganeshaDir = rescueRunDir + "/ganesha"

// ganeshaConf renders a ganesha configuration exporting every disk to the
// spare only, NFSv4 only (no rpcbind needed), on the private address.
func ganeshaConf(rb *runbooks.Runbook) string {
	var b strings.Builder
	fmt.Fprintf(&b, `NFS_CORE_PARAM {
	Protocols = 4;
	NFS_Port = 2049;
	Bind_addr = %s;
	Enable_NLM = false;
	Enable_RQUOTA = false;
	Enable_UDP = false;
}
NFSV4 {
	Graceless = true;
	RecoveryRoot = %s/recovery;
}
EXPORT_DEFAULTS {
	Access_Type = None;
}
`, rb.Primary.PrivateAddress, ganeshaDir)
	for i, d := range rb.Data.Disks {
		fmt.Fprintf(&b, `EXPORT {
	Export_Id = %d;
	Path = %s;
	Pseudo = /%s;
	Access_Type = None;
	Squash = No_Root_Squash;
	Protocols = 4;
	CLIENT {
		Clients = %s;
		Access_Type = RW;
	}
	FSAL { Name = VFS; }
}
`, i+1, nfsRoot(d), d.Name, rb.Spare.PrivateAddress)
	}
	return b.String()
}

func nfsExportCheck(ctx context.Context, e *Env) (bool, error) {
	c, err := rescueClient(ctx, e)
	if err != nil {
		return false, err
	}
	rb := e.Runbook
	for _, d := range rb.Data.Disks {
		if _, err := c.Run(ctx, mountedCmd(nfsRoot(d)), nil); err != nil {
			return false, nil
		}
	}
	if rb.Data.NFS.Server == "ganesha" {
		_, err := c.Run(ctx, pidAlive(ganeshaDir+"/ganesha.pid", "ganesha"), nil)
		return err == nil, nil
	}
	for _, d := range rb.Data.Disks {
		if _, err := c.Run(ctx, fmt.Sprintf("exportfs -v | grep -q %s", shq(nfsRoot(d))), nil); err != nil {
			return false, nil
		}
	}
	return true, nil
}

func nfsExportDo(ctx context.Context, e *Env) error {
	c, m, err := rescueDevices(ctx, e)
	if err != nil {
		return err
	}
	rb := e.Runbook
	for _, d := range rb.Data.Disks {
		root := nfsRoot(d)
		cmd := fmt.Sprintf("mkdir -p %[1]s && { %[2]s || mount %[3]s %[1]s; }", shq(root), mountedCmd(root), shq(m[d.Name]))
		if _, err := c.Run(ctx, cmd, nil); err != nil {
			return fmt.Errorf("mount %s on the rescue system to export it: %w", d.Name, err)
		}
	}
	if rb.Data.NFS.Server == "ganesha" {
		if _, err := c.Run(ctx, pidAlive(ganeshaDir+"/ganesha.pid", "ganesha"), nil); err == nil {
			return nil
		}
		if _, err := c.Run(ctx, "mkdir -p "+ganeshaDir+"/recovery", nil); err != nil {
			return err
		}
		if err := c.WriteFile(ctx, ganeshaDir+"/ganesha.conf", []byte(ganeshaConf(rb)), 0o600); err != nil {
			return fmt.Errorf("write ganesha config: %w", err)
		}
		cmd := fmt.Sprintf("ganesha.nfsd -f %[1]s/ganesha.conf -L %[1]s/ganesha.log -p %[1]s/ganesha.pid -N NIV_EVENT </dev/null >/dev/null 2>&1 && for i in $(seq 50); do %[2]s && break; sleep 0.1; done; %[2]s",
			ganeshaDir, pidAlive(ganeshaDir+"/ganesha.pid", "ganesha"))
		if _, err := c.Run(ctx, cmd, nil); err != nil {
			return fmt.Errorf("start nfs-ganesha (log in %s/ganesha.log on the rescue system): %w", ganeshaDir, err)
		}
		e.Printf("          NFSv4 export of %d disk(s) by nfs-ganesha on %s to %s only", len(rb.Data.Disks), rb.Primary.PrivateAddress, rb.Spare.PrivateAddress)
		return nil
	}
	for i, d := range rb.Data.Disks {
		cmd := fmt.Sprintf("exportfs -o rw,sync,no_root_squash,no_subtree_check,fsid=%d %s:%s", 100+i, rb.Spare.PrivateAddress, shq(nfsRoot(d)))
		if _, err := c.Run(ctx, cmd, nil); err != nil {
			return fmt.Errorf("export %s with the kernel NFS server (is nfs-kernel-server running on the rescue system?): %w", d.Name, err)
		}
	}
	return nil
}

func nfsExportUndo(ctx context.Context, e *Env) error {
	c, err := rescueForUndo(ctx, e)
	if err != nil {
		return err
	}
	rb := e.Runbook
	if rb.Data.NFS.Server == "ganesha" {
		cmd := fmt.Sprintf(`if %s; then kill "$p"; for i in $(seq 50); do %s || break; sleep 0.1; done; fi`, pidAlive(ganeshaDir+"/ganesha.pid", "ganesha"), procAlive)
		if _, err := c.Run(ctx, cmd, nil); err != nil {
			return fmt.Errorf("stop nfs-ganesha: %w", err)
		}
	} else {
		for _, d := range rb.Data.Disks {
			if _, err := c.Run(ctx, fmt.Sprintf("exportfs -u %s:%s 2>/dev/null || true", rb.Spare.PrivateAddress, shq(nfsRoot(d))), nil); err != nil {
				return err
			}
		}
	}
	for _, d := range rb.Data.Disks {
		if _, err := c.Run(ctx, fmt.Sprintf("if %s; then umount %s; fi", mountedCmd(nfsRoot(d)), shq(nfsRoot(d))), nil); err != nil {
			return fmt.Errorf("unmount %s on the rescue system: %w", d.Name, err)
		}
	}
	return nil
}

func nfsSource(rb *runbooks.Runbook, d runbooks.Disk) string {
	if rb.Data.NFS.Server == "ganesha" {
		return rb.Primary.PrivateAddress.String() + ":/" + d.Name
	}
	return rb.Primary.PrivateAddress.String() + ":" + nfsRoot(d)
}

func nfsImportDo(ctx context.Context, e *Env, c *remote.Client) error {
	rb := e.Runbook
	vers := rb.Data.NFS.Version
	if vers == 0 {
		vers = 4
	}
	opts := "vers=" + strconv.Itoa(vers) + ",hard,addr=" + rb.Primary.PrivateAddress.String()
	if vers == 3 {
		opts += ",nolock"
	}
	for _, d := range rb.Data.Disks {
		cmd := fmt.Sprintf("%s || { mkdir -p %s && mount -t nfs -o %s %s %s; }", mountedCmd(d.Mount), shq(d.Mount), opts, shq(nfsSource(rb, d)), shq(d.Mount))
		if _, err := c.Run(ctx, cmd, nil); err != nil {
			return fmt.Errorf("mount %s over NFS on the spare: %w", nfsSource(rb, d), err)
		}
		if _, err := c.Run(ctx, expectCmd(d), nil); err != nil {
			return fmt.Errorf("NFS mount of %s on %s lacks expected paths %v: %w", d.Name, d.Mount, d.Expect, err)
		}
	}
	return nil
}

func nfsImportUndo(ctx context.Context, e *Env, c *remote.Client) error {
	for _, d := range e.Runbook.Data.Disks {
		if _, err := c.Run(ctx, fmt.Sprintf("if %s; then umount %s; fi", mountedCmd(d.Mount), shq(d.Mount)), nil); err != nil {
			return fmt.Errorf("unmount %s on the spare: %w", d.Mount, err)
		}
	}
	return nil
}
