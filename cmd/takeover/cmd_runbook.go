package main

import (
	"errors"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/takeover-dev/takeover/runbooks"
)

func newRunbookCommand(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "runbook",
		Short: "Validate and list runbooks",
	}
	validate := &cobra.Command{
		Use:   "validate FILE...",
		Short: "Check runbook files; every problem is printed as file:line:col",
		Long: `Validate decodes each file strictly and checks it; it prints every problem with
its position and a hint. Exits 0 when all files are valid, 2 otherwise.
` + exitStatusHelp,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			bad := 0
			for _, f := range args {
				rb, err := runbooks.Load(f)
				if err != nil {
					bad++
					fmt.Fprintln(g.stderr, err)
					continue
				}
				fmt.Fprintf(g.stdout, "%s: ok (runbook %s: %s → %s)\n", f, rb.Name, rb.Primary.Server, rb.Spare.Server)
			}
			if bad > 0 {
				return withHint(&usageError{fmt.Errorf("%d of %d runbook file(s) invalid", bad, len(args))}, "runbooks/README.md documents every key")
			}
			return nil
		},
	}
	list := &cobra.Command{
		Use:   "list [DIR]",
		Short: "List the runbooks in a directory (default " + runbooks.DefaultDir + ")",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := runbooks.DefaultDir
			if len(args) == 1 {
				dir = args[0]
			}
			sums, err := runbooks.List(dir)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tPRIMARY\tSPARE\tIPS\tFILE\tSTATUS")
			invalid := 0
			for _, s := range sums {
				status := "ok"
				if s.Err != nil {
					invalid++
					var list runbooks.ErrorList
					if errors.As(s.Err, &list) && len(list) > 0 {
						status = fmt.Sprintf("INVALID (%d problem(s)): %s", len(list), list[0].Error())
					} else {
						status = "INVALID: " + s.Err.Error()
					}
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", s.Name, s.Primary, s.Spare, len(s.IPs), s.File, status)
			}
			tw.Flush()
			if invalid > 0 {
				return withHint(fmt.Errorf("%d of %d runbook(s) in %s invalid", invalid, len(sums), dir), `"takeover runbook validate FILE" lists every problem of a file`)
			}
			return nil
		},
	}
	cmd.AddCommand(validate, list)
	return cmd
}
