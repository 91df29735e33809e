package etcdtest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// nsTransport returns base (or a default transport) dialling from inside
// the server's network namespace, for the health check.
func (s *Server) nsTransport(base http.RoundTripper) http.RoundTripper {
	tr, ok := base.(*http.Transport)
	if ok {
		tr = tr.Clone()
	} else {
		tr = &http.Transport{}
	}
	ns := s.opts.NetNS
	tr.DialContext = func(ctx context.Context, network, address string) (net.Conn, error) {
		return dialIn(ctx, ns, network, address)
	}
	return tr
}

// dialIn dials address from inside the network namespace at nsPath: the
// socket is made on an OS thread switched into it, and belongs to it for
// good.
func dialIn(ctx context.Context, nsPath, network, address string) (net.Conn, error) {
	target, err := os.Open(nsPath)
	if err != nil {
		return nil, fmt.Errorf("enter %s: %w", nsPath, err)
	}
	defer target.Close()
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("enter %s: %w", nsPath, err)
	}
	defer orig.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("enter %s: %w", nsPath, err)
	}
	var d net.Dialer
	conn, derr := d.DialContext(ctx, network, address)
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err == nil {
		runtime.UnlockOSThread()
	} // else: the thread stays locked and in the namespace; it exits with the goroutine
	return conn, derr
}
