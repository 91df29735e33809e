package ovh

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/takeover-dev/takeover/provider"
)

// Task functions the client creates.
const (
	FuncHardReboot = "hardReboot"
	FuncMoveIP     = "genericMoveFloatingIp"
)

func serverPath(id provider.ServerID) string {
	return "/dedicated/server/" + url.PathEscape(string(id))
}
func ipPath(ip string) string { return "/ip/" + url.PathEscape(ip) }

func ownerPath(scope provider.TaskScope, owner string) (string, error) {
	switch scope {
	case provider.ScopeServer:
		return serverPath(provider.ServerID(owner)), nil
	case provider.ScopeIP:
		return ipPath(owner), nil
	}
	return "", fmt.Errorf("unknown task scope %q: %w", scope, provider.ErrPermanent)
}

type apiServer struct {
	Name           string  `json:"name"`
	IP             string  `json:"ip"`
	BootID         *int64  `json:"bootId"`
	RescueSSHKey   *string `json:"rescueSshKey"`
	Monitoring     bool    `json:"monitoring"`
	NoIntervention bool    `json:"noIntervention"`
	PowerState     string  `json:"powerState"`
	State          string  `json:"state"`
	Datacenter     string  `json:"datacenter"`
}

type apiBoot struct {
	BootID      int64  `json:"bootId"`
	BootType    string `json:"bootType"`
	Kernel      string `json:"kernel"`
	Description string `json:"description"`
}

type apiTask struct {
	TaskID     int64      `json:"taskId"`
	Function   string     `json:"function"`
	Status     string     `json:"status"`
	Comment    *string    `json:"comment"`
	StartDate  *time.Time `json:"startDate"`
	DoneDate   *time.Time `json:"doneDate"`
	LastUpdate *time.Time `json:"lastUpdate"`
}

type apiIP struct {
	IP       string `json:"ip"`
	Type     string `json:"type"`
	RoutedTo *struct {
		ServiceName *string `json:"serviceName"`
	} `json:"routedTo"`
}

// Server implements [provider.Provider].
func (c *Client) Server(ctx context.Context, id provider.ServerID) (provider.Server, error) {
	var s apiServer
	if _, err := c.call(ctx, "GET", serverPath(id), nil, &s); err != nil {
		return provider.Server{}, wrap("read server "+string(id), err)
	}
	out := provider.Server{
		ID:             id,
		Monitoring:     s.Monitoring,
		NoIntervention: s.NoIntervention,
		PowerState:     s.PowerState,
		State:          s.State,
		Datacenter:     s.Datacenter,
	}
	if s.Name != "" {
		out.ID = provider.ServerID(s.Name)
	}
	if s.IP != "" {
		a, err := netip.ParseAddr(s.IP)
		if err != nil {
			return provider.Server{}, fmt.Errorf("read server %s: bad ip %q: %w", id, s.IP, err)
		}
		out.IP = a
	}
	if s.BootID != nil {
		out.BootID = *s.BootID
	}
	if s.RescueSSHKey != nil {
		out.RescueSSHKey = *s.RescueSSHKey
	}
	return out, nil
}

// Boots implements [provider.Provider].
func (c *Client) Boots(ctx context.Context, id provider.ServerID) ([]provider.Boot, error) {
	op := "list netboots of " + string(id)
	var ids []int64
	if _, err := c.call(ctx, "GET", serverPath(id)+"/boot", nil, &ids); err != nil {
		return nil, wrap(op, err)
	}
	slices.Sort(ids)
	boots := make([]provider.Boot, 0, len(ids))
	for _, bid := range ids {
		var b apiBoot
		if _, err := c.call(ctx, "GET", serverPath(id)+"/boot/"+strconv.FormatInt(bid, 10), nil, &b); err != nil {
			return nil, wrap(fmt.Sprintf("%s: read netboot %d", op, bid), err)
		}
		boots = append(boots, provider.Boot{ID: b.BootID, Type: b.BootType, Kernel: b.Kernel, Description: b.Description})
	}
	return boots, nil
}

