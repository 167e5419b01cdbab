#!/usr/bin/env bash
# Submission benchmark (bench/README.md "Submission"): authenticated,
# TLS, DKIM-signed submission through mxedge next to the plain Postfix
# relay run, in the same run and through the same counting sink; and the
# 587 latency while port 25 is flooded vs quiet.
#
# Usage: bench/submission.sh [-keep]
# Environment:
#   SUB_N, SUB_SIZE, SUB_SESSIONS  the throughput load (default 5000 10240 20)
#   LAT_N, LAT_SESSIONS            the latency load (default 1000 4)
#   FLOOD_CONNS                    connections held on port 25 (default 10000)
#   BENCH_SHARED, BENCH_TMP        as for compare.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/bench/lib.sh"
shared=${BENCH_SHARED:-/work/shared/bench}
keep=0; [ "${1:-}" = -keep ] && keep=1
n=${SUB_N:-5000} size=${SUB_SIZE:-10240} sess=${SUB_SESSIONS:-20}
latn=${LAT_N:-1000} latsess=${LAT_SESSIONS:-4} flood=${FLOOD_CONNS:-10000}
pf_addr=127.0.0.1:2600 mx_addr=127.0.0.1:2700 sub_addr=127.0.0.1:2701 sink_addr=127.0.0.1:2626
work=$(mktemp -d "${BENCH_TMP:-/var/tmp}/mxedge-subbench.XXXXXX")
mxpid= sinkpid=
cleanup() {
  [ -n "$mxpid" ] && kill "$mxpid" 2>/dev/null && wait "$mxpid" 2>/dev/null
  [ -n "$sinkpid" ] && kill "$sinkpid" 2>/dev/null
  if [ $keep = 1 ]; then echo "work directory kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
for a in $sink_addr $mx_addr $sub_addr; do
  if (exec 3<>"/dev/tcp/${a%:*}/${a#*:}") 2>/dev/null; then
    echo "something already listens on $a: another benchmark running?" >&2; exit 1
  fi
done
ulimit -n 65536 2>/dev/null || true

say "building mxedge, subload and the sink"
(cd "$root" && go build -o "$work/mxedge" ./cmd/mxedge && go build -o "$work/subload" ./bench/subload)
(cd "$shared/sink" && go build -o "$work/sink" .)

say "Postfix reference run (smtp-source, plain relay): $n x $size B x $sess sessions"
"$shared/postfix-peer.sh" start >/dev/null
await_port $pf_addr
pf=$("$shared/mta-bench.sh" $pf_addr "$n" "$size" "$sess")
say "postfix: $pf"
pf_e2e=$(grep -o 'e2e_msgs_per_s=[0-9]*' <<<"$pf" | cut -d= -f2)

# mxedge: MX on 2700, submission on 2701 (self-signed certificate), one
# user, DKIM keys rsa + ed25519 for sender.test, no per-user limits.
mkdir -p "$work/data"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=relay.bench.test \
  -keyout "$work/tls.key" -out "$work/tls.pem" 2>/dev/null
cat >"$work/mxedge.toml" <<TOML
hostname = "relay.bench.test"
data_dir = "$work/data"
relay_domains = ["bench.test"]
[routes]
"bench.test" = "$sink_addr"
[[listener]]
name = "mx"
kind = "mx"
address = "$mx_addr"
[[listener]]
name = "submission"
kind = "submission"
address = "$sub_addr"
tls_cert = ["$work/tls.pem"]
tls_key = ["$work/tls.key"]
[auth]
users_file = "$work/users"
[submission]
messages_per_hour = 0
messages_per_day = 0
recipients_per_hour = 0
recipients_per_day = 0
[queue]
concurrency = 20
[verify]
mode = "off"
# No DNS: nothing here needs it (a bounce would be retried, not looked up).
[dns]
servers = ["127.0.0.1:9"]
timeout = "1s"
[[dkim_sign]]
domain = "sender.test"
selector = "rsa"
key_file = "$work/rsa.key"
[[dkim_sign]]
domain = "sender.test"
selector = "ed"
key_file = "$work/ed.key"
TOML
"$work/mxedge" dkim keygen -domain sender.test -selector rsa -type rsa -out "$work/rsa.key" -config "$work/mxedge.toml" >/dev/null
"$work/mxedge" dkim keygen -domain sender.test -selector ed -type ed25519 -out "$work/ed.key" -config "$work/mxedge.toml" >/dev/null
echo "bench-password-1" | "$work/mxedge" user add bench@sender.test -config "$work/mxedge.toml" >/dev/null
"$work/mxedge" serve -config "$work/mxedge.toml" >"$work/mxedge.out" 2>"$work/mxedge.log" &
mxpid=$!
await_port $sub_addr
hz=$(getconf CLK_TCK)

# sinkrun N ARGS...: counting sink up, subload ARGS, wait for N at the sink;
# prints subload's line and e2e_msgs_per_s.
sinkrun() {
  local want=$1; shift
  local cnt="$work/count" t0 t1 out got
  rm -f "$cnt"
  SINK_COUNT_FILE=$cnt "$work/sink" -l $sink_addr & sinkpid=$!
  await_port $sink_addr
  t0=$(date +%s.%N)
  out=$("$work/subload" "$@")
  for _ in $(seq 6000); do
    got=$(cat "$cnt" 2>/dev/null); got=${got:-0}
    [ "$got" -ge "$want" ] && break
    sleep 0.05
  done
  t1=$(date +%s.%N)
  kill $sinkpid; wait $sinkpid 2>/dev/null || true; sinkpid=
  echo "$out $(awk -v n="$want" -v a="$t0" -v b="$t1" -v g="$got" 'BEGIN{printf "sink=%d e2e_s=%.2f e2e_msgs_per_s=%.0f", g, b-a, n/(b-a)}')"
}

say "mxedge submission run: $n x $size B x $sess authenticated TLS sessions, rsa + ed25519 signed"
c0=$(cpu_ticks $mxpid)
mx=$(sinkrun "$n" -addr $sub_addr -n "$n" -size "$size" -sessions "$sess" -user bench@sender.test -pass bench-password-1 -from bench@sender.test -to user@bench.test)
c1=$(cpu_ticks $mxpid)
say "mxedge: $mx"
mx_e2e=$(grep -o 'e2e_msgs_per_s=[0-9]*' <<<"$mx" | cut -d= -f2)
cpu=$(awk -v a="$c0" -v b="$c1" -v n="$n" -v hz="$hz" 'BEGIN{printf "%.2f", (b-a)/hz*1000/n}')

say "587 latency, quiet: $latn messages over $latsess sessions"
quiet=$(sinkrun "$latn" -addr $sub_addr -n "$latn" -size "$size" -sessions "$latsess" -user bench@sender.test -pass bench-password-1 -from bench@sender.test -to user@bench.test)
say "quiet: $quiet"
say "587 latency, port 25 flooded with $flood connections"
flooded=$(sinkrun "$latn" -addr $sub_addr -n "$latn" -size "$size" -sessions "$latsess" -user bench@sender.test -pass bench-password-1 -from bench@sender.test -to user@bench.test -flood $mx_addr -flood-conns "$flood")
say "flooded: $flooded"

say "signing cost (go test -bench BenchmarkSign, 10 KiB, rsa-sha256 + ed25519-sha256)"
sign=$(cd "$root" && go test -run '^$' -bench BenchmarkSign -benchtime 2000x ./submission/ | grep '^BenchmarkSign')

get() { grep -o "$1=[0-9.]*" <<<"$2" | cut -d= -f2; }
echo
echo "submission, $n x $size B x $sess sessions (STARTTLS, AUTH PLAIN, DKIM rsa+ed25519):"
printf '  mxedge end-to-end %s msgs/s, Postfix plain relay end-to-end %s msgs/s: %s\n' "$mx_e2e" "$pf_e2e" \
  "$(awk -v a="$pf_e2e" -v b="$mx_e2e" 'BEGIN{printf "%.2fx", b/a}')"
printf '  mxedge accepted %s msgs/s, CPU %s ms/msg\n' "$(get accept_msgs_per_s "$mx")" "$cpu"
printf '  signing per message: %s\n' "$(awk '{printf "%.0f us", $3/1000}' <<<"$sign")"
echo "587 latency, $latn messages over $latsess sessions (MAIL to 250 after the dot; setup = connect+TLS+AUTH):"
printf '  quiet:   msg p50 %s ms p99 %s ms, setup p50 %s ms p99 %s ms\n' "$(get msg_p50_ms "$quiet")" "$(get msg_p99_ms "$quiet")" "$(get setup_p50_ms "$quiet")" "$(get setup_p99_ms "$quiet")"
printf '  flooded: msg p50 %s ms p99 %s ms, setup p50 %s ms p99 %s ms (port 25: %s held, %s refused)\n' "$(get msg_p50_ms "$flooded")" "$(get msg_p99_ms "$flooded")" "$(get setup_p50_ms "$flooded")" "$(get setup_p99_ms "$flooded")" "$(get flood_held "$flooded")" "$(get flood_refused "$flooded")"
printf '  p99 flooded/quiet: %s\n' "$(awk -v a="$(get msg_p99_ms "$quiet")" -v b="$(get msg_p99_ms "$flooded")" 'BEGIN{printf "%.2fx", b/a}')"
