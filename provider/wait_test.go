package provider_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/takeover-dev/takeover/provider"
)

// scripted is a provider whose Task answers follow a script; the last answer
// repeats. Only Task is implemented: WaitTask calls nothing else.
type scripted struct {
	provider.Provider
	answers []answer
	reads   int
}

type answer struct {
	status string
	err    error
}

func (s *scripted) Task(_ context.Context, ref provider.TaskRef) (provider.Task, error) {
	a := s.answers[min(s.reads, len(s.answers)-1)]
	s.reads++
	if a.err != nil {
		return provider.Task{}, a.err
	}
	return provider.Task{Ref: ref, Function: "hardReboot", Status: a.status, Comment: "Reboot asked", QueryID: "EU.ext-1.test"}, nil
}

// fakeTime is a clock that advances only when WaitTask waits.
type fakeTime struct {
	now   time.Time
	waits []time.Duration
}

func newFakeTime() *fakeTime { return &fakeTime{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (f *fakeTime) Clock() time.Time { return f.now }
func (f *fakeTime) After(d time.Duration) <-chan time.Time {
	f.waits = append(f.waits, d)
	f.now = f.now.Add(d)
	c := make(chan time.Time, 1)
	c <- f.now
	return c
}

func (f *fakeTime) opts(o provider.WaitOptions) provider.WaitOptions {
	o.Clock, o.After = f.Clock, f.After
	return o
}

var ref = provider.TaskRef{Scope: provider.ScopeServer, Owner: "ns1.example", ID: 42}

func notFound() error {
	return fmt.Errorf("read task: %w: OVHcloud API error (status code 404) (X-OVH-Query-Id: EU.q404)", provider.ErrNotFound)
}

func TestWaitTaskDefaultSchedule(t *testing.T) {
	ft := newFakeTime()
	p := &scripted{answers: []answer{{status: "init"}, {status: "todo"}, {status: "doing"}, {status: "doing"}, {status: "doing"}, {status: "done"}}}
	var seen []string
	got, err := provider.WaitTask(t.Context(), p, ref, ft.opts(provider.WaitOptions{OnPoll: func(t provider.Task) { seen = append(seen, t.Status) }}))
	if err != nil {
		t.Fatalf("WaitTask: %v", err)
	}
	if got.Status != provider.TaskDone || got.Ref != ref {
		t.Errorf("WaitTask returned %+v, want done %v", got, ref)
	}
	s := time.Second
	if diff := cmp.Diff([]time.Duration{10 * s, 3 * s, 6 * s, 10 * s, 10 * s, 10 * s}, ft.waits); diff != "" {
		t.Errorf("waits (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"init", "todo", "doing", "doing", "doing", "done"}, seen); diff != "" {
		t.Errorf("OnPoll statuses (-want +got):\n%s", diff)
	}
}

func TestWaitTaskCustomSchedule(t *testing.T) {
	ft := newFakeTime()
	p := &scripted{answers: []answer{{status: "todo"}, {status: "todo"}, {status: "todo"}, {status: "done"}}}
	ms := time.Millisecond
	_, err := provider.WaitTask(t.Context(), p, ref, ft.opts(provider.WaitOptions{Initial: -1, Min: ms, Max: 3 * ms}))
	if err != nil {
		t.Fatalf("WaitTask: %v", err)
	}
	if diff := cmp.Diff([]time.Duration{ms, 2 * ms, 3 * ms}, ft.waits); diff != "" {
		t.Errorf("waits (-want +got):\n%s", diff)
	}
}

func TestWaitTaskFailedStatuses(t *testing.T) {
	for _, status := range []string{provider.TaskCancelled, provider.TaskCustomerError, provider.TaskOvhError} {
		t.Run(status, func(t *testing.T) {
			ft := newFakeTime()
			p := &scripted{answers: []answer{{status: "doing"}, {status: status}}}
			got, err := provider.WaitTask(t.Context(), p, ref, ft.opts(provider.WaitOptions{}))
			if !errors.Is(err, provider.ErrTaskFailed) {
				t.Fatalf("WaitTask error = %v, want ErrTaskFailed", err)
			}
			if got.Status != status {
				t.Errorf("last task status %q, want %q", got.Status, status)
			}
			for _, want := range []string{"task 42", "ns1.example", status, "Reboot asked", "hardReboot", "EU.ext-1.test"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not name %q", err, want)
				}
			}
		})
	}
}

func TestWaitTaskTransientErrors(t *testing.T) {
	ft := newFakeTime()
	p := &scripted{answers: []answer{{err: notFound()}, {err: errors.New("OVHcloud API error (status code 503)")}, {status: "doing"}, {err: notFound()}, {status: "done"}}}
	got, err := provider.WaitTask(t.Context(), p, ref, ft.opts(provider.WaitOptions{}))
	if err != nil || got.Status != provider.TaskDone {
		t.Fatalf("WaitTask = %+v, %v; want done", got, err)
	}
	if p.reads != 5 {
		t.Errorf("reads = %d, want 5", p.reads)
	}
}

func TestWaitTaskGone(t *testing.T) {
	ft := newFakeTime()
	p := &scripted{answers: []answer{{status: "doing"}, {err: notFound()}}}
	_, err := provider.WaitTask(t.Context(), p, ref, ft.opts(provider.WaitOptions{Transient404: time.Minute}))
	if !errors.Is(err, provider.ErrNotFound) {
		t.Fatalf("WaitTask error = %v, want ErrNotFound", err)
	}
	for _, want := range []string{"task 42", "ns1.example", "EU.q404", "unreadable"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	// 10 s initial, then reads at +3, +6, +10... until 404s lasted a minute.
	if got := ft.now.Sub(newFakeTime().now); got < time.Minute || got > 2*time.Minute {
		t.Errorf("gave up after %s, want about a minute of 404s", got)
	}
}

func TestWaitTaskResolve(t *testing.T) {
	for _, tc := range []struct {
		name    string
		done    bool
		wantErr bool
	}{{"effect in place", true, false}, {"effect missing", false, true}} {
		t.Run(tc.name, func(t *testing.T) {
			ft := newFakeTime()
			p := &scripted{answers: []answer{{err: notFound()}}}
			resolves := 0
			got, err := provider.WaitTask(t.Context(), p, ref, ft.opts(provider.WaitOptions{
				Transient404: 30 * time.Second,
				ResolveAfter: -1,
				Resolve:      func(context.Context) (bool, error) { resolves++; return tc.done, nil },
			}))
			if tc.wantErr {
				if !errors.Is(err, provider.ErrNotFound) || !strings.Contains(err.Error(), "state does not show") {
					t.Fatalf("WaitTask error = %v, want ErrNotFound saying state does not show the effect", err)
				}
				return
			}
			if err != nil || got.Status != provider.TaskDone || got.Ref != ref {
				t.Fatalf("WaitTask = %+v, %v; want done by state", got, err)
			}
			if resolves != 1 || p.reads != 1 {
				t.Errorf("resolves = %d, reads = %d; want 1 and 1", resolves, p.reads)
			}
		})
	}
}

// TestWaitTaskResolveAfter: Resolve is consulted only once 404s have
// lasted ResolveAfter (default 30 s); the reads go on until then.
func TestWaitTaskResolveAfter(t *testing.T) {
	ft := newFakeTime()
	p := &scripted{answers: []answer{{err: notFound()}}}
	var resolvedAt time.Time
	var readsAtResolve int
	got, err := provider.WaitTask(t.Context(), p, ref, ft.opts(provider.WaitOptions{
		Resolve: func(context.Context) (bool, error) {
			resolvedAt, readsAtResolve = ft.now, p.reads
			return true, nil
		},
	}))
	if err != nil || got.Status != provider.TaskDone {
		t.Fatalf("WaitTask = %+v, %v; want done by state", got, err)
	}
	firstRead := newFakeTime().now.Add(provider.DefaultWaitInitial)
	// Reads at +10, 13, 19, 29, 39 s see 404s for less than 30 s; the
	// read at +49 s is the first after the grace period.
	if gone := resolvedAt.Sub(firstRead); gone < provider.DefaultWaitResolveAfter {
		t.Errorf("Resolve consulted after %s of 404s, want at least %s", gone, provider.DefaultWaitResolveAfter)
	}
	if readsAtResolve != 6 {
		t.Errorf("Resolve consulted at read %d, want 6", readsAtResolve)
	}
}

// TestWaitTaskTransient404NotResolved: 404s right after a task is created
// do not make WaitTask ask Resolve; the task's real end is reported.
func TestWaitTaskTransient404NotResolved(t *testing.T) {
	ft := newFakeTime()
	p := &scripted{answers: []answer{{err: notFound()}, {err: notFound()}, {status: "doing"}, {status: "done"}}}
	resolves := 0
	got, err := provider.WaitTask(t.Context(), p, ref, ft.opts(provider.WaitOptions{
		Resolve: func(context.Context) (bool, error) { resolves++; return true, nil },
	}))
	if err != nil {
		t.Fatalf("WaitTask: %v", err)
	}
	if resolves != 0 {
		t.Errorf("Resolve consulted %d times during transient 404s, want 0", resolves)
	}
	if got.Comment != "Reboot asked" || p.reads != 4 {
		t.Errorf("WaitTask = %+v after %d reads; want the task read as done after 4 reads", got, p.reads)
	}
}

// TestWaitTaskResolveBeforeGivingUp: when Transient404 is shorter than
// ResolveAfter, Resolve still decides before WaitTask gives up.
func TestWaitTaskResolveBeforeGivingUp(t *testing.T) {
	ft := newFakeTime()
	p := &scripted{answers: []answer{{err: notFound()}}}
	resolves := 0
	got, err := provider.WaitTask(t.Context(), p, ref, ft.opts(provider.WaitOptions{
		Transient404: 10 * time.Second,
		Resolve:      func(context.Context) (bool, error) { resolves++; return true, nil },
	}))
	if err != nil || got.Status != provider.TaskDone {
		t.Fatalf("WaitTask = %+v, %v; want done by state", got, err)
	}
	if resolves != 1 || p.reads != 4 {
		t.Errorf("resolves = %d, reads = %d; want 1 and 4", resolves, p.reads)
	}
}

func TestWaitTaskPermanentError(t *testing.T) {
	ft := newFakeTime()
	perm := fmt.Errorf("read task: %w: 403", provider.ErrAuth)
	p := &scripted{answers: []answer{{err: perm}, {status: "done"}}}
	_, err := provider.WaitTask(t.Context(), p, ref, ft.opts(provider.WaitOptions{}))
	if !errors.Is(err, provider.ErrAuth) {
		t.Fatalf("WaitTask error = %v, want ErrAuth", err)
	}
	if p.reads != 1 {
		t.Errorf("reads = %d, want 1", p.reads)
	}
}

func TestWaitTaskDeadline(t *testing.T) {
	ft := newFakeTime()
	p := &scripted{answers: []answer{{status: "doing"}}}
	_, err := provider.WaitTask(t.Context(), p, ref, ft.opts(provider.WaitOptions{Deadline: 2 * time.Minute}))
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "still doing") {
		t.Fatalf("WaitTask error = %v, want DeadlineExceeded saying still doing", err)
	}
	if got := ft.now.Sub(newFakeTime().now); got != 2*time.Minute {
		t.Errorf("gave up after %s, want exactly the 2m deadline", got)
	}
}

func TestWaitTaskRetryAfter(t *testing.T) {
	ft := newFakeTime()
	ra := &provider.RetryAfterError{After: 30 * time.Second, Err: errors.New("429")}
	p := &scripted{answers: []answer{{err: ra}, {status: "done"}}}
	if _, err := provider.WaitTask(t.Context(), p, ref, ft.opts(provider.WaitOptions{Initial: -1})); err != nil {
		t.Fatalf("WaitTask: %v", err)
	}
	if diff := cmp.Diff([]time.Duration{30 * time.Second}, ft.waits); diff != "" {
		t.Errorf("waits (-want +got):\n%s", diff)
	}
}

func TestWaitTaskCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	p := &scripted{answers: []answer{{status: "doing"}}}
	_, err := provider.WaitTask(ctx, p, ref, provider.WaitOptions{Initial: time.Hour})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitTask error = %v, want context.Canceled", err)
	}
	if p.reads != 0 {
		t.Errorf("reads = %d after cancel, want 0", p.reads)
	}
}

