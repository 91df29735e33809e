package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	"github.com/rs/zerolog"

	"github.com/takeover-dev/takeover/internal/testenv"
	"github.com/takeover-dev/takeover/provider/sim"
	"github.com/takeover-dev/takeover/state"
	"github.com/takeover-dev/takeover/state/local"
	"github.com/takeover-dev/takeover/steps/remote/sshdtest"
)

// TestMain makes the test binary double as the takeover command: testscript
// copies it into a directory on the scripts' PATH under the name
// "takeover", and running it under that name runs realMain. Scripts (and the
// background commands below) therefore exercise the real binary in its own
// process: exit codes, signals and stdin behave as in production.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"takeover": func() { os.Exit(realMain(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) },
	})
}

// TestScripts runs testdata/script/*.txtar. Besides testscript's own
// commands, scripts have:
//
//	code N CMD ARGS...          run CMD; its exit status must be exactly N
//	simserve CONFIG             serve provider/sim (YAML config) on 127.0.0.1:0;
//	                            sets SIM_ENDPOINT and TAKEOVER_OVH_CONF
//	simstat                     print the last simulator's counters and routes
//	replace SRC DST OLD NEW...  copy SRC to DST replacing each OLD by NEW
//	envsubst FILE...            expand $VARS in FILE(s), in place
//	json FILE [PATH WANT]...    FILE (or stdout) parses as JSON; each PATH
//	                            (dot-separated keys and indexes) is WANT (JSON)
//	jsonset FILE PATH VAR       set VAR to the string (or JSON) at PATH
//	sshdspare                   start a real sshd on 127.0.0.1 (root only) to
//	                            play the spare; sets SPARE_SSH_ADDR,
//	                            SPARE_SSH_KEY, SPARE_SSH_USER, SPARE_KNOWN_HOSTS
//	holdlock NAME WHO HOST VAR  take a state lock in $TAKEOVER_STATE as another
//	                            host would (released at the end); VAR = its id
//	bg NAME CMD ARGS...         start CMD with a stdin pipe the script controls;
//	                            sets PID_NAME
//	bgsend NAME TEXT            write TEXT and a newline to NAME's stdin
//	bgwaitout NAME REGEXP       wait until NAME's stdout matches
//	bgsignal NAME SIG           send TERM, INT or KILL to NAME
//	bgwait NAME N               wait for NAME to exit with status N (-1: killed);
//	                            its stdout and stderr become the script's
//	bgstdout NAME FILE          write what NAME printed so far to FILE
//	extract FILE REGEXP VAR     set VAR to REGEXP's first group in FILE
func TestScripts(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		RequireExplicitExec: true,
		Setup: func(env *testscript.Env) error {
			tb, ok := env.T().(testing.TB)
			if !ok {
				return fmt.Errorf("testscript.T %T is not a testing.TB", env.T())
			}
			env.Values[scriptKey{}] = &script{t: tb, bgs: map[string]*bgProc{}}
			env.Setenv("REPO", root)
			env.Setenv("RUNBOOKS", filepath.Join(root, "runbooks"))
			// Never the default /var/lib/takeover, never the user's files.
			env.Setenv("TAKEOVER_STATE", filepath.Join(env.WorkDir, "state"))
			env.Setenv("TAKEOVER_OPERATOR", "tester")
			env.Setenv("TAKEOVER_OVH_CONF", "")
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"code":      cmdCode,
			"simserve":  cmdSimServe,
			"simstat":   cmdSimStat,
			"replace":   cmdReplace,
			"envsubst":  cmdEnvsubst,
			"json":      cmdJSON,
			"jsonset":   cmdJSONSet,
			"sshdspare": cmdSSHDSpare,
			"holdlock":  cmdHoldLock,
			"bg":        cmdBg,
			"bgsend":    cmdBgSend,
			"bgwaitout": cmdBgWaitOut,
			"bgsignal":  cmdBgSignal,
			"bgwait":    cmdBgWait,
			"bgstdout":  cmdBgStdout,
			"extract":   cmdExtract,
		},
	})
}

type scriptKey struct{}

