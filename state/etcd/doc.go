// Package etcd is a [state.Store] kept in etcd, for teams: several operators
// on several machines see the same journals and the same locks, so one can
// run "takeover status", "log" or "resume" on a run another one started.
//
// # URL
//
// [ParseURL] reads the --state URL:
//
//	etcd://host[:port][,host[:port]...][/prefix][?option=value&...]
//	etcds://...
//
// etcd:// is plaintext; etcds:// is TLS, verified with the system roots or
// with the CA given by ?ca= or TAKEOVER_ETCD_CA, and with an optional client
// certificate (?cert=&key= or TAKEOVER_ETCD_CERT, TAKEOVER_ETCD_KEY). TLS
// files given with etcd:// are an error rather than silently unused. The
// port defaults to 2379 and the prefix to /takeover. User and password come
// only from TAKEOVER_ETCD_USERNAME and TAKEOVER_ETCD_PASSWORD: a URL holding
// credentials is refused. ?dial-timeout= and ?timeout= set
// [Config.DialTimeout] and [Config.RequestTimeout].
//
// # Keys
//
//	<prefix>/runs/<run>/meta               created with record 0
//	<prefix>/runs/<run>/journal/<seq:%012d> one JSON [state.Record]
//	<prefix>/locks/<name>                  JSON [state.LockInfo], attached to an etcd lease
//
// [Store.Append] is one transaction: it writes record n only if record n
// does not exist and record n-1 does (for n = 0, it also creates the meta
// key), so appends are gap-free compare-and-swap and a loser writes
// nothing. A record is durable (committed by the etcd cluster) when Append
// returns nil. [Store.Runs] orders runs by the etcd create revision of
// their meta key, that is by when their first record was committed, not by
// any machine's clock. Records are read at one revision. etcd checks its
// own data; the store only checks that each record decodes and sits at the
// key its Seq names, and reports anything else as [state.ErrCorrupt] naming
// the key.
//
// # Locks and leases
//
// A lock is its key, created in a transaction only if absent and attached
// to an etcd lease of the requested TTL rounded up to whole seconds. etcd
// has a minimum lease TTL of 1.5 election timeouts rounded up to a second
// (2 s with etcd's default timers), and raises shorter TTLs to it; Expires
// reports the TTL actually granted. When a lease expires etcd deletes the
// key, so an expired lock is simply absent and the next Lock takes it. A
// lock whose holder ran on this host under a PID that no longer exists is
// removed and taken at once.
//
// Like every [state.Lease], an etcd lease expires unless its holder calls
// [state.Lease.Refresh] within the TTL: there is no background keepalive,
// because the holder, not the connection, must prove it is alive. Refresh
// renews the lease (one etcd keepalive) and rewrites the holder's Expires.
// [state.Lease.Lost] is closed when the lease is known to be gone: the key
// was deleted or taken (etcd expiry, "takeover unlock" from anywhere), a
// Refresh was refused, or the local deadline passed without a successful
// Refresh. The local deadline is the TTL counted from when the last
// successful renewal was sent, which is never later than etcd's own expiry;
// so when etcd becomes unreachable, Lost closes within one TTL of the last
// good Refresh, before anyone else can take the lock. The runner treats a
// closed Lost as the end of its authority: it cancels the run's context and
// starts no further side effect; the run is resumed once etcd is back and the
// lock is taken again. Release revokes the lease and does not close Lost.
//
// # Unreachable etcd
//
// Every call is bounded by [Config.RequestTimeout] (10 s by default) unless
// its ctx ends sooner, so an unreachable etcd makes calls fail rather than
// hang. An Append whose outcome is unknown returns the transport error; the
// record may or may not have been committed, which Records tells.
//
// The etcd client's own logs are discarded; the store logs lock events to
// [Config.Log]. Tests run against a real etcd server started by
// state/etcd/etcdtest.
package etcd
