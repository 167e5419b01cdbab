#!/usr/bin/env bash
# bench/soak.sh [MINUTES]: soak and fault run of mxedge (default 20 min).
# Mixed load (1 KiB to 5 MiB, bench/soakload) on the MX listener into a
# recording backend that goes down for 30 s every 5 min; kill -9 of the
# relay every KILL_EVERY minutes (default 6) with an immediate restart; one
# disk-full episode at half time (the data dir is a 2 GiB tmpfs this script
# mounts; a filler file takes the free space for 60 s). At the end every
# accepted message is accounted for: accepted = delivered + bounced + still
# queued (lost = the rest; duplicates counted: delivery is at least once,
# the window is a kill between the backend's 250 and the result's commit),
# and RSS, threads, open descriptors and goroutines (control socket GET
# /runtime, curl) of mxedge over time with their
# slope are printed. Needs root (mount). Environment: SOAK_SESSIONS (4),
# KILL_EVERY (minutes, 6), SOAK_TMP (/var/tmp), MXEDGE_ADDR (127.0.0.1:2702),
# SINK_ADDR (127.0.0.1:2628).
set -euo pipefail
mins=${1:-20}
kill_every=${KILL_EVERY:-6}
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/bench/lib.sh"
mx_addr=${MXEDGE_ADDR:-127.0.0.1:2702} sink_addr=${SINK_ADDR:-127.0.0.1:2628}
work=$(mktemp -d "${SOAK_TMP:-/var/tmp}/mxedge-soak.XXXXXX")
data=$work/data
mxpid= loadpid= mounted=0
cleanup() {
  [ -n "$loadpid" ] && kill "$loadpid" 2>/dev/null || true
  [ -n "$mxpid" ] && kill "$mxpid" 2>/dev/null && wait "$mxpid" 2>/dev/null || true
  [ $mounted = 1 ] && umount "$data" 2>/dev/null || true
  echo "work directory: $work" >&2
}
trap cleanup EXIT
export GOFLAGS=${GOFLAGS:--buildvcs=false}
(cd "$root" && nice go build -o "$work/mxedge" ./cmd/mxedge && nice go build -o "$work/soakload" ./bench/soakload)
mkdir -p "$data"
if mount -t tmpfs -o size=2g,mode=0700 tmpfs "$data"; then mounted=1; else say "no tmpfs (not root?): disk-full episode skipped"; fi
chmod 0700 "$data"
{
  bench_mx_config "$data" "$sink_addr" "$mx_addr"
  bench_checks_off
  printf '[queue]\nmin_backoff = "10s"\nmax_backoff = "60s"\n'
  bench_msgauth_off
} >"$work/mxedge.toml"
start_mx() {
  "$work/mxedge" serve -config "$work/mxedge.toml" >>"$work/mxedge.out" 2>>"$work/mxedge.log" &
  mxpid=$!
  for _ in $(seq 100); do (exec 3<>/dev/tcp/${mx_addr%:*}/${mx_addr#*:}) 2>/dev/null && return 0; sleep 0.1; done
  say "mxedge did not come up"; tail -5 "$work/mxedge.log" >&2; return 1
}
start_mx
say "mxedge pid $mxpid on $mx_addr, data on $data; load for $mins min"
"$work/soakload" -relay "$mx_addr" -sink "$sink_addr" -dur "${mins}m" -drain 4m \
  -sessions "${SOAK_SESSIONS:-4}" -out "$work" >"$work/soakload.out" 2>"$work/soakload.log" &
loadpid=$!
t0=$(date +%s) kills=0 full_done=0 next_kill=$((t0 + kill_every * 60))
printf '%8s %10s %8s %6s %10s\n' "t(s)" "RSS(KiB)" "threads" "fds" "goroutines" >"$work/samples.txt"
while kill -0 "$loadpid" 2>/dev/null; do
  now=$(date +%s) el=$((now - t0))
  if kill -0 "$mxpid" 2>/dev/null; then
    rss=$(awk '/^VmRSS/ {print $2}' /proc/$mxpid/status) thr=$(awk '/^Threads/ {print $2}' /proc/$mxpid/status)
    fds=$(ls /proc/$mxpid/fd | wc -l)
    gor=$(curl -s --max-time 5 --unix-socket "$data/control.sock" http://mxedge/runtime | sed -n 's/.*"goroutines":\([0-9]*\).*/\1/p')
    printf '%8d %10d %8d %6d %10s\n' "$el" "$rss" "$thr" "$fds" "${gor:--}" >>"$work/samples.txt"
  fi
  if [ $el -lt $((mins * 60)) ] && [ "$now" -ge "$next_kill" ]; then
    say "kill -9 mxedge"; kill -9 "$mxpid"; wait "$mxpid" 2>/dev/null || true
    kills=$((kills + 1)); start_mx; next_kill=$((now + kill_every * 60))
  fi
  if [ $mounted = 1 ] && [ $full_done = 0 ] && [ $el -ge $((mins * 30)) ]; then
    say "disk full for 60 s"; fallocate -l $(( $(df --output=avail -B1 "$data" | tail -1) - 4096 )) "$data/filler" || true
    sleep 60; rm -f "$data/filler"; full_done=1; say "disk space back"
  fi
  sleep 10
done
wait "$loadpid" || true
queued=$("$work/mxedge" queue stats -json -config "$work/mxedge.toml" 2>/dev/null | sed -n 's/.*"messages":\([0-9]*\).*/\1/p')
bounced=$(grep -c 'status=bounced\|status=failed' "$work/mxedge.log" || true)
orph=$( (ls "$data/queue/orphaned" 2>/dev/null || true) | wc -l) # no orphaned/ when nothing was orphaned
read -r acc del dup < <(awk 'NR==FNR {a[$1]=1; n++; next} {d[$1]++} END {u=0; dup=0; for (k in d) {if (k in a) u++; dup += d[k]-1} print n, u, dup}' "$work/accepted.txt" "$work/delivered.txt")
echo "== soak: $mins min, $kills kill -9, disk full episode: $full_done, backend down 30 s every 5 min"
cat "$work/soakload.out"
printf 'accepted %d = delivered %d + bounced %d + still queued %s; lost %d; duplicates %d; files in orphaned/ %d\n' \
  "$acc" "$del" "$bounced" "${queued:-?}" $((acc - del - bounced - ${queued:-0})) "$dup" "$orph"
echo "refused while the disk was full (452): $(grep -c 'Insufficient system storage\|free_space' "$work/mxedge.log" || true) log lines"
echo "== mxedge over time (per process lifetime; restarts reset RSS)"
cat "$work/samples.txt"
awk 'NR>1 {n++; x+=$1; y+=$2; xy+=$1*$2; xx+=$1*$1; f+=$4; ff+=$1*$4; g+=$5; gg+=$1*$5} END {d=n*xx-x*x; if (d>0) printf "slope: RSS %.1f KiB/min, fds %.2f/min, goroutines %.2f/min (least squares over %d samples)\n", (n*xy-x*y)/d*60, (n*ff-x*f)/d*60, (n*gg-x*g)/d*60, n}' "$work/samples.txt"