// script is the per-script state of the custom commands.
type script struct {
	t   testing.TB
	sim *sim.Sim
	bgs map[string]*bgProc
}

func scriptOf(ts *testscript.TestScript) *script {
	return ts.Value(scriptKey{}).(*script)
}

func noNeg(ts *testscript.TestScript, neg bool, name string) {
	if neg {
		ts.Fatalf("%s does not support negation", name)
	}
}

// cmdCode runs a command and checks its exact exit status; stdout and
// stderr are kept for the next assertions.
func cmdCode(ts *testscript.TestScript, neg bool, args []string) {
	noNeg(ts, neg, "code")
	if len(args) < 2 {
		ts.Fatalf("usage: code N CMD ARGS...")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("code: bad status %q", args[0])
	}
	err = ts.Exec(args[1], args[2:]...)
	got := 0
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		got = ee.ExitCode()
	default:
		ts.Fatalf("code: %v", err)
	}
	if got != want {
		ts.Fatalf("%s exited with status %d, want %d", args[1], got, want)
	}
}

// cmdSimServe starts the OVH API simulator in the test process.
func cmdSimServe(ts *testscript.TestScript, neg bool, args []string) {
	noNeg(ts, neg, "simserve")
	if len(args) != 1 {
		ts.Fatalf("usage: simserve CONFIG")
	}
	cfg, err := sim.LoadConfig(ts.MkAbs(args[0]))
	ts.Check(err)
	if len(cfg.Apps) == 0 {
		app, err := sim.GenerateApp()
		ts.Check(err)
		cfg.Apps = []sim.App{app}
	}
	cfg.Log = zerolog.Nop()
	s := sim.New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan sim.Listening, 1)
	done := make(chan error, 1)
	go func() {
		done <- sim.Serve(ctx, s, sim.ServeOptions{Addr: "127.0.0.1:0", Ready: func(l sim.Listening) { ready <- l }})
	}()
	var l sim.Listening
	select {
	case l = <-ready:
	case err := <-done:
		cancel()
		ts.Fatalf("simserve: %v", err)
	}
	ts.Defer(func() {
		cancel()
		<-done
		s.Close()
	})
	conf := ts.MkAbs("ovh.conf")
	ts.Check(os.WriteFile(conf, []byte(sim.OvhConf(l.Endpoint, cfg.Apps[0])), 0o600))
	ts.Setenv("SIM_ENDPOINT", l.Endpoint)
	ts.Setenv("TAKEOVER_OVH_CONF", conf)
	scriptOf(ts).sim = s
}

// cmdSimStat prints what the last simulator was asked to do.
func cmdSimStat(ts *testscript.TestScript, neg bool, args []string) {
	noNeg(ts, neg, "simstat")
	s := scriptOf(ts).sim
	if s == nil {
		ts.Fatalf("simstat: no simulator (simserve first)")
	}
	c := s.Counters()
	var reboots, moves int
	w := ts.Stdout()
	for _, k := range sortedKeys(c.Reboots) {
		fmt.Fprintf(w, "reboot %s %d\n", k, c.Reboots[k])
		reboots += c.Reboots[k]
	}
	for _, k := range sortedKeys(c.Moves) {
		fmt.Fprintf(w, "move %s %d\n", k, c.Moves[k])
		moves += c.Moves[k]
	}
	fmt.Fprintf(w, "reboots %d\nmoves %d\n", reboots, moves)
	for _, ip := range args {
		fmt.Fprintf(w, "route %s %s\n", ip, s.Route(ip))
	}
}

func sortedKeys(m map[string]int) []string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// cmdReplace copies a file with literal replacements, each of which must
// occur.
func cmdReplace(ts *testscript.TestScript, neg bool, args []string) {
	noNeg(ts, neg, "replace")
	if len(args) < 4 || len(args)%2 != 0 {
		ts.Fatalf("usage: replace SRC DST OLD NEW [OLD NEW]...")
	}
	text := ts.ReadFile(args[0])
	for i := 2; i < len(args); i += 2 {
		if !strings.Contains(text, args[i]) {
			ts.Fatalf("replace: %s has no %q", args[0], args[i])
		}
		text = strings.ReplaceAll(text, args[i], args[i+1])
	}
	ts.Check(os.WriteFile(ts.MkAbs(args[1]), []byte(text), 0o644))
}

