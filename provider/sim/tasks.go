package sim

import (
	"net/netip"
	"sort"
	"time"

	"github.com/takeover-dev/takeover/provider"
)

const (
	fnReboot = "hardReboot"
	fnMove   = "genericMoveFloatingIp"
)

type hookState int

const (
	hookNone hookState = iota
	hookRunning
	hookFinished
)

// task is one OVH task. Its status is derived from the clock: every
// observation calls advance, which moves it through the phases whose time
// has come. The transition into "doing" starts the hook exactly once (it is
// made under s.mu and recorded in hook).
type task struct {
	id       int64
	scope    provider.TaskScope
	owner    string // server name, or IP block string for ScopeIP
	function string
	comment  string

	server string       // hardReboot: the server; moves: the destination ("" = park)
	ip     netip.Prefix // moves only

	created, todoAt, doingAt, doneAt time.Time
	listedAt                         time.Time

	status     string
	lastUpdate time.Time
	doneDate   *time.Time
	failWith   string

	hook    hookState
	hookErr error
	hookEnd time.Time
	boot    provider.Boot // reboot: boot captured entering "doing"
	from    string        // move: route captured entering "doing"

	purged bool
}

func (t *task) pending() bool {
	switch t.status {
	case provider.TaskInit, provider.TaskTodo, provider.TaskDoing:
		return true
	}
	return false
}

// newTask creates a task at the current time; the caller holds s.mu.
// The caller advances it once it is recorded wherever it must be.
func (s *Sim) newTask(scope provider.TaskScope, owner, function, comment string, doing time.Duration, server string, ip netip.Prefix) *task {
	now := s.now()
	t := &task{
		id:         s.nextTask,
		scope:      scope,
		owner:      owner,
		function:   function,
		comment:    comment,
		created:    now,
		listedAt:   now.Add(s.lat.ListLag),
		status:     provider.TaskTodo,
		lastUpdate: now,
		server:     server,
		ip:         ip,
	}
	s.nextTask++
	t.todoAt = now
	if function == fnReboot {
		t.status = provider.TaskInit
		t.todoAt = now.Add(s.lat.TaskStart / 2)
	}
	t.doingAt = now.Add(s.lat.TaskStart)
	t.doneAt = t.doingAt.Add(doing)
	if q := s.failNext[function]; len(q) > 0 {
		t.failWith = q[0]
		if len(q) == 1 {
			delete(s.failNext, function)
		} else {
			s.failNext[function] = q[1:]
		}
	}
	s.tasks[t.id] = t
	if s.real && !s.closed {
		for _, at := range []time.Time{t.todoAt, t.doingAt, t.doneAt} {
			if d := at.Sub(now); d > 0 {
				s.timers = append(s.timers, time.AfterFunc(d, s.tick))
			}
		}
	}
	return t
}

// tick advances every task; timers call it when the real clock is used.
func (s *Sim) tick() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advanceAll()
}

// advanceAll advances every pending task; the caller holds s.mu.
func (s *Sim) advanceAll() {
	for _, t := range s.tasks {
		if t.pending() {
			s.advance(t)
		}
	}
}

// advance moves t through every phase whose time has come; the caller
// holds s.mu.
func (s *Sim) advance(t *task) {
	now := s.now()
	if t.status == provider.TaskInit && !now.Before(t.todoAt) {
		t.status, t.lastUpdate = provider.TaskTodo, t.todoAt
	}
	if t.status == provider.TaskTodo && !now.Before(t.doingAt) {
		t.status, t.lastUpdate = provider.TaskDoing, t.doingAt
		s.startHook(t)
	}
	if t.status == provider.TaskDoing && t.hook == hookFinished && !now.Before(t.doneAt) {
		end := t.doneAt
		if t.hookEnd.After(end) {
			end = t.hookEnd
		}
		s.finish(t, end)
	}
}

// startHook runs on the transition into "doing" (once per task, under
// s.mu): it captures the state the operation applies to and starts the
// hook in its own goroutine.
func (s *Sim) startHook(t *task) {
	if t.failWith != "" {
		t.hook = hookFinished
		return
	}
	var run func() error
	switch t.function {
	case fnReboot:
		srv := s.servers[t.server]
		t.boot, _ = srv.boot(srv.bootID)
		if fn := s.onReboot; fn != nil {
			name, boot := t.server, t.boot
			run = func() error { return fn(s.ctx, name, boot) }
		}
	case fnMove:
		if b, ok := s.ips[t.ip]; ok {
			t.from = b.routedTo
		}
		if fn := s.onMove; fn != nil {
			ip, from, to := t.ip, t.from, t.server
			run = func() error { return fn(s.ctx, ip, from, to) }
		}
	}
	if run == nil {
		t.hook = hookFinished
		t.hookEnd = s.now()
		return
	}
	t.hook = hookRunning
	s.hooks.Add(1)
	go func() {
		defer s.hooks.Done()
		err := run()
		s.mu.Lock()
		defer s.mu.Unlock()
		t.hook, t.hookErr, t.hookEnd = hookFinished, err, s.now()
		if err != nil {
			s.log.Warn().Err(err).Int64("task", t.id).Str("function", t.function).Msg("sim: hook failed, task ends in ovhError")
		}
		s.advance(t)
	}()
}

// finish ends t at time end and applies its effect when it succeeded; the
// caller holds s.mu.
func (s *Sim) finish(t *task, end time.Time) {
	status := provider.TaskDone
	switch {
	case t.failWith != "":
		status = t.failWith
	case t.hookErr != nil:
		status = provider.TaskOvhError
	}
	t.status, t.lastUpdate = status, end
	t.doneDate = &end
	if status != provider.TaskDone {
		return
	}
	switch t.function {
	case fnReboot:
		if srv, ok := s.servers[t.server]; ok {
			srv.booted = t.boot
			srv.powerState = "poweron"
			if t.boot.Type == "power" {
				srv.powerState = "poweroff"
			}
		}
	case fnMove:
		if b, ok := s.ips[t.ip]; ok {
			b.routedTo = t.server
		}
	}
}

// cancel cancels t if it has not started; the caller holds s.mu.
func (s *Sim) cancelTask(t *task) bool {
	if t.status != provider.TaskInit && t.status != provider.TaskTodo {
		return false
	}
	now := s.now()
	t.status, t.lastUpdate, t.doneDate = provider.TaskCancelled, now, &now
	return true
}

// pendingServerTask reports a pending task in a server's task list.
func (s *Sim) pendingServerTask(name string) *task {
	for _, t := range s.tasks {
		if t.scope == provider.ScopeServer && t.owner == name && t.pending() {
			return t
		}
	}
	return nil
}

// pendingMove reports a pending move of an IP block, in either scope.
func (s *Sim) pendingMove(p netip.Prefix) *task {
	for _, t := range s.tasks {
		if t.function == fnMove && t.ip == p && t.pending() {
			return t
		}
	}
	return nil
}

// listTasks returns the ids of visible listed tasks in a scope.
func (s *Sim) listTasks(scope provider.TaskScope, owner, function, status string) []int64 {
	now := s.now()
	ids := []int64{}
	for _, t := range s.tasks {
		if t.scope != scope || t.owner != owner || t.purged || now.Before(t.listedAt) {
			continue
		}
		if function != "" && t.function != function {
			continue
		}
		if status != "" && t.status != status {
			continue
		}
		ids = append(ids, t.id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids
}
