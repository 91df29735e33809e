package steps

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/takeover-dev/takeover/provider"
)

// issueOnce makes a non-idempotent provider call (a reboot, an IP move) at
// most once for the current step, across crashes and retries.
//
// Before the call it journals the ids of the owner's tasks of that function
// that already exist (key+".before"); right after, the new task's handle
// (key+".task"). On a later attempt a journalled task is returned as is; if
// only the "before" list is journalled, the call may or may not have reached
// the provider, so the task list is read and a task absent from the list is
// adopted. When an earlier call's outcome was unknown, the list is watched
// for unknownGrace (task lists lag behind) before the call is made again.
func (e *Env) issueOnce(ctx context.Context, key string, scope provider.TaskScope, owner, function string,
	call func(ctx context.Context) (provider.TaskRef, error)) (provider.TaskRef, error) {
	ref, found, err := e.settle(ctx, key, scope, owner, function)
	if err != nil || found {
		return ref, err
	}
	refs, err := e.Provider.Tasks(ctx, scope, owner, function)
	if err != nil {
		return ref, fmt.Errorf("list %s tasks of %s: %w", function, owner, err)
	}
	ids := make([]int64, 0, len(refs))
	for _, r := range refs {
		ids = append(ids, r.ID)
	}
	if err := e.Save(ctx, key+".before", ids); err != nil {
		return ref, err
	}
	if err := ctx.Err(); err != nil {
		return ref, err
	}
	// From here on a crash leaves the call's outcome unknown: a resumed
	// run gives the task list unknownGrace to show it before calling again.
	if err := e.Save(ctx, key+".callAt", e.Clock().UTC()); err != nil {
		return ref, err
	}
	ref, err = call(ctx)
	switch {
	case errors.Is(err, provider.ErrUnknownOutcome):
		_ = e.Save(ctx, key+".unknownAt", e.Clock().UTC())
	case err != nil:
		// a definitive refusal (busy, not found, auth): nothing to wait for
		_ = e.Save(ctx, key+".callAt", time.Time{})
	}
	if err != nil {
		return ref, err
	}
	if ref.ID == 0 {
		return ref, nil // nothing to do: the provider says the effect is in place
	}
	if err := e.Save(ctx, key+".task", ref); err != nil {
		return ref, err
	}
	return ref, nil
}

// settle is inflight that, when a call may have reached the provider
// without its task showing yet (its outcome was unknown, or the process
// died right after making it), watches the task list for up to
// unknownGrace after that call before concluding there is no task.
func (e *Env) settle(ctx context.Context, key string, scope provider.TaskScope, owner, function string) (provider.TaskRef, bool, error) {
	ref, found, err := e.inflight(ctx, key, scope, owner, function)
	if err != nil || found {
		return ref, found, err
	}
	var last time.Time
	for _, k := range []string{".unknownAt", ".callAt"} {
		var t time.Time
		if _, err := e.Load("", key+k, &t); err != nil {
			return ref, false, err
		}
		if t.After(last) {
			last = t
		}
	}
	for !last.IsZero() && e.Clock().Sub(last) < unknownGrace {
		select {
		case <-ctx.Done():
			return ref, false, ctx.Err()
		case <-time.After(2 * time.Second):
		}
		if ref, found, err = e.inflight(ctx, key, scope, owner, function); err != nil || found {
			return ref, found, err
		}
	}
	return provider.TaskRef{}, false, nil
}

// unknownGrace is how long a task list is watched, after a call whose
// outcome was unknown, before the call is made again.
const unknownGrace = 60 * time.Second

// inflight returns the task of the call journalled under key: the task
// journalled right after the call, or else a task that is not in the list
// journalled before it (the call reached the provider but its reply was
// lost), which it then journals. found is false when no call is known to
// have reached the provider.
func (e *Env) inflight(ctx context.Context, key string, scope provider.TaskScope, owner, function string) (ref provider.TaskRef, found bool, err error) {
	if ok, err := e.Load("", key+".task", &ref); err != nil {
		return ref, false, err
	} else if ok && ref.ID != 0 {
		return ref, true, nil
	}
	var before []int64
	known, err := e.Load("", key+".before", &before)
	if err != nil || !known {
		return ref, false, err
	}
	refs, err := e.Provider.Tasks(ctx, scope, owner, function)
	if err != nil {
		return ref, false, fmt.Errorf("list %s tasks of %s: %w", function, owner, err)
	}
	for i := len(refs) - 1; i >= 0; i-- {
		if !slices.Contains(before, refs[i].ID) {
			e.Log.Warn().Str("task", refs[i].String()).Msg("adopting the task of an earlier attempt whose reply was not journalled")
			if err := e.Save(ctx, key+".task", refs[i]); err != nil {
				return ref, false, err
			}
			return refs[i], true, nil
		}
	}
	return provider.TaskRef{}, false, nil
}

// forget drops a journalled task that ended in failure so that the step
// can call again: the failed task joins the "before" list (so it is never
// adopted again) and the journalled handle is cleared.
func (e *Env) forget(ctx context.Context, key string) error {
	var failed provider.TaskRef
	var before []int64
	if _, err := e.Load("", key+".task", &failed); err != nil {
		return err
	}
	if _, err := e.Load("", key+".before", &before); err != nil {
		return err
	}
	if failed.ID != 0 && !slices.Contains(before, failed.ID) {
		before = append(before, failed.ID)
		if err := e.Save(ctx, key+".before", before); err != nil {
			return err
		}
	}
	for _, k := range []string{".unknownAt", ".callAt"} {
		if err := e.Save(ctx, key+k, time.Time{}); err != nil {
			return err
		}
	}
	return e.Save(ctx, key+".task", provider.TaskRef{})
}

// waitTask waits for a provider task with the run's poll settings.
func (e *Env) waitTask(ctx context.Context, ref provider.TaskRef, resolve func(ctx context.Context) (bool, error)) (provider.Task, error) {
	if err := e.Waiting(ctx, ref.String()); err != nil {
		return provider.Task{}, err
	}
	opts := e.Poll
	opts.Resolve = resolve
	return provider.WaitTask(ctx, e.Provider, ref, opts)
}
