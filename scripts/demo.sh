#!/usr/bin/env bash
# demo.sh: a real takeover in the local lab, and the failback.
#
# Builds the lab (network namespaces, real sshd, the OVH API simulator), kills
# the primary's service by fencing it into rescue, brings its disk up on the
# spare over NBD, moves the failover IP, writes a file through the spare,
# fails back, checks the file is served by the primary, prints the run's
# timeline and the outage windows a client saw, and removes the lab.
# Exits non-zero if any check fails. Run as root (make demo).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-$PWD/bin/takeover}
LAB=/run/takeover-lab
FIP=10.200.0.100
STATE=$(mktemp -d /tmp/takeover-demo-state.XXXXXX)
chmod 700 "$STATE"
WATCH_OUT=$STATE/client.txt
ops() { nsenter --net=/run/netns/tk-ops "$@"; }
client() { nsenter --net=/run/netns/tk-client "$@"; }
tk() { ops "$BIN" --state "$STATE" "$@"; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
fail() { echo "demo: FAILED: $*" >&2; exit 1; }
WATCH_PID=
cleanup() {
  rc=$?
  [ -n "$WATCH_PID" ] && kill "$WATCH_PID" 2>/dev/null || true
  say "lab down"
  "$BIN" lab down || rc=1
  # nothing of the takeover may stay behind on this machine either: loop
  # devices over nbdfuse files show "/disk" as their backing file
  if losetup -a | grep -q '(/disk)'; then echo "demo: loop devices left behind:"; losetup -a | grep '(/disk)'; rc=1; fi
  rm -rf "$STATE"
  [ $rc = 0 ] && printf '\ndemo: OK\n' || printf '\ndemo: FAILED (exit %d)\n' "$rc"
  exit $rc
}

[ "$(id -u)" = 0 ] || fail "run as root (the lab makes network namespaces and mounts)"
"$BIN" lab down >/dev/null 2>&1 || true
trap cleanup EXIT

say "lab up"
t0=$(date +%s.%N)
"$BIN" lab up
printf 'lab built in %.1fs\n' "$(echo "$(date +%s.%N) - $t0" | bc)"
"$BIN" lab status

say "client reads the service through the failover IP $FIP (routed to the primary)"
before=$(client curl -fsS -m 3 "http://$FIP/index.html") || fail "client cannot read the primary"
echo "$before"

say "a client polls http://$FIP/ every 50 ms from now on"
# started directly (not through a shell function) so that $! is the watcher itself
nsenter --net=/run/netns/tk-client "$BIN" lab watch "http://$FIP/index.html" --out "$WATCH_OUT" & WATCH_PID=$!

say "plan (read-only, with the drift check against the simulated OVH API)"
tk plan runbooks/lab.yaml --ovh-conf $LAB/ovh.conf | tail -4

say "takeover: disaster mode"
RUN=lab-demo-$(date +%H%M%S)
tk run runbooks/lab.yaml --run-id "$RUN" --ovh-conf $LAB/ovh.conf --poll-interval 200ms --yes --accept-risk fence,ip-move

say "client reads the same data through $FIP, now served by the spare"
after=$(client curl -fsS -m 3 "http://$FIP/index.html") || fail "client cannot read through the failover IP after the takeover"
echo "$after"
[ "$after" = "$before" ] || fail "the spare serves different data"
"$BIN" lab status | grep -E "primary:|routed"

say "write a file through the spare"
stamp="written on the spare at $(date -u +%FT%TZ)"
ops ssh -i $LAB/keys/admin_ed25519 -o UserKnownHostsFile=$LAB/known_hosts -o BatchMode=yes root@10.201.0.12 \
  "echo '$stamp' > $LAB/spare/mnt/www/from-spare.txt && sync"
got=$(client curl -fsS -m 3 "http://$FIP/from-spare.txt") || fail "file written on the spare not served"
echo "client reads: $got"

say "failback to the repaired primary"
tk failback "$RUN" --ovh-conf $LAB/ovh.conf --poll-interval 200ms

say "the file written on the spare is served by the primary"
"$BIN" lab status | grep -E "primary:|routed"
got=$(client curl -fsS -m 3 "http://$FIP/from-spare.txt") || fail "primary does not serve the file written on the spare"
echo "client reads: $got"
[ "$got" = "$stamp" ] || fail "primary serves '$got', want '$stamp'"

kill "$WATCH_PID"; wait "$WATCH_PID" || true; WATCH_PID=
say "what the client saw (lab latencies: reboot task 1.5 s, IP move task 0.5 s, task start 0.1 s)"
cat "$WATCH_OUT"
grep -q "outage 1:" "$WATCH_OUT" || fail "the client saw no outage window (did the takeover happen?)"
! grep -q "still open" "$WATCH_OUT" || fail "the client's last outage never ended"

say "timeline of $RUN"
tk log "$RUN" --output md
