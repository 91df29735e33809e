package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	"github.com/takeover-dev/takeover/provider/sim"
)

// SimServeOptions are the flags of "takeover sim serve".
type SimServeOptions struct {
	Listen  string
	Config  string
	TLS     bool
	Cert    string
	Key     string
	CertDir string
}

func newSimCommand(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "The OVH API simulator used by tests, drills and the lab",
	}
	var o SimServeOptions
	serve := &cobra.Command{
		Use:   "serve",
		Short: "Serve the OVH API simulator and print the ovh.conf section that points go-ovh at it",
		Long: `Serve runs the OVH API v1 simulator (signed requests, tasks with latencies,
reboots into the selected netboot, failover IP moves, fault knobs) until
interrupted. Without --config it serves two servers and one failover IP with
freshly generated credentials. With --tls it serves HTTPS with a self-signed
certificate written to --cert-dir (or the one given), so other OVH clients
(python-ovh, node-ovh, terraform) can drive it too.
` + exitStatusHelp,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSimServe(cmd.Context(), o, g)
		},
	}
	f := serve.Flags()
	f.StringVar(&o.Listen, "listen", "127.0.0.1:8080", "listen address")
	f.StringVar(&o.Config, "config", "", "simulator config file (YAML: apps, servers, ips, latency)")
	f.BoolVar(&o.TLS, "tls", false, "serve HTTPS")
	f.StringVar(&o.Cert, "cert", "", "TLS certificate file (with --key)")
	f.StringVar(&o.Key, "key", "", "TLS key file")
	f.StringVar(&o.CertDir, "cert-dir", ".", "where a self-signed certificate is written when --cert is not given")
	cmd.AddCommand(serve)
	return cmd
}

func runSimServe(ctx context.Context, o SimServeOptions, g *globalOptions) error {
	log, err := g.logger()
	if err != nil {
		return err
	}
	var cfg sim.Config
	if o.Config != "" {
		if cfg, err = sim.LoadConfig(o.Config); err != nil {
			return &usageError{fmt.Errorf("--config: %w", err)}
		}
	} else {
		cfg = sim.Config{
			Servers: []sim.ServerConfig{{Name: "ns1.example.eu", IP: "192.0.2.11", Datacenter: "gra3"}, {Name: "ns2.example.eu", IP: "192.0.2.12", Datacenter: "gra3"}},
			IPs:     []sim.IPConfig{{Block: "198.51.100.7/32", RoutedTo: "ns1.example.eu"}},
		}
	}
	if len(cfg.Apps) == 0 {
		app, err := sim.GenerateApp()
		if err != nil {
			return err
		}
		cfg.Apps = []sim.App{app}
	}
	cfg.Log = log
	if err := cfg.Validate(); err != nil {
		return &usageError{fmt.Errorf("simulator config: %w", err)}
	}
	s := sim.New(cfg)
	defer s.Close()
	return sim.Serve(ctx, s, sim.ServeOptions{Addr: o.Listen, TLS: o.TLS, CertFile: o.Cert, KeyFile: o.Key, CertDir: o.CertDir,
		Ready: func(l sim.Listening) {
			fmt.Fprintf(g.stdout, "OVH API simulator on %s\n", l.Endpoint)
			if l.CertFile != "" {
				fmt.Fprintf(g.stdout, "certificate: %s (trust it in your client)\n", l.CertFile)
			}
			fmt.Fprintf(g.stdout, "\n# ovh.conf\n%s\n", sim.OvhConf(l.Endpoint, cfg.Apps[0]))
		}})
}
