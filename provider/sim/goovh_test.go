package sim

import (
	"errors"
	"fmt"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ovh/go-ovh/ovh"

	"github.com/takeover-dev/takeover/provider"
)

// newGoOvh starts a simulator on the real clock with zero latencies and
// returns a go-ovh client for it.
func newGoOvh(t *testing.T, app App) (*Sim, *httptest.Server, *ovh.Client) {
	t.Helper()
	cfg := testConfig(t)
	s := New(cfg)
	srv := httptest.NewServer(s)
	t.Cleanup(func() { srv.Close(); s.Close() })
	c, err := ovh.NewClient(srv.URL+"/1.0", app.Key, app.Secret, app.Consumer)
	if err != nil {
		t.Fatal(err)
	}
	return s, srv, c
}

func apiError(t *testing.T, err error) *ovh.APIError {
	t.Helper()
	var ae *ovh.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("error %v (%T) is not an *ovh.APIError", err, err)
	}
	if ae.QueryID == "" || !strings.HasPrefix(ae.QueryID, "SIM.ws-1.") {
		t.Errorf("query id %q", ae.QueryID)
	}
	return ae
}

func TestGoOvhRescueRebootAndMove(t *testing.T) {
	s, _, c := newGoOvh(t, testApp)
	ctx := t.Context()

	var servers []string
	if err := c.GetWithContext(ctx, "/dedicated/server", &servers); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{srvA, srvB}, servers); diff != "" {
		t.Errorf("servers (-want +got):\n%s", diff)
	}
	// The TF/CLI rescue sequence.
	var ids []int64
	if err := c.GetWithContext(ctx, "/dedicated/server/"+url.PathEscape(srvA)+"/boot?bootType=rescue", &ids); err != nil {
		t.Fatal(err)
	}
	var boot struct {
		BootID int64  `json:"bootId"`
		Kernel string `json:"kernel"`
		Type   string `json:"bootType"`
	}
	if err := c.GetWithContext(ctx, fmt.Sprintf("/dedicated/server/%s/boot/%d", srvA, ids[1]), &boot); err != nil {
		t.Fatal(err)
	}
	if boot.Kernel != "rescue12-customer" || boot.Type != "rescue" {
		t.Fatalf("boot %d = %+v", ids[1], boot)
	}
	if err := c.PutWithContext(ctx, "/dedicated/server/"+srvA, map[string]any{"bootId": boot.BootID}, nil); err != nil {
		t.Fatal(err)
	}
	var task struct {
		TaskID   int64   `json:"taskId"`
		Function string  `json:"function"`
		Status   string  `json:"status"`
		DoneDate *string `json:"doneDate"`
	}
	if err := c.PostWithContext(ctx, "/dedicated/server/"+srvA+"/reboot", nil, &task); err != nil {
		t.Fatal(err)
	}
	if err := c.GetWithContext(ctx, fmt.Sprintf("/dedicated/server/%s/task/%d", srvA, task.TaskID), &task); err != nil {
		t.Fatal(err)
	}
	if task.Status != "done" || task.Function != "hardReboot" || task.DoneDate == nil {
		t.Errorf("reboot task = %+v", task)
	}
	if b, _ := s.Booted(srvA); b.Kernel != "rescue12-customer" {
		t.Errorf("booted %+v", b)
	}

	// Move with the escaped block, nexthop null.
	var ipTask struct {
		TaskID      int64  `json:"taskId"`
		Status      string `json:"status"`
		Destination struct {
			ServiceName string `json:"serviceName"`
		} `json:"destination"`
	}
	ipPath := "/ip/" + url.PathEscape(fipA)
	if err := c.PostWithContext(ctx, ipPath+"/move", map[string]any{"to": srvB, "nexthop": nil}, &ipTask); err != nil {
		t.Fatal(err)
	}
	if err := c.GetWithContext(ctx, fmt.Sprintf("%s/task/%d", ipPath, ipTask.TaskID), &ipTask); err != nil {
		t.Fatal(err)
	}
	if ipTask.Status != "done" || ipTask.Destination.ServiceName != srvB {
		t.Errorf("move task = %+v", ipTask)
	}
	var ip struct {
		RoutedTo struct {
			ServiceName *string `json:"serviceName"`
		} `json:"routedTo"`
	}
	if err := c.GetWithContext(ctx, "/ip/10.200.0.100", &ip); err != nil {
		t.Fatal(err)
	}
	if ip.RoutedTo.ServiceName == nil || *ip.RoutedTo.ServiceName != srvB {
		t.Errorf("routedTo = %v", ip.RoutedTo.ServiceName)
	}
	// Moving it where it already is.
	err := c.PostWithContext(ctx, ipPath+"/move", map[string]any{"to": srvB}, nil)
	if ae := apiError(t, err); ae.Code != 400 || ae.Class != "Client::BadRequest" {
		t.Errorf("move to current server: %v", err)
	}
	// The /v1 alias of go-ovh.
	var servers2 []string
	if err := c.GetWithContext(ctx, "/v1/dedicated/server", &servers2); err != nil || len(servers2) != 2 {
		t.Errorf("GET /v1/dedicated/server: %v %v", servers2, err)
	}
	if c := s.Counters(); c.Reboots[srvA] != 1 || c.Moves[fipA] != 1 {
		t.Errorf("counters %+v", c)
	}
}

