package etcd

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/takeover-dev/takeover/state"
)

var _ state.Store = (*Store)(nil)

// pageSize is how many keys one range request returns while listing.
const pageSize = 500

// Store is a [state.Store] kept in etcd. It is safe for concurrent use.
type Store struct {
	cli     *clientv3.Client
	prefix  string
	timeout time.Duration
	host    string // this machine's name, to find stale locks of dead local processes
	log     zerolog.Logger
}

// Open connects to etcd and checks that it answers within cfg.DialTimeout.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, fmt.Errorf("open etcd store: no endpoints")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if !strings.HasPrefix(cfg.Prefix, "/") || strings.HasSuffix(cfg.Prefix, "/") {
		return nil, fmt.Errorf("open etcd store %s: prefix %q must start with / and not end with /", cfg, cfg.Prefix)
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	scheme := "http://"
	cc := clientv3.Config{
		DialTimeout: cfg.DialTimeout,
		Username:    cfg.Username,
		Password:    cfg.Password,
		Logger:      zap.NewNop(),
	}
	if cfg.TLS {
		scheme = "https://"
		tc, err := cfg.tlsConfig()
		if err != nil {
			return nil, fmt.Errorf("open etcd store %s: %w", cfg, err)
		}
		cc.TLS = tc
	}
	for _, ep := range cfg.Endpoints {
		if s, _, ok := strings.Cut(ep, "://"); ok {
			if (s == "https") != cfg.TLS {
				return nil, fmt.Errorf("open etcd store %s: endpoint %s does not match TLS=%t", cfg, ep, cfg.TLS)
			}
			cc.Endpoints = append(cc.Endpoints, ep)
			continue
		}
		cc.Endpoints = append(cc.Endpoints, scheme+ep)
	}
	cli, err := clientv3.New(cc)
	if err != nil {
		return nil, fmt.Errorf("open etcd store %s: %w", cfg, err)
	}
	// The client connects lazily; make sure someone answers now, so that a
	// wrong address or bad credentials show up at once.
	pctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	if _, err := cli.Get(pctx, cfg.Prefix+"/", clientv3.WithCountOnly()); err != nil {
		cli.Close()
		return nil, fmt.Errorf("open etcd store %s: %w", cfg, err)
	}
	host, _ := os.Hostname()
	return &Store{cli: cli, prefix: cfg.Prefix, timeout: cfg.RequestTimeout, host: host, log: cfg.Log}, nil
}

// Close closes the connection to etcd. Leases taken through s can no longer
// be refreshed and are lost at their expiry.
func (s *Store) Close() error {
	if err := s.cli.Close(); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("close etcd store: %w", err)
	}
	return nil
}

// opctx bounds one Store call by the request timeout.
func (s *Store) opctx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.timeout)
}

func (s *Store) runKey(run string) string  { return s.prefix + "/runs/" + run }
func (s *Store) metaKey(run string) string { return s.runKey(run) + "/meta" }
func (s *Store) journalPrefix(run string) string {
	return s.runKey(run) + "/journal/"
}
func (s *Store) recordKey(run string, seq int64) string {
	return fmt.Sprintf("%s%012d", s.journalPrefix(run), seq)
}

// checkRun refuses run ids that would escape their key space.
func checkRun(run string) error {
	if run == "" || strings.ContainsAny(run, "/\x00") {
		return fmt.Errorf("invalid run id %q", run)
	}
	return nil
}

// runMeta is stored at <prefix>/runs/<run>/meta, created with record 0.
type runMeta struct {
	Created time.Time `json:"created"`
}

