package local_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/takeover-dev/takeover/state"
	"github.com/takeover-dev/takeover/state/local"
)

const (
	helperEnv   = "TAKEOVER_LOCAL_APPEND_HELPER" // the store directory
	helperSeqs  = 100
	helperProcs = 3
)

// appendEverySeq tries to append each seq in order to run "procs" and
// returns the seqs it won. Any error but ErrConflict is returned.
func appendEverySeq(t testing.TB, s *local.Store, writer string) ([]int64, error) {
	var won []int64
	for seq := range int64(helperSeqs) {
		err := s.Append(t.Context(), state.Record{Run: "procs", Seq: seq, Step: writer, Phase: state.PhaseNote, At: t0})
		switch {
		case err == nil:
			won = append(won, seq)
		case !errors.Is(err, state.ErrConflict):
			return nil, err
		}
	}
	return won, nil
}

// TestAppendHelperProcess is the child side of TestAppendAcrossProcesses;
// it does nothing unless started by it.
func TestAppendHelperProcess(t *testing.T) {
	dir := os.Getenv(helperEnv)
	if dir == "" {
		return
	}
	s, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	// Tell the parent we are ready, then wait for it to close stdin so
	// that all appenders start together.
	fmt.Println("ready")
	if _, err := io.Copy(io.Discard, os.Stdin); err != nil {
		t.Fatal(err)
	}
	won, err := appendEverySeq(t, s, fmt.Sprintf("pid%d", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	for _, seq := range won {
		fmt.Printf("won %d\n", seq)
	}
}

// TestAppendAcrossProcesses races appenders in separate processes on one
// journal: every seq is won exactly once and the journal records the
// winner.
func TestAppendAcrossProcesses(t *testing.T) {
	dir := newDir(t)
	s := open(t, dir)
	winners := make(map[int64][]string)
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	start := make(chan struct{})
	var ready sync.WaitGroup
	for range helperProcs {
		ready.Add(1)
		cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestAppendHelperProcess$")
		cmd.Env = append(os.Environ(), helperEnv+"="+dir)
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		writer := fmt.Sprintf("pid%d", cmd.Process.Pid)
		wg.Go(func() {
			sc := bufio.NewScanner(stdout)
			readied := false
			for sc.Scan() {
				line := sc.Text()
				if line == "ready" && !readied {
					readied = true
					ready.Done()
					<-start
					stdin.Close()
					continue
				}
				if n, ok := strings.CutPrefix(line, "won "); ok {
					seq, _ := strconv.ParseInt(n, 10, 64)
					mu.Lock()
					winners[seq] = append(winners[seq], writer)
					mu.Unlock()
				}
			}
			if !readied {
				ready.Done()
			}
			if err := cmd.Wait(); err != nil {
				t.Errorf("helper process %s: %v\n%s", writer, err, stderr.Bytes())
			}
		})
	}
	ready.Wait()
	close(start)
	won, err := appendEverySeq(t, s, "parent")
	if err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for _, seq := range won {
		winners[seq] = append(winners[seq], "parent")
	}
	recs, err := s.Records(t.Context(), "procs")
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != helperSeqs {
		t.Fatalf("journal has %d records, want %d", len(recs), helperSeqs)
	}
	for seq := range int64(helperSeqs) {
		w := winners[seq]
		if len(w) != 1 {
			t.Errorf("seq %d won by %v, want exactly one", seq, w)
			continue
		}
		if recs[seq].Step != w[0] {
			t.Errorf("seq %d: journal says %s wrote it, %s won it", seq, recs[seq].Step, w[0])
		}
	}
	perWriter := make(map[string]int)
	for _, w := range winners {
		perWriter[w[0]]++
	}
	t.Logf("seqs won per writer: %v", perWriter)
}
