package provider

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Default polling schedule of [WaitTask], the one Terraform's OVH provider
// uses for dedicated-server tasks: a first read after 10 s, then 3 s, 6 s and
// every 10 s, for at most an hour; unreadable tasks (404/5xx) are tolerated
// for 5 minutes.
const (
	DefaultWaitInitial      = 10 * time.Second
	DefaultWaitMin          = 3 * time.Second
	DefaultWaitMax          = 10 * time.Second
	DefaultWaitDeadline     = 60 * time.Minute
	DefaultWaitTransient404 = 5 * time.Minute
	DefaultWaitResolveAfter = 30 * time.Second
)

// WaitOptions tunes [WaitTask]. The zero value gives the default schedule.
type WaitOptions struct {
	// Initial is the wait before the first read (default 10 s; negative:
	// read at once).
	Initial time.Duration
	// Min and Max bound the wait between later reads; it starts at Min and
	// doubles up to Max (defaults 3 s and 10 s).
	Min, Max time.Duration
	// Deadline bounds the whole wait, measured with Clock (default 60 min).
	// The context may end it sooner.
	Deadline time.Duration
	// Transient404 is how long reads may keep failing with ErrNotFound or a
	// transient (5xx, network, retry-after) error before WaitTask gives up
	// (default 5 min). OVH answers 404 for a task that is being created in
	// another region, and for a task it purged.
	Transient404 time.Duration
	// Resolve, if set, decides by reading state when the task cannot be
	// read (404): done=true ends the wait successfully. It is how a resumed
	// run learns the outcome of a task the provider already purged.
	Resolve func(ctx context.Context) (done bool, err error)
	// ResolveAfter is how long 404s must persist, measured with Clock,
	// before Resolve is consulted (default 30 s; negative: at the first
	// 404): OVH answers transient 404s right after creating a task, which
	// say nothing about its outcome. Resolve is also consulted before
	// WaitTask gives up on an unreadable task, even if that comes sooner.
	ResolveAfter time.Duration
	// Clock and After replace time.Now and time.After (tests).
	Clock func() time.Time
	After func(time.Duration) <-chan time.Time
	// OnPoll, if set, sees every task state read.
	OnPoll func(Task)
}