// cmdEnvsubst expands $VAR and ${VAR} in files with the script's
// environment; an unset variable is an error.
func cmdEnvsubst(ts *testscript.TestScript, neg bool, args []string) {
	noNeg(ts, neg, "envsubst")
	for _, f := range args {
		var missing []string
		out := os.Expand(ts.ReadFile(f), func(k string) string {
			v := ts.Getenv(k)
			if v == "" {
				missing = append(missing, k)
			}
			return v
		})
		if len(missing) > 0 {
			ts.Fatalf("envsubst %s: unset %s", f, strings.Join(missing, ", "))
		}
		ts.Check(os.WriteFile(ts.MkAbs(f), []byte(out), 0o644))
	}
}

// jsonAt walks a dot-separated path of object keys and array indexes.
func jsonAt(v any, path string) (any, error) {
	if path == "." || path == "" {
		return v, nil
	}
	for _, seg := range strings.Split(path, ".") {
		switch x := v.(type) {
		case map[string]any:
			var ok bool
			if v, ok = x[seg]; !ok {
				return nil, fmt.Errorf("no key %q", seg)
			}
		case []any:
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(x) {
				return nil, fmt.Errorf("no index %q in an array of %d", seg, len(x))
			}
			v = x[i]
		default:
			return nil, fmt.Errorf("%q: not an object or array", seg)
		}
	}
	return v, nil
}

func readJSON(ts *testscript.TestScript, file string) any {
	var v any
	dec := json.NewDecoder(strings.NewReader(ts.ReadFile(file)))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		ts.Fatalf("%s is not JSON: %v", file, err)
	}
	if dec.More() {
		ts.Fatalf("%s: more than one JSON value", file)
	}
	return v
}

func cmdJSON(ts *testscript.TestScript, neg bool, args []string) {
	noNeg(ts, neg, "json")
	if len(args) < 1 || len(args)%2 != 1 {
		ts.Fatalf("usage: json FILE [PATH WANT]...")
	}
	v := readJSON(ts, args[0])
	for i := 1; i < len(args); i += 2 {
		got, err := jsonAt(v, args[i])
		if err != nil {
			ts.Fatalf("json %s %s: %v", args[0], args[i], err)
		}
		b, _ := json.Marshal(got)
		var want any
		if err := json.Unmarshal([]byte(args[i+1]), &want); err != nil {
			ts.Fatalf("json: want %q is not JSON: %v", args[i+1], err)
		}
		wb, _ := json.Marshal(want)
		if !bytes.Equal(b, wb) {
			ts.Fatalf("json %s %s = %s, want %s", args[0], args[i], b, wb)
		}
	}
}

func cmdJSONSet(ts *testscript.TestScript, neg bool, args []string) {
	noNeg(ts, neg, "jsonset")
	if len(args) != 3 {
		ts.Fatalf("usage: jsonset FILE PATH VAR")
	}
	got, err := jsonAt(readJSON(ts, args[0]), args[1])
	if err != nil {
		ts.Fatalf("jsonset %s %s: %v", args[0], args[1], err)
	}
	s, ok := got.(string)
	if !ok {
		b, _ := json.Marshal(got)
		s = string(b)
	}
	ts.Setenv(args[2], s)
}

// cmdSSHDSpare starts a real OpenSSH sshd that plays the spare.
func cmdSSHDSpare(ts *testscript.TestScript, neg bool, args []string) {
	noNeg(ts, neg, "sshdspare")
	t := scriptOf(ts).t
	// The preflight checks for these on the spare, which is this machine.
	testenv.MustHaveCommand(t, "nbdfuse", "losetup", "mount")
	srv := sshdtest.Start(t, sshdtest.Options{})
	ts.Setenv("SPARE_SSH_ADDR", srv.Addr)
	ts.Setenv("SPARE_SSH_USER", srv.User)
	ts.Setenv("SPARE_SSH_KEY", srv.ClientKeyFile)
	ts.Setenv("SPARE_KNOWN_HOSTS", srv.KnownHostsFile())
}