// BootByKernel returns the netboot of server id whose kernel is kernel
// (e.g. "rescue12-customer"); see [provider.FindBoot].
func (c *Client) BootByKernel(ctx context.Context, id provider.ServerID, kernel string) (provider.Boot, error) {
	boots, err := c.Boots(ctx, id)
	if err != nil {
		return provider.Boot{}, err
	}
	b, err := provider.FindBoot(boots, kernel)
	if err != nil {
		return provider.Boot{}, fmt.Errorf("choose netboot of %s: %w", id, err)
	}
	return b, nil
}

// UpdateServer implements [provider.Provider].
func (c *Client) UpdateServer(ctx context.Context, id provider.ServerID, u provider.ServerUpdate) error {
	if u == (provider.ServerUpdate{}) {
		return nil
	}
	if _, err := c.call(ctx, "PUT", serverPath(id), u, nil); err != nil {
		return wrap(fmt.Sprintf("update server %s (%s)", id, describeUpdate(u)), err)
	}
	return nil
}

// describeUpdate names the fields of u without their values (a rescue key is
// public, but keep errors short).
func describeUpdate(u provider.ServerUpdate) string {
	var f []string
	if u.BootID != nil {
		f = append(f, "bootId="+strconv.FormatInt(*u.BootID, 10))
	}
	if u.RescueSSHKey != nil {
		f = append(f, "rescueSshKey")
	}
	if u.Monitoring != nil {
		f = append(f, "monitoring="+strconv.FormatBool(*u.Monitoring))
	}
	if u.NoIntervention != nil {
		f = append(f, "noIntervention="+strconv.FormatBool(*u.NoIntervention))
	}
	return strings.Join(f, ", ")
}

// Task implements [provider.Provider].
func (c *Client) Task(ctx context.Context, ref provider.TaskRef) (provider.Task, error) {
	op := "read " + ref.String()
	base, err := ownerPath(ref.Scope, ref.Owner)
	if err != nil {
		return provider.Task{}, fmt.Errorf("%s: %w", op, err)
	}
	var t apiTask
	qid, err := c.call(ctx, "GET", base+"/task/"+strconv.FormatInt(ref.ID, 10), nil, &t)
	if err != nil {
		return provider.Task{}, wrap(op, err)
	}
	out := provider.Task{
		Ref:        ref,
		Function:   t.Function,
		Status:     t.Status,
		DoneDate:   t.DoneDate,
		LastUpdate: t.LastUpdate,
		QueryID:    qid,
	}
	if t.Comment != nil {
		out.Comment = *t.Comment
	}
	if t.StartDate != nil {
		out.StartDate = *t.StartDate
	}
	return out, nil
}

// Tasks implements [provider.Provider].
func (c *Client) Tasks(ctx context.Context, scope provider.TaskScope, owner, function string) ([]provider.TaskRef, error) {
	ids, err := c.taskIDs(ctx, scope, owner, function)
	if err != nil {
		return nil, err
	}
	refs := make([]provider.TaskRef, len(ids))
	for i, id := range ids {
		refs[i] = provider.TaskRef{Scope: scope, Owner: owner, ID: id}
	}
	return refs, nil
}

func (c *Client) taskIDs(ctx context.Context, scope provider.TaskScope, owner, function string) ([]int64, error) {
	op := fmt.Sprintf("list %s tasks of %s", scope, owner)
	if function != "" {
		op = fmt.Sprintf("list %s tasks %s of %s", scope, function, owner)
	}
	base, err := ownerPath(scope, owner)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	path := base + "/task"
	if function != "" {
		path += "?" + url.Values{"function": {function}}.Encode()
	}
	var ids []int64
	if _, err := c.call(ctx, "GET", path, nil, &ids); err != nil {
		return nil, wrap(op, err)
	}
	slices.Sort(ids)
	return ids, nil
}

