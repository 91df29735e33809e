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

// TestStore runs the tests that leave etcd up against one shared server;
// each uses a prefix of its own.
func TestStore(t *testing.T) {
	srv := etcdtest.Start(t)
	t.Run("Conformance", func(t *testing.T) {
		statetest.Run(t, func(t *testing.T) state.Store { return open(t, srv, "/conformance") })
	})
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, *etcdtest.Server)
	}{
		{"PrefixesAreSeparate", testPrefixesAreSeparate},
		{"CorruptRecord", testCorruptRecord},
		{"LocksCorruptHolder", testLocksCorruptHolder},
		{"StaleLocalHolder", testStaleLocalHolder},
		{"LockTTLRounding", testLockTTLRounding},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, srv) })
	}
}
