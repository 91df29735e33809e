package local_test

import (
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"

	"github.com/takeover-dev/takeover/state"
	"github.com/takeover-dev/takeover/state/local"
	"github.com/takeover-dev/takeover/state/statetest"
)

// open returns a function that opens a new Store on dir each call, as the
// conformance suite needs.
func opener(dir string) func(t *testing.T) state.Store {
	return func(t *testing.T) state.Store {
		t.Helper()
		s, err := local.Open(dir, local.WithLogger(zerolog.New(zerolog.NewTestWriter(t))))
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
}

func TestConformance(t *testing.T) {
	statetest.Run(t, opener(filepath.Join(t.TempDir(), "state")))
}
