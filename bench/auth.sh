#!/usr/bin/env bash
# Message authentication benchmark (issue 11): Postfix (the reference,
# plain: no SPF, DKIM or DMARC) and mxedge with SPF + DKIM verification +
# DMARC + Authentication-Results on, in the same run, through the same
# sink. Messages are DKIM-signed (rsa-sha256 and ed25519-sha256, by
# bench/authload), the DNS (PTR, SPF, DKIM keys, DMARC p=reject) answered
# by bench/dnsserve, so every message passes SPF, both signatures and
# DMARC, as legitimate mail does.
#
# Usage: bench/auth.sh        Environment: BENCH_N (5000), BENCH_SIZE
# (10240), BENCH_SESSIONS (20), BENCH_SHARED (/work/shared/bench),
# MXEDGE_ADDR (127.0.0.1:2700), BENCH_WAIT_S (300), BENCH_PROFILE (1: run
# mxedge with -cpuprofile and print the top of the profile after the table).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/bench/lib.sh"
shared=${BENCH_SHARED:-/work/shared/bench}
n=${BENCH_N:-5000} size=${BENCH_SIZE:-10240} sess=${BENCH_SESSIONS:-20}
pf_addr=127.0.0.1:2600 mx_addr=${MXEDGE_ADDR:-127.0.0.1:2700} sink_addr=127.0.0.1:2626
work=$(mktemp -d "${BENCH_TMP:-/var/tmp}/mxedge-auth.XXXXXX")
mxpid= dnspid= sinkpid=
cleanup() {
  for p in $mxpid $dnspid $sinkpid; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
  if [ -n "${BENCH_KEEP:-}" ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
for a in $sink_addr $mx_addr; do
  if (exec 3<>"/dev/tcp/${a%:*}/${a#*:}") 2>/dev/null; then
    echo "something already listens on $a: another benchmark running?" >&2; exit 1
  fi
done

say "building"
(cd "$root" && go build -o "$work/mxedge" ./cmd/mxedge && go build -o "$work/dnsserve" ./bench/dnsserve &&
  go build -o "$work/authload" ./bench/authload) && (cd "$shared/sink" && go build -o "$work/sink" .)
openssl genrsa -out "$work/rsa.pem" 2048 2>/dev/null

args=()
while IFS= read -r rec; do args+=(-record "$rec"); done < <("$work/authload" -records -key "$work/rsa.pem" -from sender@src.test)
args+=(-record 'src.test. 3600 IN TXT "v=spf1 ip4:127.0.0.1 -all"'
  -record 'client.bench.test. 3600 IN TXT "v=spf1 a -all"'
  -record '_dmarc.src.test. 3600 IN TXT "v=DMARC1; p=reject"')
"$work/dnsserve" "${args[@]}" >"$work/dns.addr" 2>"$work/dns.log" &
dnspid=$!
for _ in $(seq 50); do [ -s "$work/dns.addr" ] && break; sleep 0.1; done
dns_addr=$(cat "$work/dns.addr")

say "starting Postfix on $pf_addr"
"$shared/postfix-peer.sh" start >/dev/null
await_port $pf_addr

mkdir -p "$work/data"
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
pregreet_wait = "0s"
client_sessions = 0
client_connection_rate = 0
client_message_rate = 0
client_recipient_rate = 0
helo_invalid = "log"
[queue]
concurrency = 20
[dns]
servers = ["$dns_addr"]
[spf]
enabled = true
[dkim_verify]
enabled = true
[dmarc]
enabled = true
[auth_results]
enabled = true
TOML
prof=()
[ -n "${BENCH_PROFILE:-}" ] && prof=(-cpuprofile "$work/cpu.pprof")
"$work/mxedge" serve "${prof[@]}" -config "$work/mxedge.toml" >"$work/mxedge.out" 2>"$work/mxedge.log" &
mxpid=$!
await_port $mx_addr

# run NAME ADDR: accepted and end-to-end rates through the sink.
run() {
  local cnt="$work/count.$1" out t0 t2 got
  : >"$cnt"
  SINK_COUNT_FILE=$cnt "$work/sink" -l "$sink_addr" & sinkpid=$!
  await_port $sink_addr
  t0=$(date +%s.%N)
  [ "$1" = mxedge ] && c0=$(cpu_ticks $mxpid)
  out=$("$work/authload" -addr "$2" -n "$n" -size "$size" -sessions "$sess" -key "$work/rsa.pem")
  deadline=$(( $(date +%s) + ${BENCH_WAIT_S:-300} ))
  while :; do
    got=$(cat "$cnt" 2>/dev/null); got=${got:-0}
    [ "$got" -ge "$n" ] && break
    [ "$(date +%s)" -ge $deadline ] && { echo "$1: timeout, sink got $got of $n" >&2; break; }
    sleep 0.02
  done
  t2=$(date +%s.%N)
  kill $sinkpid; wait $sinkpid 2>/dev/null || true; sinkpid=
  [ "$1" = mxedge ] && awk -v a="$c0" -v b="$(cpu_ticks $mxpid)" -v n="$n" -v hz="$(getconf CLK_TCK)" \
    'BEGIN{printf "%.2f\n", (b-a)/hz*1000/n}' >"$work/cpu.ms"
  local e2e
  e2e=$(awk -v n="$n" -v a="$t0" -v c="$t2" 'BEGIN{printf "%.0f", n/(c-a)}')
  say "$1: $out e2e_msgs_per_s=$e2e"
  echo "${out#accept_msgs_per_s=}" | awk -v e="$e2e" '{print $1, e}'
}
read -r pa pe < <(run postfix $pf_addr)
read -r ma me < <(run mxedge $mx_addr)
rejected=$(grep -c 'msg="message rejected"' "$work/mxedge.log" || true)
echo
printf '%s x %s B x %s sessions, DKIM-signed (rsa + ed25519), mxedge with SPF + DKIM + DMARC\n' "$n" "$size" "$sess"
printf '%-10s | accepted msgs/s | end-to-end msgs/s\n' ""
printf '%-10s | %15s | %17s\n' postfix "$pa" "$pe" mxedge "$ma" "$me"
awk -v pa="$pa" -v ma="$ma" -v pe="$pe" -v me="$me" 'BEGIN{printf "mxedge/postfix: accepted %.2fx, end-to-end %.2fx\n", ma/pa, me/pe}'
echo "mxedge CPU per message: $(cat "$work/cpu.ms") ms"
echo "mxedge refusals during the run: $rejected"
if [ -n "${BENCH_PROFILE:-}" ]; then
  kill "$mxpid"; wait "$mxpid" 2>/dev/null || true; mxpid=
  (cd "$root" && go tool pprof -top -nodecount=30 "$work/mxedge" "$work/cpu.pprof" 2>/dev/null | sed -n '1,38p') || true
  (cd "$root" && go tool pprof -top -cum -nodecount=60 "$work/mxedge" "$work/cpu.pprof" 2>/dev/null | sed -n '6,70p') || true
fi
