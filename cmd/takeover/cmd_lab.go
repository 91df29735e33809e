package main

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/takeover-dev/takeover/provider/sim/lab"
)

// LabOptions are the flags of "takeover lab".
type LabOptions struct {
	Dir    string
	Output string
}

func newLabCommand(g *globalOptions) *cobra.Command {
	var o LabOptions
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "Build, inspect and remove the local lab (network namespaces, real sshd, NBD, the OVH simulator)",
		Long: `The lab models an OVH setup on this machine with network namespaces: a client,
a primary and a spare on a public bridge and a private (vRack) bridge, a
router that routes the failover IP to a server's main address, and the OVH API
simulator whose reboots really switch the primary between its normal OS and a
rescue system, and whose IP moves really change the route. Needs root,
/dev/fuse and the packages of scripts/install-deps.sh.
` + exitStatusHelp,
	}
	cmd.PersistentFlags().StringVar(&o.Dir, "dir", lab.DefaultDir, "lab directory")
	up := &cobra.Command{
		Use: "up", Short: "Build the lab", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			log, err := g.logger()
			if err != nil {
				return err
			}
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			cfg := lab.Config{Dir: o.Dir, Log: log, ServeCommand: []string{exe, "lab", "serve", "--dir", o.Dir, "--log-format", "json", "--log-level", "info"}}
			l, err := lab.Up(cmd.Context(), cfg)
			if err != nil {
				return withHint(fmt.Errorf("lab up: %w", err), `"takeover lab down" removes a half-built lab`)
			}
			c := l.Config()
			fmt.Fprintf(g.stdout, "lab up in %s: OVH API %s, credentials in %s\n", c.Dir, c.Endpoint(), c.Paths().OVHConf)
			return nil
		},
	}
	down := &cobra.Command{
		Use: "down", Short: "Remove everything the lab made (namespaces, mounts, loop devices, processes)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			log, err := g.logger()
			if err != nil {
				return err
			}
			if err := lab.Down(cmd.Context(), lab.Config{Dir: o.Dir, Log: log}); err != nil {
				return fmt.Errorf("lab down: %w", err)
			}
			fmt.Fprintln(g.stdout, "lab down: nothing left")
			return nil
		},
	}
	status := &cobra.Command{
		Use: "status", Short: "Show the lab's namespaces, processes, mounts and where the failover IP is routed", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runLabStatus(cmd.Context(), o, g)
		},
	}
	status.Flags().StringVar(&o.Output, "output", "text", "text or json")
	serve := &cobra.Command{
		Use: "serve", Short: "Run the lab's OVH API simulator (started by lab up)", Args: cobra.NoArgs, Hidden: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			log, err := g.logger()
			if err != nil {
				return err
			}
			return lab.Serve(cmd.Context(), lab.Config{Dir: o.Dir, Log: log})
		},
	}
	cmd.AddCommand(up, down, status, serve, newWatchCommand(g))
	return cmd
}

func runLabStatus(ctx context.Context, o LabOptions, g *globalOptions) error {
	r, err := lab.Status(ctx, lab.Config{Dir: o.Dir})
	if err != nil {
		return err
	}
	if o.Output == "json" {
		return writeJSON(g.stdout, r)
	}
	fmt.Fprintf(g.stdout, "lab %s: up=%v, API %s\nprimary: %s, spare: %s\nfailover IP %s routed via %s (%s)\n",
		r.Dir, r.Up, r.Endpoint, r.Primary, r.Spare, r.FailoverIP, r.RoutedVia, r.RoutedTo)
	fmt.Fprintf(g.stdout, "namespaces: %v\nmounts: %v\n", r.Namespaces, r.Mounts)
	for _, p := range r.Processes {
		fmt.Fprintf(g.stdout, "process: %+v\n", p)
	}
	for _, l := range r.Loops {
		fmt.Fprintf(g.stdout, "loop: %+v\n", l)
	}
	return nil
}
