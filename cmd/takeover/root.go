package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"github.com/takeover-dev/takeover/state"
	"github.com/takeover-dev/takeover/state/etcd"
	"github.com/takeover-dev/takeover/state/local"
)

// globalOptions are the flags every command shares, and the streams.
type globalOptions struct {
	State     string
	LogFormat string
	LogLevel  string

	stdin          io.Reader
	stdout, stderr io.Writer
}

func (g *globalOptions) addFlags(cmd *cobra.Command) {
	f := cmd.PersistentFlags()
	f.StringVar(&g.State, "state", defaultStateDir(), "where journals and locks live: a directory, or etcd://host:port[,host:port]/prefix (env TAKEOVER_STATE)")
	f.StringVar(&g.LogFormat, "log-format", "console", "diagnostic log format on stderr: console or json")
	f.StringVar(&g.LogLevel, "log-level", "warn", "diagnostic log level: debug, info, warn, error")
}

// defaultStateDir is $TAKEOVER_STATE, else /var/lib/takeover for root, else
// the user's state directory.
func defaultStateDir() string {
	if s := os.Getenv("TAKEOVER_STATE"); s != "" {
		return s
	}
	if os.Geteuid() == 0 {
		return "/var/lib/takeover"
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "takeover")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ".takeover"
	}
	return filepath.Join(home, ".local", "state", "takeover")
}

// logger builds the diagnostic logger from the flags.
func (g *globalOptions) logger() (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(g.LogLevel)
	if err != nil || g.LogLevel == "" {
		return zerolog.Nop(), usagef("--log-level %q: want debug, info, warn or error", g.LogLevel)
	}
	var w io.Writer
	switch g.LogFormat {
	case "json":
		w = g.stderr
	case "console":
		noColor := true
		if f, ok := g.stderr.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
			noColor = false
		}
		w = zerolog.ConsoleWriter{Out: g.stderr, NoColor: noColor, TimeFormat: time.TimeOnly}
	default:
		return zerolog.Nop(), usagef("--log-format %q: want console or json", g.LogFormat)
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger(), nil
}

// openStore opens the state store named by --state.
func (g *globalOptions) openStore(ctx context.Context, log zerolog.Logger) (state.Store, error) {
	s := g.State
	switch {
	case strings.HasPrefix(s, "etcd://") || strings.HasPrefix(s, "etcds://"):
		cfg, err := etcd.ParseURL(s)
		if err != nil {
			return nil, usagef("--state: %w", err)
		}
		cfg.Log = log
		st, err := etcd.Open(ctx, cfg)
		if err != nil {
			return nil, fmt.Errorf("open state %s: %w", s, err)
		}
		return st, nil
	case strings.Contains(s, "://"):
		return nil, usagef("--state %q: unknown scheme; use a directory or etcd://host:port/prefix", s)
	case s == "":
		return nil, usagef("--state is empty")
	default:
		st, err := local.Open(s)
		if err != nil {
			return nil, fmt.Errorf("open state directory: %w", err)
		}
		return st, nil
	}
}

// store opens the state store of --state for a command that only reads or
// edits it (status, log, unlock), with the diagnostic logger of the flags.
func (g *globalOptions) store(ctx context.Context) (state.Store, error) {
	log, err := g.logger()
	if err != nil {
		return nil, err
	}
	return g.openStore(ctx, log)
}

func newRootCommand(g *globalOptions) *cobra.Command {
	root := &cobra.Command{
		Use:   "takeover",
		Short: "Get a dead server's data serving again from a standby spare",
		Long: `takeover runs named runbooks that fence a failed dedicated server into the
provider's rescue system, export its disks to a standby spare, start the
services there and move the failover IPs. Every step is journalled, so a
half-done takeover can be resumed or rolled back by anyone on the team.
` + exitStatusHelp,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &usageError{err}
	})
	g.addFlags(root)
	root.AddCommand(
		newRunCommand(g),
		newResumeCommand(g),
		newRollbackCommand(g),
		newStatusCommand(g),
		newLogCommand(g),
		newUnlockCommand(g),
		newVersionCommand(g),
		newFailbackCommand(g),
		newPlanCommand(g),
		newRunbookCommand(g),
		newSimCommand(g),
		newLabCommand(g),
	)
	for _, c := range root.Commands() {
		if c.Args == nil {
			c.Args = cobra.NoArgs
		}
	}
	refuseUnknown(root)
	wrapArgs(root)
	return root
}

// refuseUnknown makes every command group (root, runbook, sim, lab) print
// its help when called alone and fail with a usage error on an unknown
// subcommand; cobra would print the help and exit 0 ("takeover runbook
// valdiate x.yaml" succeeding silently).
func refuseUnknown(c *cobra.Command) {
	if c.HasSubCommands() && c.Run == nil && c.RunE == nil {
		c.Args = cobra.ArbitraryArgs
		c.SuggestionsMinimumDistance = 2
		c.RunE = func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return cmd.Help()
			}
			err := usagef("unknown command %q for %q", args[0], cmd.CommandPath())
			if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
				return withHint(err, fmt.Sprintf("did you mean %q?", cmd.CommandPath()+" "+s[0]))
			}
			return err
		}
	}
	for _, sub := range c.Commands() {
		refuseUnknown(sub)
	}
}

// wrapArgs turns cobra's argument errors into usage errors.
func wrapArgs(c *cobra.Command) {
	if c.Args != nil {
		inner := c.Args
		c.Args = func(cmd *cobra.Command, args []string) error {
			if err := inner(cmd, args); err != nil {
				return &usageError{err}
			}
			return nil
		}
	}
	for _, sub := range c.Commands() {
		wrapArgs(sub)
	}
}