func TestFindBoot(t *testing.T) {
	boots := []provider.Boot{
		{ID: 1, Type: "harddisk", Kernel: "hd"},
		{ID: 46371, Type: "rescue", Kernel: "rescue-customer"},
		{ID: 230242, Type: "rescue", Kernel: "rescue12-customer"},
	}
	got, err := provider.FindBoot(boots, "rescue12-customer")
	if err != nil || got.ID != 230242 {
		t.Errorf("FindBoot(rescue12-customer) = %+v, %v; want id 230242", got, err)
	}
	_, err = provider.FindBoot(boots, "rescue64-pro")
	if !errors.Is(err, provider.ErrNotFound) {
		t.Fatalf("FindBoot(rescue64-pro) error = %v, want ErrNotFound", err)
	}
	for _, k := range []string{"rescue64-pro", "hd", "rescue-customer", "rescue12-customer"} {
		if !strings.Contains(err.Error(), k) {
			t.Errorf("error %q does not list %q", err, k)
		}
	}
}

func BenchmarkWaitTask(b *testing.B) {
	for b.Loop() {
		ft := newFakeTime()
		p := &scripted{answers: []answer{{status: "todo"}, {status: "doing"}, {status: "doing"}, {status: "done"}}}
		if _, err := provider.WaitTask(context.Background(), p, ref, ft.opts(provider.WaitOptions{})); err != nil {
			b.Fatal(err)
		}
	}
}
