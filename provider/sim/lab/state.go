package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// Personalities of the primary.
const (
	PersonalityNormal = "normal" // normal OS: disk mounted, httpd, sshd "web1"
	PersonalityRescue = "rescue" // rescue netboot: sshd only, fresh host key
	PersonalityOff    = "off"    // powered off
)

// Proc is a process the lab started.
type Proc struct {
	PID   int    `json:"pid"`
	Start uint64 `json:"start"` // start time in clock ticks since boot (guards against pid reuse)
	NS    string `json:"ns,omitempty"`
	Cmd   string `json:"cmd"`
	Log   string `json:"log,omitempty"`
}

// Loop is a loop device the lab attached.
type Loop struct {
	Device  string `json:"device"`
	Backing string `json:"backing"`
}

// State is the content of state.json: everything the lab made, and the
// lab's view of the world (primary personality, failover IP route).
type State struct {
	Config     Config          `json:"config"`
	Namespaces []string        `json:"namespaces"`
	Mounts     []string        `json:"mounts"`
	Loops      []Loop          `json:"loops"`
	Processes  map[string]Proc `json:"processes"`

	Primary     string `json:"primary"`      // PersonalityNormal | PersonalityRescue | PersonalityOff
	PrimaryBoot int64  `json:"primary_boot"` // provider boot id of the primary's current boot (0: unknown)
	Spare       string `json:"spare"`        // PersonalityNormal | PersonalityOff
	BootUUID    string `json:"boot_uuid"`    // the primary's fake boot_id for its current boot
	RoutedTo    string `json:"routed_to"`    // server the failover IP is routed to
	Complete    bool   `json:"complete"`     // Up finished
}

// store is state.json guarded by a flock on state.lock (the serve daemon and
// the CLI both change it) and by a mutex within one process.
type store struct {
	mu   sync.Mutex
	path string
	lock string
}

func newStore(c Config) *store {
	return &store{path: c.Paths().State, lock: filepath.Join(c.Dir, "state.lock")}
}

func (s *store) read() (State, error) {
	var st State
	b, err := os.ReadFile(s.path)
	if err != nil {
		return st, fmt.Errorf("read lab state: %w", err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("read lab state %s: %w", s.path, err)
	}
	if st.Processes == nil {
		st.Processes = map[string]Proc{}
	}
	return st, nil
}

func (s *store) write(st State) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode lab state: %w", err)
	}
	tmp := s.path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("write lab state: %w", err)
	}
	if err := os.Rename(tmp, s.path); err != nil {
		return fmt.Errorf("write lab state: %w", err)
	}
	return nil
}

// locked runs fn with the state lock held.
func (s *store) locked(fn func() error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, err := os.OpenFile(s.lock, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("lock lab state: %w", err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("lock lab state: %w", err)
	}
	defer unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return fn()
}

// update reads state.json, applies fn and writes it back, under the lock.
func (s *store) update(fn func(*State) error) error {
	return s.locked(func() error {
		st, err := s.read()
		if err != nil {
			return err
		}
		ferr := fn(&st)
		if err := s.write(st); err != nil {
			return errors.Join(ferr, err)
		}
		return ferr
	})
}

// get reads state.json under the lock.
func (s *store) get() (State, error) {
	var st State
	err := s.locked(func() error {
		var err error
		st, err = s.read()
		return err
	})
	return st, err
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return !errors.Is(err, fs.ErrNotExist)
}