// Append writes rec with a transaction that succeeds only if record rec.Seq
// does not exist and record rec.Seq-1 does. If the transaction's outcome is
// unknown (etcd became unreachable mid-call), Append returns that error; a
// retry then gives ErrConflict if the first attempt had in fact landed, so
// callers compare with Records before retrying.
func (s *Store) Append(ctx context.Context, rec state.Record) error {
	if err := checkRun(rec.Run); err != nil {
		return fmt.Errorf("append record %d: %w", rec.Seq, err)
	}
	if rec.Seq < 0 {
		return fmt.Errorf("append record %d of run %s: negative sequence: %w", rec.Seq, rec.Run, state.ErrConflict)
	}
	val, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("append record %d of run %s: encode: %w", rec.Seq, rec.Run, err)
	}
	key := s.recordKey(rec.Run, rec.Seq)
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), "=", 0)}
	ops := []clientv3.Op{clientv3.OpPut(key, string(val))}
	if rec.Seq == 0 {
		meta, err := json.Marshal(runMeta{Created: time.Now().UTC()})
		if err != nil {
			return fmt.Errorf("append record 0 of run %s: encode meta: %w", rec.Run, err)
		}
		mk := s.metaKey(rec.Run)
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(mk), "=", 0))
		ops = append(ops, clientv3.OpPut(mk, string(meta)))
	} else {
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(s.recordKey(rec.Run, rec.Seq-1)), ">", 0))
	}
	ctx, cancel := s.opctx(ctx)
	defer cancel()
	resp, err := s.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return fmt.Errorf("append record %d of run %s: %w", rec.Seq, rec.Run, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("append record %d of run %s: %w", rec.Seq, rec.Run, state.ErrConflict)
	}
	return nil
}

// Records reads the run's records at one revision, so a concurrent Append
// is either wholly in the result or not at all.
func (s *Store) Records(ctx context.Context, run string) ([]state.Record, error) {
	if err := checkRun(run); err != nil {
		return nil, fmt.Errorf("read records: %w", err)
	}
	ctx, cancel := s.opctx(ctx)
	defer cancel()
	var recs []state.Record
	err := s.scan(ctx, s.journalPrefix(run), false, func(kv *mvccpb.KeyValue) error {
		key, val := kv.Key, kv.Value
		want := s.recordKey(run, int64(len(recs)))
		if string(key) != want {
			return fmt.Errorf("key %s: expected %s next: %w", key, want, state.ErrCorrupt)
		}
		var r state.Record
		if err := json.Unmarshal(val, &r); err != nil {
			return fmt.Errorf("key %s: decode: %w: %w", key, state.ErrCorrupt, err)
		}
		if r.Run != run || r.Seq != int64(len(recs)) {
			return fmt.Errorf("key %s: holds record %d of run %q: %w", key, r.Seq, r.Run, state.ErrCorrupt)
		}
		if len(r.Out) != 0 && !json.Valid(r.Out) {
			return fmt.Errorf("key %s: out is not valid JSON: %w", key, state.ErrCorrupt)
		}
		recs = append(recs, r)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read records of run %s: %w", run, err)
	}
	if len(recs) == 0 {
		return nil, fmt.Errorf("read records of run %s: %w", run, state.ErrNotFound)
	}
	return recs, nil
}

// Runs lists runs in the order their first record was written (the etcd
// create revision of their meta key), which does not depend on clocks.
func (s *Store) Runs(ctx context.Context) ([]string, error) {
	ctx, cancel := s.opctx(ctx)
	defer cancel()
	type run struct {
		id  string
		rev int64
	}
	var runs []run
	prefix := s.prefix + "/runs/"
	err := s.scan(ctx, prefix, true, func(kv *mvccpb.KeyValue) error {
		id, ok := strings.CutSuffix(strings.TrimPrefix(string(kv.Key), prefix), "/meta")
		if ok && !strings.Contains(id, "/") {
			runs = append(runs, run{id, kv.CreateRevision})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	slices.SortFunc(runs, func(a, b run) int { return cmp.Compare(a.rev, b.rev) })
	ids := make([]string, len(runs))
	for i, r := range runs {
		ids[i] = r.id
	}
	return ids, nil
}

// scan calls fn for every key under prefix in key order, page by page, all
// pages read at the revision of the first one.
func (s *Store) scan(ctx context.Context, prefix string, keysOnly bool, fn func(kv *mvccpb.KeyValue) error) error {
	end := clientv3.GetPrefixRangeEnd(prefix)
	from := prefix
	var rev int64
	for {
		opts := []clientv3.OpOption{
			clientv3.WithRange(end),
			clientv3.WithLimit(pageSize),
			clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend),
		}
		if keysOnly {
			opts = append(opts, clientv3.WithKeysOnly())
		}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := s.cli.Get(ctx, from, opts...)
		if err != nil {
			return err
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			if err := fn(kv); err != nil {
				return err
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}
