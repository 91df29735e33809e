package ovh_test

import (
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/takeover-dev/takeover/provider"
	"github.com/takeover-dev/takeover/provider/ovh"
	"github.com/takeover-dev/takeover/provider/providertest"
)

// TestAccReadOnly runs the read-only part of the conformance suite against
// the real OVH API. It is manual-only (make test-acc) and runs when
// TAKEOVER_ACC=1, OVH credentials (OVH_ENDPOINT, OVH_APPLICATION_KEY,
// OVH_APPLICATION_SECRET, OVH_CONSUMER_KEY, or an ovh.conf) and
// TAKEOVER_ACC_SERVER are set. TAKEOVER_ACC_SPARE and TAKEOVER_ACC_IP (a
// failover IP routed to the server) add the IP checks; TAKEOVER_ACC_RESCUE
// names the rescue kernel (default rescue-customer). It never reboots or
// moves anything.
func TestAccReadOnly(t *testing.T) {
	if os.Getenv("TAKEOVER_ACC") != "1" || os.Getenv("TAKEOVER_ACC_SERVER") == "" {
		t.Skip("manual-only: set TAKEOVER_ACC=1, TAKEOVER_ACC_SERVER and OVH credentials")
	}
	c, err := ovh.New(ovh.Config{Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)})
	if err != nil {
		t.Skipf("no usable OVH credentials: %v", err)
	}
	h := providertest.Harness{
		New:          func(*testing.T) providertest.World { return providertest.World{Provider: c} },
		Primary:      provider.ServerID(os.Getenv("TAKEOVER_ACC_SERVER")),
		Spare:        provider.ServerID(os.Getenv("TAKEOVER_ACC_SPARE")),
		RescueKernel: os.Getenv("TAKEOVER_ACC_RESCUE"),
		ReadOnly:     true,
		Wait:         provider.WaitOptions{Initial: -1, Min: time.Second, Max: 5 * time.Second, Transient404: 5 * time.Second},
	}
	if s := os.Getenv("TAKEOVER_ACC_IP"); s != "" {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				t.Fatalf("TAKEOVER_ACC_IP=%q: %v", s, err)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		h.IP = p
	}
	providertest.Run(t, h)
}
