package provider

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// ServerID names a dedicated server as the provider does (OVH: the service
// name, e.g. "ns3956771.ip-169-254-10.eu").
type ServerID string

// Server is what a takeover needs to know about a dedicated server.
type Server struct {
	ID             ServerID   `json:"id"`
	IP             netip.Addr `json:"ip"`     // main public address
	BootID         int64      `json:"bootId"` // current netboot; sticky across reboots
	RescueSSHKey   string     `json:"rescueSshKey,omitempty"`
	Monitoring     bool       `json:"monitoring"`
	NoIntervention bool       `json:"noIntervention"`
	PowerState     string     `json:"powerState,omitempty"` // poweron | poweroff
	State          string     `json:"state,omitempty"`      // ok | error | hacked | hackedBlocked
	Datacenter     string     `json:"datacenter,omitempty"`
}

// Boot is one netboot choice of a server.
type Boot struct {
	ID          int64  `json:"bootId"`
	Type        string `json:"bootType"` // harddisk | rescue | ipxeCustomerScript | internal | network | power
	Kernel      string `json:"kernel"`   // hd, rescue-customer, rescue12-customer, ...
	Description string `json:"description,omitempty"`
}

// ServerUpdate changes writable fields of a server; nil fields are left alone.
type ServerUpdate struct {
	BootID         *int64  `json:"bootId,omitempty"`
	RescueSSHKey   *string `json:"rescueSshKey,omitempty"`
	Monitoring     *bool   `json:"monitoring,omitempty"`
	NoIntervention *bool   `json:"noIntervention,omitempty"`
}

// TaskScope says which task list a task lives in.
type TaskScope string

const (
	ScopeServer TaskScope = "server" // /dedicated/server/{Owner}/task/{ID}
	ScopeIP     TaskScope = "ip"     // /ip/{Owner}/task/{ID}
)

// TaskRef is a serialisable handle on a provider task; the journal stores it
// the moment it is known so that a resumed run polls the task instead of
// issuing the call again.
type TaskRef struct {
	Scope TaskScope `json:"scope"`
	Owner string    `json:"owner"` // server id or IP block
	ID    int64     `json:"id"`
}

func (t TaskRef) String() string { return fmt.Sprintf("%s task %d of %s", t.Scope, t.ID, t.Owner) }

// Task statuses, as OVH names them.
const (
	TaskInit          = "init"
	TaskTodo          = "todo"
	TaskDoing         = "doing"
	TaskDone          = "done"
	TaskCancelled     = "cancelled"
	TaskCustomerError = "customerError"
	TaskOvhError      = "ovhError"
)

// Task is the observed state of a provider task.
type Task struct {
	Ref        TaskRef    `json:"ref"`
	Function   string     `json:"function"` // hardReboot, genericMoveFloatingIp, ...
	Status     string     `json:"status"`
	Comment    string     `json:"comment,omitempty"`
	StartDate  time.Time  `json:"startDate"`
	DoneDate   *time.Time `json:"doneDate,omitempty"`
	LastUpdate *time.Time `json:"lastUpdate,omitempty"`
	// QueryID is the provider's id of the request that read this state
	// (OVH: X-Ovh-QueryID), quoted in errors because support asks for it.
	QueryID string `json:"queryId,omitempty"`
}

// Finished reports whether the task reached a terminal status.
func (t Task) Finished() bool {
	switch t.Status {
	case TaskDone, TaskCancelled, TaskCustomerError, TaskOvhError:
		return true
	}
	return false
}

// Provider is a hosting provider account. Implementations are safe for
// concurrent use.
type Provider interface {
	// Server returns a server's current settings. Unknown id: ErrNotFound.
	Server(ctx context.Context, id ServerID) (Server, error)
	// Boots lists a server's netboot choices.
	Boots(ctx context.Context, id ServerID) ([]Boot, error)
	// UpdateServer sets the non-nil fields of u (netboot, rescue key,
	// monitoring, noIntervention). Idempotent.
	UpdateServer(ctx context.Context, id ServerID, u ServerUpdate) error
	// Reboot hard-reboots the server into whatever netboot is set when the
	// reboot runs, and returns its task. Not idempotent: it is sent once; if
	// the reply is lost the implementation looks for the task it created and
	// otherwise returns ErrUnknownOutcome. A reboot while another task of the
	// server is pending gives ErrBusy.
	Reboot(ctx context.Context, id ServerID) (TaskRef, error)
	// Task reads a task. A task the provider purged gives ErrNotFound.
	Task(ctx context.Context, ref TaskRef) (Task, error)
	// Tasks lists the ids of a server's or an IP's tasks with the given
	// function ("" for all), newest last.
	Tasks(ctx context.Context, scope TaskScope, owner, function string) ([]TaskRef, error)
	// ServerIPs lists the IP blocks routed to a server.
	ServerIPs(ctx context.Context, id ServerID) ([]netip.Prefix, error)
	// RouteOf says which server an IP block is routed to ("" when parked).
	RouteOf(ctx context.Context, ip netip.Prefix) (ServerID, error)
	// CanMoveIP returns nil if ip may be moved to server to, or an error
	// (ErrPermanent for a refusal) saying why not.
	CanMoveIP(ctx context.Context, ip netip.Prefix, to ServerID) error
	// MoveIP routes ip to server to and returns the move task. Same
	// once-only contract as Reboot; a move to where the IP is already routed
	// returns a zero TaskRef and nil.
	MoveIP(ctx context.Context, ip netip.Prefix, to ServerID) (TaskRef, error)
}

// Error vocabulary shared by all providers. Implementations wrap one of these
// together with their native error.
var (
	ErrNotFound       = errors.New("not found")
	ErrBusy           = errors.New("busy: another task is pending")
	ErrAuth           = errors.New("authentication refused")
	ErrPermanent      = errors.New("refused")
	ErrUnknownOutcome = errors.New("outcome unknown")
	ErrTaskFailed     = errors.New("task failed")
)

// RetryAfterError is wrapped when the provider asks to come back later
// (HTTP 429 or a documented transient state).
type RetryAfterError struct {
	After time.Duration
	Err   error
}

func (e *RetryAfterError) Error() string {
	return fmt.Sprintf("retry after %s: %v", e.After, e.Err)
}
func (e *RetryAfterError) Unwrap() error { return e.Err }