// ServerIPs implements [provider.Provider].
func (c *Client) ServerIPs(ctx context.Context, id provider.ServerID) ([]netip.Prefix, error) {
	op := "list IPs of " + string(id)
	var blocks []string
	if _, err := c.call(ctx, "GET", serverPath(id)+"/ips", nil, &blocks); err != nil {
		return nil, wrap(op, err)
	}
	out := make([]netip.Prefix, 0, len(blocks))
	for _, b := range blocks {
		p, err := parseBlock(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", op, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// parseBlock accepts "1.2.3.4/32" and a bare "1.2.3.4".
func parseBlock(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("bad ip block %q", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// RouteOf implements [provider.Provider].
func (c *Client) RouteOf(ctx context.Context, ip netip.Prefix) (provider.ServerID, error) {
	var r apiIP
	if _, err := c.call(ctx, "GET", ipPath(ip.String()), nil, &r); err != nil {
		return "", wrap("read route of "+ip.String(), err)
	}
	if r.RoutedTo == nil || r.RoutedTo.ServiceName == nil {
		return "", nil
	}
	return provider.ServerID(*r.RoutedTo.ServiceName), nil
}

// CanMoveIP implements [provider.Provider].
func (c *Client) CanMoveIP(ctx context.Context, ip netip.Prefix, to provider.ServerID) error {
	path := serverPath(to) + "/ipCanBeMovedTo?" + url.Values{"ip": {ip.String()}}.Encode()
	if _, err := c.call(ctx, "GET", path, nil, nil); err != nil {
		return wrap(fmt.Sprintf("check move of %s to %s", ip, to), err)
	}
	return nil
}

// noTaskError is a 2xx reply to a task-creating POST that names no task
// (empty body, null, {}): the call may or may not have taken effect.
type noTaskError struct{ qid string }

func (e *noTaskError) Error() string {
	msg := "the API accepted the call but its reply names no task"
	if e.qid != "" {
		msg += " (X-OVH-Query-Id: " + e.qid + ")"
	}
	return msg
}

// Reboot implements [provider.Provider]: the POST is sent once; if its reply
// is lost, or names no task, the task list tells whether it took effect.
func (c *Client) Reboot(ctx context.Context, id provider.ServerID) (provider.TaskRef, error) {
	op := "reboot " + string(id)
	owner := string(id)
	before, err := c.taskIDs(ctx, provider.ScopeServer, owner, FuncHardReboot)
	if err != nil {
		return provider.TaskRef{}, fmt.Errorf("%s: %w", op, err)
	}
	var t apiTask
	qid, err := c.call(ctx, "POST", serverPath(id)+"/reboot", nil, &t)
	if err == nil && t.TaskID != 0 {
		return provider.TaskRef{Scope: provider.ScopeServer, Owner: owner, ID: t.TaskID}, nil
	}
	if err == nil {
		err = &noTaskError{qid: qid}
	}
	return c.afterFailedPost(ctx, op, provider.ScopeServer, owner, FuncHardReboot, before, err, nil)
}

// MoveIP implements [provider.Provider], with Reboot's once-only POST.
func (c *Client) MoveIP(ctx context.Context, ip netip.Prefix, to provider.ServerID) (provider.TaskRef, error) {
	op := fmt.Sprintf("move %s to %s", ip, to)
	owner := ip.String()
	cur, err := c.RouteOf(ctx, ip)
	if err != nil {
		return provider.TaskRef{}, fmt.Errorf("%s: %w", op, err)
	}
	if cur == to {
		return provider.TaskRef{}, nil
	}
	before, err := c.taskIDs(ctx, provider.ScopeIP, owner, FuncMoveIP)
	if err != nil {
		return provider.TaskRef{}, fmt.Errorf("%s: %w", op, err)
	}
	var t apiTask
	qid, err := c.call(ctx, "POST", ipPath(owner)+"/move", map[string]string{"to": string(to)}, &t)
	if err == nil && t.TaskID != 0 {
		return provider.TaskRef{Scope: provider.ScopeIP, Owner: owner, ID: t.TaskID}, nil
	}
	if err == nil {
		err = &noTaskError{qid: qid}
	}
	routed := func(ctx context.Context) (bool, error) {
		r, err := c.RouteOf(ctx, ip)
		return r == to, err
	}
	return c.afterFailedPost(ctx, op, provider.ScopeIP, owner, FuncMoveIP, before, err, routed)
}

// afterFailedPost turns a failed POST into the error to return, or, when
// its outcome is unknown (reply lost, or a 2xx naming no task), into the
// task it created if observation finds it. done, if set, recognises the
// effect being in place without a task.
func (c *Client) afterFailedPost(ctx context.Context, op string, scope provider.TaskScope, owner, function string,
	before []int64, postErr error, done func(context.Context) (bool, error)) (provider.TaskRef, error) {
	if !unknownOutcome(postErr) {
		if errors.Is(sentinel(postErr), provider.ErrBusy) {
			if pending := c.pendingTask(ctx, scope, owner); pending != "" {
				return provider.TaskRef{}, fmt.Errorf("%s: %w (%s): %w", op, provider.ErrBusy, pending, postErr)
			}
		}
		return provider.TaskRef{}, wrap(op, postErr)
	}
	c.log.Warn().Err(postErr).Str("op", op).Msg("outcome of a non-idempotent call unknown; observing the task list instead of resending")
	// The caller may be giving up, but the POST may have run: learn its
	// task within a bounded time so it can be journalled.
	octx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Duration(c.poll.Tries)*c.poll.Interval+c.timeout)
	defer cancel()
	start := time.Now()
	var obsErr error
	tries := 0
	for i := range c.poll.Tries {
		if i > 0 {
			select {
			case <-octx.Done():
			case <-time.After(c.poll.Interval):
			}
		}
		tries++
		ids, err := c.taskIDs(octx, scope, owner, function)
		if err != nil {
			obsErr = err
		}
		for j := len(ids) - 1; j >= 0; j-- {
			if !slices.Contains(before, ids[j]) {
				ref := provider.TaskRef{Scope: scope, Owner: owner, ID: ids[j]}
				c.log.Warn().Str("op", op).Stringer("task", ref).Msg("adopted the task created by the call whose outcome was unknown")
				return ref, nil
			}
		}
		if done != nil {
			ok, err := done(octx)
			if err != nil {
				obsErr = err
			}
			if ok {
				c.log.Warn().Str("op", op).Msg("call whose outcome was unknown already took effect")
				return provider.TaskRef{}, nil
			}
		}
		if octx.Err() != nil {
			break
		}
	}
	observed := fmt.Sprintf("observed the %s task list for %s (%d looks)", function, time.Since(start).Round(time.Millisecond), tries)
	if obsErr != nil {
		return provider.TaskRef{}, fmt.Errorf("%s: %w: %w (%s; observing failed too: %v)", op, provider.ErrUnknownOutcome, postErr, observed, obsErr)
	}
	return provider.TaskRef{}, fmt.Errorf("%s: %w: no new %s task appeared (%s): %w", op, provider.ErrUnknownOutcome, function, observed, postErr)
}

// pendingTask describes the newest unfinished task of owner, or "".
func (c *Client) pendingTask(ctx context.Context, scope provider.TaskScope, owner string) string {
	ids, err := c.taskIDs(ctx, scope, owner, "")
	if err != nil {
		return ""
	}
	for i := len(ids) - 1; i >= 0 && i >= len(ids)-5; i-- {
		t, err := c.Task(ctx, provider.TaskRef{Scope: scope, Owner: owner, ID: ids[i]})
		if err == nil && !t.Finished() {
			return fmt.Sprintf("pending %s, %s %s", t.Ref, t.Function, t.Status)
		}
	}
	return ""
}
