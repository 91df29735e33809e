package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"
)

// WatchOptions are the flags of "takeover lab watch".
type WatchOptions struct {
	Interval time.Duration
	Timeout  time.Duration
	Out      string
}

// newWatchCommand is a client that polls a URL and reports every outage
// window (first failure → next success) when it is stopped. The demo runs
// it in the lab's client namespace to measure what clients saw.
func newWatchCommand(g *globalOptions) *cobra.Command {
	var o WatchOptions
	cmd := &cobra.Command{
		Use:    "watch URL",
		Short:  "Poll URL like a client and report the outage windows when stopped",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runWatch(cmd.Context(), o, g, args[0])
		},
	}
	cmd.Flags().DurationVar(&o.Interval, "interval", 50*time.Millisecond, "time between requests")
	cmd.Flags().DurationVar(&o.Timeout, "timeout", 300*time.Millisecond, "per-request timeout")
	cmd.Flags().StringVar(&o.Out, "out", "", "write the report here instead of stdout")
	return cmd
}

type outage struct {
	From, To time.Time
	Fails    int
}

func runWatch(ctx context.Context, o WatchOptions, g *globalOptions, url string) error {
	cl := &http.Client{Timeout: o.Timeout}
	var outs []outage
	var cur *outage
	var requests, fails int
	start := time.Now()
	t := time.NewTicker(o.Interval)
	defer t.Stop()
	for ctx.Err() == nil {
		ok := false
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return usagef("watch: %w", err)
		}
		at := time.Now()
		if resp, err := cl.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			ok = resp.StatusCode == http.StatusOK
		}
		if ctx.Err() != nil {
			break
		}
		requests++
		switch {
		case !ok && cur == nil:
			cur = &outage{From: at}
			fallthrough
		case !ok:
			cur.Fails++
			fails++
		case ok && cur != nil:
			cur.To = at
			outs = append(outs, *cur)
			cur = nil
		}
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
	w := g.stdout
	if o.Out != "" {
		f, err := os.Create(o.Out)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	fmt.Fprintf(w, "client: %d requests to %s over %s, %d failed\n", requests, url, time.Since(start).Round(time.Millisecond), fails)
	for i, x := range outs {
		fmt.Fprintf(w, "client: outage %d: service lost at %s, answered again at %s: %s (%d failed requests)\n",
			i+1, x.From.Format("15:04:05.000"), x.To.Format("15:04:05.000"), x.To.Sub(x.From).Round(time.Millisecond), x.Fails)
	}
	if cur != nil {
		fmt.Fprintf(w, "client: outage still open since %s\n", cur.From.Format("15:04:05.000"))
	}
	return nil
}