func TestGoOvhErrors(t *testing.T) {
	s, srv, c := newGoOvh(t, testApp)
	ctx := t.Context()

	err := c.GetWithContext(ctx, "/dedicated/server/ns9.example", nil)
	if ae := apiError(t, err); ae.Code != 404 || ae.Class != "Client::NotFound" || ae.Message != "This service does not exist" {
		t.Errorf("unknown server: %+v", ae)
	}

	wrong, err := ovh.NewClient(srv.URL+"/1.0", testApp.Key, "wrong-secret", testApp.Consumer)
	if err != nil {
		t.Fatal(err)
	}
	err = wrong.GetWithContext(ctx, "/dedicated/server", nil)
	if ae := apiError(t, err); ae.Code != 400 || ae.Message != "Invalid signature" || ae.Class != "" {
		t.Errorf("wrong secret: %+v", ae)
	}
	unknown, err := ovh.NewClient(srv.URL+"/1.0", "unknownKey", "s", "ck")
	if err != nil {
		t.Fatal(err)
	}
	err = unknown.GetWithContext(ctx, "/dedicated/server", nil)
	if ae := apiError(t, err); ae.Code != 403 || ae.Message != "Invalid application key" {
		t.Errorf("unknown key: %+v", ae)
	}

	// The client caches its time delta on the first call; a later server
	// clock jump makes every signed call fail.
	if err := c.GetWithContext(ctx, "/dedicated/server", nil); err != nil {
		t.Fatal(err)
	}
	s.SetClockSkew(10 * time.Minute)
	err = c.GetWithContext(ctx, "/dedicated/server", nil)
	if ae := apiError(t, err); ae.Code != 400 || ae.Message != "Invalid signature" {
		t.Errorf("skewed clock: %+v", ae)
	}
	// A new client learns the new delta.
	fresh, err := ovh.NewClient(srv.URL+"/1.0", testApp.Key, testApp.Secret, testApp.Consumer)
	if err != nil {
		t.Fatal(err)
	}
	if err := fresh.GetWithContext(ctx, "/dedicated/server", nil); err != nil {
		t.Errorf("fresh client after skew: %v", err)
	}
	s.SetClockSkew(0)

	// Busy server.
	defer s.AddFault(Fault{Method: "GET", PathPrefix: "/dedicated/server/" + srvB + "/task/", Status: 500, Count: 1})()
	s.mu.Lock()
	s.lat.TaskStart = time.Hour
	s.mu.Unlock()
	var task struct {
		TaskID int64 `json:"taskId"`
	}
	if err := c.PostWithContext(ctx, "/dedicated/server/"+srvB+"/reboot", nil, &task); err != nil {
		t.Fatal(err)
	}
	err = c.PostWithContext(ctx, "/dedicated/server/"+srvB+"/reboot", nil, nil)
	if ae := apiError(t, err); ae.Code != 409 || ae.Class != "Client::Conflict" {
		t.Errorf("reboot while busy: %+v", ae)
	}
	err = c.GetWithContext(ctx, fmt.Sprintf("/dedicated/server/%s/task/%d", srvB, task.TaskID), nil)
	if ae := apiError(t, err); ae.Code != 500 || ae.Class != "Server::InternalServerError" {
		t.Errorf("faulted task read: %+v", ae)
	}

	// A 503 from the "gateway" is HTML: go-ovh keeps it as the message.
	defer s.AddFault(Fault{PathPrefix: "/ip", Status: 503, Count: 1})()
	err = c.GetWithContext(ctx, "/ip", nil)
	if ae := apiError(t, err); ae.Code != 503 || !strings.Contains(ae.Message, "Service Unavailable") {
		t.Errorf("503: %+v", ae)
	}
}

func TestGoOvhDropReply(t *testing.T) {
	s, _, c := newGoOvh(t, testApp)
	ctx := t.Context()
	s.AddFault(Fault{Method: "POST", PathPrefix: "/dedicated/server/" + srvA + "/reboot", DropReply: true, Count: 1})
	err := c.PostWithContext(ctx, "/dedicated/server/"+srvA+"/reboot", nil, nil)
	if err == nil {
		t.Fatal("dropped reply gave no error")
	}
	var ae *ovh.APIError
	if errors.As(err, &ae) {
		t.Fatalf("dropped reply gave an API error %v, want a transport error", err)
	}
	// The reboot happened: the task exists and the counter moved.
	var ids []int64
	if err := c.GetWithContext(ctx, "/dedicated/server/"+srvA+"/task?function=hardReboot", &ids); err != nil {
		t.Fatal(err)
	}
	if len(ids) != 1 {
		t.Fatalf("tasks after dropped reboot = %v, want one", ids)
	}
	if n := s.Counters().Reboots[srvA]; n != 1 {
		t.Errorf("reboot counter %d, want 1", n)
	}
	if pt, ok := s.Task(provider.TaskRef{Scope: provider.ScopeServer, Owner: srvA, ID: ids[0]}); !ok || pt.Function != "hardReboot" {
		t.Errorf("task %+v %v", pt, ok)
	}
}

func TestGoOvhDelayFault(t *testing.T) {
	s, _, c := newGoOvh(t, testApp)
	s.AddFault(Fault{Method: "GET", Delay: 20 * time.Millisecond, Count: 1})
	c.Timeout = 5 * time.Second
	var servers []string
	if err := c.GetWithContext(t.Context(), "/dedicated/server", &servers); err != nil || len(servers) != 2 {
		t.Errorf("delayed request: %v %v", servers, err)
	}
}
