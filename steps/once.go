package steps

import (
	"context"
	"fmt"
	"slices"

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
// adopted; only if there is none is the call made again.
func (e *Env) issueOnce(ctx context.Context, key string, scope provider.TaskScope, owner, function string,
	call func(ctx context.Context) (provider.TaskRef, error)) (provider.TaskRef, error) {
	var ref provider.TaskRef
	if ok, err := e.Load("", key+".task", &ref); err != nil || ok {
		return ref, err
	}
	var before []int64
	known, err := e.Load("", key+".before", &before)
	if err != nil {
		return ref, err
	}
	refs, err := e.Provider.Tasks(ctx, scope, owner, function)
	if err != nil {
		return ref, fmt.Errorf("list %s tasks of %s: %w", function, owner, err)
	}
	if known {
		for i := len(refs) - 1; i >= 0; i-- {
			if !slices.Contains(before, refs[i].ID) {
				e.Log.Warn().Str("task", refs[i].String()).Msg("adopting the task of an earlier attempt whose reply was not journalled")
				if err := e.Save(ctx, key+".task", refs[i]); err != nil {
					return ref, err
				}
				return refs[i], nil
			}
		}
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
	ref, err = call(ctx)
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

// forget drops a journalled task handle so that a new call can be made
// (used when the journalled task ended in failure and the step retries).
func (e *Env) forget(ctx context.Context, key string) error {
	return e.Save(ctx, key+".task", nil)
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
