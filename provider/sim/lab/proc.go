package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// run runs a short command and returns its stdout; the error carries stderr.
func run(ctx context.Context, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(errb.String())
		if msg == "" {
			msg = strings.TrimSpace(out.String())
		}
		return out.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, msg)
	}
	return out.String(), nil
}

// startDaemon starts argv in the network namespace at nsPath (net only, so
// mounts stay global) in its own session and process group, stdin /dev/null and output
// to logPath, and returns it as a Proc. It reaps the child in the background
// so that a killed daemon does not linger as a zombie.
func startDaemon(nsPath, logPath string, argv ...string) (Proc, error) {
	if err := os.MkdirAll(filepath.Dir(logPath), 0o700); err != nil {
		return Proc{}, fmt.Errorf("start %s: %w", argv[0], err)
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return Proc{}, fmt.Errorf("start %s: %w", argv[0], err)
	}
	defer logf.Close()
	args := append([]string{"--net=" + nsPath}, argv...)
	cmd := exec.Command("nsenter", args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // own session and process group: no terminal signals
	if err := cmd.Start(); err != nil {
		return Proc{}, fmt.Errorf("start %s: %w", argv[0], err)
	}
	go cmd.Wait() //nolint:errcheck // reaps the child; its exit is observed through /proc
	p := Proc{PID: cmd.Process.Pid, NS: filepath.Base(nsPath), Cmd: strings.Join(argv, " "), Log: logPath}
	p.Start, _ = procStart(p.PID)
	return p, nil
}

// procStat returns the state letter, process group and start time of pid.
func procStat(pid int) (state byte, pgrp int, start uint64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, 0, err
	}
	// comm may hold spaces and parentheses: fields start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, 0, 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	pgrp, _ = strconv.Atoi(f[2])
	start, _ = strconv.ParseUint(f[19], 10, 64)
	return f[0][0], pgrp, start, nil
}

func procStart(pid int) (uint64, error) {
	_, _, s, err := procStat(pid)
	return s, err
}

// alive reports whether p still runs (not a zombie, same start time).
func (p Proc) alive() bool {
	if p.PID <= 0 {
		return false
	}
	st, _, start, err := procStat(p.PID)
	if err != nil || st == 'Z' || st == 'X' {
		return false
	}
	return p.Start == 0 || start == p.Start
}

// stop sends SIGTERM to p (and to its process group when it leads one),
// waits up to grace, then sends SIGKILL and waits again.
func (p Proc) stop(ctx context.Context, grace time.Duration) error {
	if !p.alive() || p.PID == os.Getpid() {
		return nil
	}
	sig := func(s syscall.Signal) {
		if _, pg, _, err := procStat(p.PID); err == nil && pg == p.PID {
			unix.Kill(-p.PID, s) //nolint:errcheck
		}
		unix.Kill(p.PID, s) //nolint:errcheck
	}
	sig(unix.SIGTERM)
	if waitGone(ctx, grace, p) {
		return nil
	}
	sig(unix.SIGKILL)
	if waitGone(ctx, 5*time.Second, p) {
		return nil
	}
	return fmt.Errorf("stop pid %d (%s): still alive after SIGKILL", p.PID, p.Cmd)
}

func waitGone(ctx context.Context, d time.Duration, ps ...Proc) bool {
	deadline := time.Now().Add(d)
	for {
		gone := true
		for _, p := range ps {
			if p.alive() {
				gone = false
			}
		}
		if gone {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// nsPIDs lists the processes whose network namespace is the one bound at
// nsPath, as `ip netns pids` does.
func nsPIDs(nsPath string) ([]Proc, error) {
	var st unix.Stat_t
	if err := unix.Stat(nsPath, &st); err != nil {
		return nil, fmt.Errorf("list processes in %s: %w", nsPath, err)
	}
	want := fmt.Sprintf("net:[%d]", st.Ino)
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes in %s: %w", nsPath, err)
	}
	self := os.Getpid()
	var out []Proc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
		if err != nil || l != want {
			continue
		}
		p := Proc{PID: pid, NS: filepath.Base(nsPath)}
		if c, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil {
			p.Cmd = strings.TrimSpace(strings.ReplaceAll(string(c), "\x00", " "))
		}
		p.Start, _ = procStart(pid)
		if p.alive() {
			out = append(out, p)
		}
	}
	return out, nil
}

// stopAll stops every process in ps: SIGTERM to all, a grace period, then
// SIGKILL to what remains.
func stopAll(ctx context.Context, grace time.Duration, all []Proc) error {
	var ps []Proc // never ourselves (Serve may run in the caller's process)
	for _, p := range all {
		if p.PID != os.Getpid() {
			ps = append(ps, p)
		}
	}
	for _, p := range ps {
		if p.alive() {
			unix.Kill(p.PID, unix.SIGTERM) //nolint:errcheck
		}
	}
	if waitGone(ctx, grace, ps...) {
		return nil
	}
	for _, p := range ps {
		if p.alive() {
			unix.Kill(p.PID, unix.SIGKILL) //nolint:errcheck
		}
	}
	if waitGone(ctx, 5*time.Second, ps...) {
		return nil
	}
	var errs []error
	for _, p := range ps {
		if p.alive() {
			errs = append(errs, fmt.Errorf("pid %d (%s) survived SIGKILL", p.PID, p.Cmd))
		}
	}
	return errors.Join(errs...)
}
