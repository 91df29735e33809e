package main

import (
	"bufio"
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// UnlockOptions are the flags of "takeover unlock".
type UnlockOptions struct {
	Yes bool
}

func newUnlockCommand(g *globalOptions) *cobra.Command {
	var o UnlockOptions
	cmd := &cobra.Command{
		Use:   "unlock LOCK_ID",
		Short: "Remove a lock whose holder is gone",
		Long: `Unlock removes a lock by its id (shown by "takeover status" and in the error of
a refused run), whoever holds it. Use it only when the holder is gone for sure:
two orchestrators on one server is how split brain starts. Asks for a typed
"yes" unless --yes is given.
` + exitStatusHelp,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runUnlock(cmd.Context(), o, g, args[0])
		},
	}
	cmd.Flags().BoolVar(&o.Yes, "yes", false, "do not ask")
	return cmd
}

func runUnlock(ctx context.Context, o UnlockOptions, g *globalOptions, id string) error {
	st, err := g.store(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	locks, err := st.Locks(ctx)
	if err != nil {
		return err
	}
	found := false
	for _, l := range locks {
		if l.ID == id {
			found = true
			fmt.Fprintf(g.stdout, "%s\n", l.String())
		}
	}
	if !found {
		return withHint(fmt.Errorf("no lock with id %s", id), `"takeover status" lists the locks`)
	}
	if !o.Yes {
		fmt.Fprint(g.stdout, "Remove this lock? Only if its holder is gone for sure. Type \"yes\": ")
		ans, _ := bufio.NewReader(g.stdin).ReadString('\n')
		if strings.TrimSpace(ans) != "yes" {
			return fmt.Errorf("aborted, no changes made")
		}
	}
	if err := st.Unlock(ctx, id); err != nil {
		return fmt.Errorf("unlock %s: %w", id, err)
	}
	fmt.Fprintf(g.stdout, "lock %s removed\n", id)
	return nil
}
