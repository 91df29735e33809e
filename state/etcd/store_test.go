package etcd_test

import (
	"testing"

	"github.com/rs/zerolog"

	"github.com/takeover-dev/takeover/state"
	"github.com/takeover-dev/takeover/state/etcd"
	"github.com/takeover-dev/takeover/state/etcd/etcdtest"
	"github.com/takeover-dev/takeover/state/statetest"
)

// open returns a Store with its own etcd client on srv under prefix.
func open(t *testing.T, srv *etcdtest.Server, prefix string) *etcd.Store {
	t.Helper()
	s, err := etcd.Open(t.Context(), etcd.Config{
		Endpoints: srv.Endpoints,
		Prefix:    prefix,
		Log:       zerolog.New(zerolog.NewTestWriter(t)),
	})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s
}

func TestConformance(t *testing.T) {
	srv := etcdtest.Start(t)
	statetest.Run(t, func(t *testing.T) state.Store { return open(t, srv, "/conformance") })
}