// cmdHoldLock takes a lock as another orchestrator (another host) would,
// for an hour, and sets VAR to its id.
func cmdHoldLock(ts *testscript.TestScript, neg bool, args []string) {
	noNeg(ts, neg, "holdlock")
	if len(args) != 4 {
		ts.Fatalf("usage: holdlock NAME WHO HOST VAR")
	}
	st, err := local.Open(ts.Getenv("TAKEOVER_STATE"))
	ts.Check(err)
	l, err := st.Lock(context.Background(), state.LockInfo{Name: args[0], Run: "other-run", Who: args[1], Host: args[2], PID: 4242, Op: "run"}, time.Hour)
	if err != nil {
		st.Close()
		ts.Fatalf("holdlock: %v", err)
	}
	ts.Defer(func() {
		_ = l.Release(context.Background())
		st.Close()
	})
	ts.Setenv(args[3], l.Info().ID)
}

// bgProc is a command started by bg.
type bgProc struct {
	name   string
	cmd    *exec.Cmd
	stdin  io.Writer
	out    *syncBuf
	errb   *syncBuf
	done   chan struct{}
	status int
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// bgEnv is the environment handed to background commands: the script's
// variables that takeover reads.
var bgEnv = []string{"PATH", "HOME", "TMPDIR", "WORK", "TAKEOVER_STATE", "TAKEOVER_OPERATOR", "TAKEOVER_OVH_CONF"}

func bgOf(ts *testscript.TestScript, name string) *bgProc {
	p := scriptOf(ts).bgs[name]
	if p == nil {
		ts.Fatalf("no background command %q", name)
	}
	return p
}

func cmdBg(ts *testscript.TestScript, neg bool, args []string) {
	noNeg(ts, neg, "bg")
	if len(args) < 2 {
		ts.Fatalf("usage: bg NAME CMD ARGS...")
	}
	s := scriptOf(ts)
	if s.bgs[args[0]] != nil {
		ts.Fatalf("bg: %s already started", args[0])
	}
	path := args[1]
	if !strings.Contains(path, "/") {
		for _, dir := range filepath.SplitList(ts.Getenv("PATH")) {
			if fi, err := os.Stat(filepath.Join(dir, path)); err == nil && fi.Mode().IsRegular() {
				path = filepath.Join(dir, path)
				break
			}
		}
	}
	cmd := exec.Command(path, args[2:]...)
	cmd.Dir = ts.MkAbs(".")
	for _, k := range bgEnv {
		cmd.Env = append(cmd.Env, k+"="+ts.Getenv(k))
	}
	p := &bgProc{name: args[0], cmd: cmd, out: &syncBuf{}, errb: &syncBuf{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.errb
	w, err := cmd.StdinPipe()
	ts.Check(err)
	p.stdin = w
	ts.Check(cmd.Start())
	s.bgs[p.name] = p
	ts.Setenv("PID_"+p.name, strconv.Itoa(cmd.Process.Pid))
	go func() {
		err := cmd.Wait()
		p.status = 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			p.status = ee.ExitCode()
		} else if err != nil {
			p.status = -2
		}
		w.Close()
		close(p.done)
	}()
	ts.Defer(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
}

func cmdBgSend(ts *testscript.TestScript, neg bool, args []string) {
	noNeg(ts, neg, "bgsend")
	if len(args) != 2 {
		ts.Fatalf("usage: bgsend NAME TEXT")
	}
	_, err := bgOf(ts, args[0]).stdin.Write([]byte(args[1] + "\n"))
	ts.Check(err)
}

// bgTimeout bounds every wait on a background command.
const bgTimeout = 30 * time.Second

func cmdBgWaitOut(ts *testscript.TestScript, neg bool, args []string) {
	noNeg(ts, neg, "bgwaitout")
	if len(args) != 2 {
		ts.Fatalf("usage: bgwaitout NAME REGEXP")
	}
	p := bgOf(ts, args[0])
	re, err := regexp.Compile("(?m)" + args[1])
	ts.Check(err)
	deadline := time.NewTimer(bgTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !re.MatchString(p.out.String()) {
		select {
		case <-p.done:
			if re.MatchString(p.out.String()) {
				return
			}
			ts.Fatalf("%s exited (status %d) before its stdout matched %q\nstdout:\n%s\nstderr:\n%s", p.name, p.status, args[1], p.out, p.errb)
		case <-deadline.C:
			ts.Fatalf("%s: stdout did not match %q within %s\nstdout:\n%s\nstderr:\n%s", p.name, args[1], bgTimeout, p.out, p.errb)
		case <-tick.C:
		}
	}
}

func cmdBgSignal(ts *testscript.TestScript, neg bool, args []string) {
	noNeg(ts, neg, "bgsignal")
	if len(args) != 2 {
		ts.Fatalf("usage: bgsignal NAME TERM|INT|KILL")
	}
	sig := map[string]syscall.Signal{"TERM": syscall.SIGTERM, "INT": syscall.SIGINT, "KILL": syscall.SIGKILL}[args[1]]
	if sig == 0 {
		ts.Fatalf("bgsignal: unknown signal %q", args[1])
	}
	ts.Check(bgOf(ts, args[0]).cmd.Process.Signal(sig))
}

func cmdBgWait(ts *testscript.TestScript, neg bool, args []string) {
	noNeg(ts, neg, "bgwait")
	if len(args) != 2 {
		ts.Fatalf("usage: bgwait NAME N")
	}
	want, err := strconv.Atoi(args[1])
	ts.Check(err)
	p := bgOf(ts, args[0])
	select {
	case <-p.done:
	case <-time.After(bgTimeout):
		ts.Fatalf("%s did not exit within %s\nstdout:\n%s\nstderr:\n%s", p.name, bgTimeout, p.out, p.errb)
	}
	fmt.Fprint(ts.Stdout(), p.out.String())
	fmt.Fprint(ts.Stderr(), p.errb.String())
	if p.status != want {
		ts.Fatalf("%s exited with status %d, want %d", p.name, p.status, want)
	}
}

// TestEveryExampleIsPlanned: each shipped runbook has a script that plans it
// against the simulator (testdata/script/plan_NAME.txtar), so a new example
// cannot go untested.
func TestEveryExampleIsPlanned(t *testing.T) {
	files, err := filepath.Glob("../../runbooks/examples/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no example runbooks found (%v)", err)
	}
	files = append(files, "../../runbooks/lab.yaml")
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		script := filepath.Join("testdata", "script", "plan_"+name+".txtar")
		b, err := os.ReadFile(script)
		if err != nil {
			t.Errorf("runbook %s has no plan script: %v", f, err)
			continue
		}
		rel := strings.TrimPrefix(f, "../../runbooks/")
		if !strings.Contains(string(b), "$RUNBOOKS/"+rel) {
			t.Errorf("%s does not plan $RUNBOOKS/%s", script, rel)
		}
	}
}

func cmdBgStdout(ts *testscript.TestScript, neg bool, args []string) {
	noNeg(ts, neg, "bgstdout")
	if len(args) != 2 {
		ts.Fatalf("usage: bgstdout NAME FILE")
	}
	ts.Check(os.WriteFile(ts.MkAbs(args[1]), []byte(bgOf(ts, args[0]).out.String()), 0o600))
}

func cmdExtract(ts *testscript.TestScript, neg bool, args []string) {
	noNeg(ts, neg, "extract")
	if len(args) != 3 {
		ts.Fatalf("usage: extract FILE REGEXP VAR")
	}
	re, err := regexp.Compile("(?m)" + args[1])
	ts.Check(err)
	m := re.FindStringSubmatch(ts.ReadFile(args[0]))
	if len(m) < 2 {
		ts.Fatalf("extract: %q (with a group) does not match %s", args[1], args[0])
	}
	ts.Setenv(args[2], m[1])
}