func (o WaitOptions) withDefaults() WaitOptions {
	if o.Initial == 0 {
		o.Initial = DefaultWaitInitial
	}
	if o.Initial < 0 {
		o.Initial = 0
	}
	if o.Min <= 0 {
		o.Min = DefaultWaitMin
	}
	if o.Max <= 0 {
		o.Max = DefaultWaitMax
	}
	if o.Max < o.Min {
		o.Max = o.Min
	}
	if o.Deadline <= 0 {
		o.Deadline = DefaultWaitDeadline
	}
	if o.Transient404 <= 0 {
		o.Transient404 = DefaultWaitTransient404
	}
	if o.ResolveAfter == 0 {
		o.ResolveAfter = DefaultWaitResolveAfter
	}
	if o.ResolveAfter < 0 {
		o.ResolveAfter = 0
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.After == nil {
		o.After = time.After
	}
	return o
}

// WaitTask polls the task ref of p until it is done and returns its last
// state. A task ending in another terminal status (cancelled, customerError,
// ovhError) gives an error wrapping [ErrTaskFailed] that names the task, its
// owner, status and comment. Reads failing with ErrNotFound or a transient
// error are retried for opts.Transient404, consulting opts.Resolve once
// ErrNotFound has lasted opts.ResolveAfter (and before giving up); other read errors (ErrAuth, ErrPermanent, ...) end the wait
// at once. Running past opts.Deadline gives an error wrapping
// context.DeadlineExceeded. WaitTask only reads, so it is safe to call again
// after a crash.
func WaitTask(ctx context.Context, p Provider, ref TaskRef, opts WaitOptions) (Task, error) {
	o := opts.withDefaults()
	start := o.Clock()
	delay, next := o.Initial, o.Min
	var (
		last     Task
		errSince time.Time // start of the current run of failed reads
		nfSince  time.Time // first ErrNotFound of that run
	)
	for {
		if elapsed := o.Clock().Sub(start); delay > o.Deadline-elapsed {
			delay = max(o.Deadline-elapsed, 0)
		}
		if delay > 0 {
			select {
			case <-ctx.Done():
				return last, fmt.Errorf("wait for %s: %w", ref, ctx.Err())
			case <-o.After(delay):
			}
		} else if err := ctx.Err(); err != nil {
			return last, fmt.Errorf("wait for %s: %w", ref, err)
		}

		t, err := p.Task(ctx, ref)
		now := o.Clock()
		switch {
		case err == nil:
			errSince, nfSince = time.Time{}, time.Time{}
			last = t
			if o.OnPoll != nil {
				o.OnPoll(t)
			}
			if t.Status == TaskDone {
				return t, nil
			}
			if t.Finished() {
				return t, TaskError(t)
			}
		case ctx.Err() != nil:
			return last, fmt.Errorf("wait for %s: %w", ref, ctx.Err())
		case !transient(err):
			return last, fmt.Errorf("wait for %s: %w", ref, err)
		default:
			if errSince.IsZero() {
				errSince = now
			}
			notFound := errors.Is(err, ErrNotFound)
			if notFound && nfSince.IsZero() {
				nfSince = now
			}
			gone := now.Sub(errSince)
			resolved := ""
			if notFound && o.Resolve != nil && (now.Sub(nfSince) >= o.ResolveAfter || gone >= o.Transient404) {
				done, rerr := o.Resolve(ctx)
				switch {
				case rerr != nil:
					resolved = fmt.Sprintf("; reading state to decide failed too: %v", rerr)
				case done:
					t := Task{Ref: ref, Function: last.Function, Status: TaskDone,
						Comment: "task no longer readable; state shows its effect in place"}
					if o.OnPoll != nil {
						o.OnPoll(t)
					}
					return t, nil
				default:
					resolved = "; state does not show its effect"
				}
			}
			if gone >= o.Transient404 {
				return last, fmt.Errorf("wait for %s: task unreadable for %s%s: %w", ref, gone, resolved, err)
			}
			var ra *RetryAfterError
			if errors.As(err, &ra) && ra.After > next {
				next = min(ra.After, o.Deadline)
			}
		}
		if elapsed := now.Sub(start); elapsed >= o.Deadline {
			status := last.Status
			if status == "" {
				status = "unread"
			}
			return last, fmt.Errorf("wait for %s: still %s after %s: %w", ref, status, elapsed, context.DeadlineExceeded)
		}
		delay = next
		next = min(next*2, o.Max)
	}
}

// TaskError describes a task that ended in a failure status; it wraps
// [ErrTaskFailed].
func TaskError(t Task) error {
	msg := t.Ref.String()
	if t.Function != "" {
		msg += " (" + t.Function + ")"
	}
	msg += " ended " + t.Status
	if t.Comment != "" {
		msg += fmt.Sprintf(": %q", t.Comment)
	}
	if t.QueryID != "" {
		msg += " (query id " + t.QueryID + ")"
	}
	return fmt.Errorf("%s: %w", msg, ErrTaskFailed)
}

// transient reports whether a task read error may go away by itself.
func transient(err error) bool {
	var ra *RetryAfterError
	switch {
	case errors.Is(err, ErrNotFound), errors.As(err, &ra):
		return true
	case errors.Is(err, ErrAuth), errors.Is(err, ErrPermanent), errors.Is(err, ErrBusy),
		errors.Is(err, ErrTaskFailed), errors.Is(err, ErrUnknownOutcome):
		return false
	}
	// Unclassified: 5xx after the client's own retries, network errors and
	// per-request timeouts (the caller's ctx was checked before).
	return true
}
