#!/usr/bin/env bash
# Side-by-side relay benchmark: Postfix (the reference) and mxedge, in the
# same run, through the same sink, with the shared harness in
# /work/shared/bench (see bench/README.md).
#
# Usage: bench/compare.sh [-checks] [-idle] [-profile] [-keep]
#   -checks   run every case against mxedge twice: with its edge defenses
#             off, then on (PTR and forward confirmation, two DNSBLs, sender
#             domain, HELO, pregreet, with the DNS answered by bench/dnsserve);
#             and measure connect-to-banner latency in both
#   -idle     measure mxedge's RSS with BENCH_IDLE_N idle sessions, checks on
#   -profile  also record a 10 s CPU profile of mxedge under the 10 KiB x
#             20 sessions load (perf, else "mxedge serve -cpuprofile"), and
#             report where it spends CPU
#   -keep     keep the work directory (mxedge data, logs, perf data)
# Environment:
#   BENCH_CASES    "messages:bytes:sessions ..." (default: the four cases below)
#   BENCH_BANNER_N connections measured for the banner latency (default 1000)
#   BENCH_IDLE_N   idle sessions of -idle (default 10000)
#   BENCH_WAIT_S   per-run limit for the sink to get every message (default 300)
#   BENCH_PROFILE_N, BENCH_PROFILE_SIZE  the -profile load (default: 10240-byte
#                  messages, as many as the 20-session run delivered in 14 s)
#   BENCH_PROFILER perf (default when installed) or pprof
#   BENCH_SHARED   the shared harness (default /work/shared/bench)
#   BENCH_TMP      where the work directory goes (default /var/tmp, the same
#                  file system as Postfix's queue)
#   MXEDGE_ADDR    mxedge's listener (default 127.0.0.1:2700)
#   BENCH_FLOOR_ADDR  the sink alone's listener (default 127.0.0.1:2627)
#   MXEDGE_CONCURRENCY  mxedge queue.concurrency (default 20, the Postfix
#                  peer's default_destination_concurrency_limit)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/bench/lib.sh"
shared=${BENCH_SHARED:-/work/shared/bench}
cases=${BENCH_CASES:-"5000:10240:20 5000:1024:20 300:1048576:20 5000:10240:200"}
export BENCH_WAIT_S=${BENCH_WAIT_S:-300}
profile=0 keep=0 checks=0 idle=0
for a in "$@"; do
  case $a in
    -checks) checks=1 ;;
    -idle) idle=1 ;;
    -profile) profile=1 ;;
    -keep) keep=1 ;;
    *) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2; exit 2 ;;
  esac
done

pf_addr=127.0.0.1:2600 mx_addr=${MXEDGE_ADDR:-127.0.0.1:2700} sink_addr=127.0.0.1:2626
floor_addr=${BENCH_FLOOR_ADDR:-127.0.0.1:2627} # sink_alone's sink
work=$(mktemp -d "${BENCH_TMP:-/var/tmp}/mxedge-bench.XXXXXX")
mxpid= dnspid=
cleanup() {
  [ -n "$mxpid" ] && kill "$mxpid" 2>/dev/null && wait "$mxpid" 2>/dev/null
  [ -n "$dnspid" ] && kill "$dnspid" 2>/dev/null && wait "$dnspid" 2>/dev/null
  # Postfix stays up: it is the shared reference (postfix-peer.sh stop).
  if [ $keep = 1 ]; then echo "work directory kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
# The sink's and mxedge's ports must be free (another benchmark running?).
for a in $sink_addr $mx_addr $floor_addr; do
  if (exec 3<>"/dev/tcp/${a%:*}/${a#*:}") 2>/dev/null; then
    echo "something already listens on $a: another benchmark running? (MXEDGE_ADDR=... picks another mxedge port)" >&2
    exit 1
  fi
done

# (a) build mxedge and the helpers
say "building mxedge"
(cd "$root" && go build -o "$work/mxedge" ./cmd/mxedge && go build -o "$work/dnsserve" ./bench/dnsserve &&
  go build -o "$work/banner" ./bench/banner && go build -o "$work/idle" ./bench/idle)

# (b) Postfix, the reference relay
say "starting Postfix on $pf_addr"
"$shared/postfix-peer.sh" start >/dev/null
await_port $pf_addr
if [ -n "$(postqueue -j 2>/dev/null)" ]; then
  echo "Postfix's queue is not empty (an earlier run?); empty it with: postsuper -d ALL" >&2; exit 1
fi

# (c) mxedge, routing bench.test to the sink. Mode "off": the edge
# defenses off (the relay as before them); mode "on": every check on as an
# MX on the internet runs it, the DNS answered by bench/dnsserve (PTR and
# forward confirmation of 127.0.0.1, MX of src.test, two DNSBLs that do not
# list it), except what a load generator on one address cannot pass: the
# per-client rate and session limits (off), and the HELO syntax (logged
# only: smtp-source says the host's name, which may have no dot).
dns_addr=
if [ $checks = 1 ] || [ $idle = 1 ]; then
  "$work/dnsserve" >"$work/dns.addr" 2>"$work/dns.log" &
  dnspid=$!
  for _ in $(seq 50); do [ -s "$work/dns.addr" ] && break; sleep 0.1; done
  dns_addr=$(cat "$work/dns.addr")
  say "bench DNS on $dns_addr"
fi
mkdir -p "$work/data"
# write_config MODE [MAX_SESSIONS]
write_config() {
  local listener
  if [ "$1" = on ]; then
    listener='client_sessions = 0
client_connection_rate = 0
client_message_rate = 0
client_recipient_rate = 0
helo_invalid = "log"
dnsbl_sites = ["bl1.bench.test=127.0.0.[2..11]*2", "bl2.bench.test"]'
  else
    listener=$(bench_checks_off)
  fi
  {
    bench_mx_config "$work/data" "$sink_addr" "$mx_addr"
    printf 'max_sessions = %s\n%s\n[queue]\nconcurrency = %s\n' "${2:-1000}" "$listener" "${MXEDGE_CONCURRENCY:-20}"
  } >"$work/mxedge.toml"
  if [ -n "$dns_addr" ]; then
    printf '[dns]\nservers = ["%s"]\n' "$dns_addr" >>"$work/mxedge.toml"
  fi
  # SPF, DKIM and DMARC (on by default) have their own benchmark, bench/auth.sh.
  bench_msgauth_off >>"$work/mxedge.toml"
}
# start_mxedge MODE [MAX_SESSIONS]: (re)start mxedge with that configuration;
# with checks on, one connection first passes the pregreet test (2 s), so
# that the runs measure a client that passed, as a real MTA is after its
# first connection.
start_mxedge() {
  if [ -n "$mxpid" ]; then kill "$mxpid"; wait "$mxpid" 2>/dev/null || true; mxpid=; fi
  write_config "$@"
  say "starting mxedge on $mx_addr, checks $1 (data in $work/data)"
  "$work/mxedge" serve -config "$work/mxedge.toml" >>"$work/mxedge.out" 2>>"$work/mxedge.log" &
  mxpid=$!
  await_port $mx_addr
  [ "$1" = on ] && "$work/banner" -n 1 "$mx_addr" >/dev/null
  return 0
}

hz=$(getconf CLK_TCK)

# pf_cpu_ticks: Postfix's CPU time, in clock ticks: its master process,
# the children it has reaped (cutime, cstime) and those alive now (smtpd,
# cleanup, qmgr, smtp, ... : every Postfix process is the master's child).
pf_cpu_ticks() {
  local m
  m=$(tr -d ' ' </var/spool/postfix/pid/master.pid)
  { cat "/proc/$m/stat"; for c in $(pgrep -P "$m"); do cat "/proc/$c/stat" 2>/dev/null || true; done; } |
    awk -v m="$m" '{ sub(/^.*\) /, ""); t += $12 + $13; if (NR == 1) t += $14 + $15 } END { print t }'
}

# sink_alone N SIZE SESS: CPU ms per message of the counting sink itself
# with smtp-source straight into it, no relay: what a Go SMTP server that
# does nothing with the mail costs on this machine (the receive half of
# a relay's work, without queue, log or delivery).
sink_alone() {
  local n=$1 size=$2 sess=$3 cnt pid t0 cpu
  cnt=$(mktemp)
  SINK_COUNT_FILE=$cnt "${TMPDIR:-/tmp}/mxedge-bench-sink" -l "$floor_addr" & pid=$!
  await_port "$floor_addr"
  t0=$(cpu_ticks $pid)
  smtp-source -l "$size" -m "$n" -s "$sess" -f sender@src.test -t user@bench.test "$floor_addr" >/dev/null
  cpu=$(awk -v a="$t0" -v b="$(cpu_ticks $pid)" -v n="$n" -v hz="$hz" 'BEGIN{printf "%.2f", (b-a)/hz*1000/n}')
  kill $pid; wait $pid 2>/dev/null || true; rm -f "$cnt"
  echo "$cpu"
}

# Both queues must be empty before a run: a late delivery would reach the
# next run's sink and be counted there.
await_drained() {
  for _ in $(seq 600); do
    local pf mx
    pf=$(postqueue -j 2>/dev/null | wc -l)
    # Small messages live inside queue.db, not as spool files: ask mxedge.
    mx=$("$work/mxedge" queue stats -json -config "$work/mxedge.toml" 2>/dev/null |
      grep -o '"messages": *[0-9]*' | grep -o '[0-9]*$') || mx=unknown
    [ "$pf" = 0 ] && [ "$mx" = 0 ] && return 0
    sleep 0.5
  done
  echo "queues not empty after 300 s (postfix $pf, mxedge $mx)" >&2; return 1
}

# run RELAY ADDR N SIZE SESS: one mta-bench run; prints "accept e2e cpu",
# cpu being the relay's CPU time per message in ms (Postfix: every one of
# its processes, pf_cpu_ticks). Postfix's is read once its queue is empty
# again (its delivery agents finish after the sink counted).
run() {
  local name=$1 addr=$2 n=$3 size=$4 sess=$5 out t0 cpu
  await_drained
  ticks() { if [ "$name" = mxedge ]; then cpu_ticks $mxpid; else pf_cpu_ticks; fi; }
  t0=$(ticks)
  if ! out=$("$shared/mta-bench.sh" "$addr" "$n" "$size" "$sess" 2>&1); then
    say "$name ${n}x${size}Bx${sess} failed: $out"
    echo "- - -"; return
  fi
  [ "$name" = postfix ] && await_drained
  cpu=$(awk -v a="$t0" -v b="$(ticks)" -v n="$n" -v hz="$hz" 'BEGIN{printf "%.2f", (b-a)/hz*1000/n}')
  say "$name ${n}x${size}Bx${sess}: $out"
  grep -o 'accept_msgs_per_s=[0-9]* e2e_msgs_per_s=[0-9]*' <<<"$out" | sed -E 's/accept_msgs_per_s=([0-9]+) e2e_msgs_per_s=([0-9]+).*/\1 \2/' | tr '\n' ' '
  echo "$cpu"
}

# (d) the runs, Postfix first, then mxedge, case by case; with -checks
# mxedge again with its checks on (Postfix's numbers are the same).
modes=off
[ $checks = 1 ] && modes="off on"
declare -A res
banner_off= banner_on=
for mode in $modes; do
  start_mxedge $mode
  for c in $cases; do
    IFS=: read -r n size sess <<<"$c"
    if [ $mode = off ]; then
      read -r pa pe pcpu < <(run postfix $pf_addr "$n" "$size" "$sess")
      res[$c,pf]="$pa $pe $pcpu"
      res[$c,sink]=$(sink_alone "$n" "$size" "$sess")
      say "sink alone ${n}x${size}Bx${sess}: ${res[$c,sink]} ms CPU per message"
    fi
    read -r ma me mxcpu < <(run mxedge $mx_addr "$n" "$size" "$sess")
    res[$c,$mode]="$ma $me $mxcpu"
  done
  if [ $checks = 1 ]; then
    await_drained
    b=$("$work/banner" -n "${BENCH_BANNER_N:-1000}" "$mx_addr")
    say "banner latency, checks $mode: $b"
    printf -v "banner_$mode" '%s' "$b"
  fi
done
rows=()
for c in $cases; do
  IFS=: read -r n size sess <<<"$c"
  read -r pa pe pcpu <<<"${res[$c,pf]}"
  read -r ma me mxcpu <<<"${res[$c,off]}"
  rows+=("$n $size $sess $pa $ma $pe $me $mxcpu $pcpu ${res[$c,sink]}")
done

# (e) optional CPU profile of mxedge under the 10 KiB load: perf if it is
# installed (sees the kernel's share too: syscalls, fsync, TCP), else Go's
# profiler through "mxedge serve -cpuprofile" (BENCH_PROFILER=pprof forces it).
if [ $profile = 1 ]; then
  [ $checks = 1 ] && start_mxedge off
  profiler=${BENCH_PROFILER:-perf}
  command -v perf >/dev/null || profiler=pprof
  await_drained
  size=${BENCH_PROFILE_SIZE:-10240}
  # Enough messages to keep mxedge busy for the 10 s: 14 s at the rate
  # measured above for this size with 20 sessions, if there was such a run.
  n=${BENCH_PROFILE_N:-}
  for r in "${rows[@]}"; do
    read -r rn rsize rsess _ _ _ me _ <<<"$r"
    [ -z "$n" ] && [ "$rsize" = "$size" ] && [ "$rsess" = 20 ] && [ "$me" != - ] && n=$((me * 14))
  done
  n=${n:-12000}
  if [ "$profiler" = pprof ]; then # restart mxedge with the profiler on
    kill "$mxpid"; wait "$mxpid" 2>/dev/null || true
    "$work/mxedge" serve -cpuprofile "$work/cpu.pprof" -config "$work/mxedge.toml" >>"$work/mxedge.out" 2>>"$work/mxedge.log" &
    mxpid=$!
    await_port $mx_addr
  fi
  say "profiling mxedge ($profiler): $n x $size B x 20 sessions, 10 s"
  "$shared/mta-bench.sh" $mx_addr "$n" "$size" 20 >"$work/profile-run.txt" 2>&1 & load=$!
  sleep 1
  t0=$(cpu_ticks $mxpid); w0=$(date +%s.%N)
  if [ "$profiler" = perf ]; then
    perf record -q -F 499 -g -p $mxpid -o "$work/perf.data" -- sleep 10 >/dev/null 2>&1 || true
  else
    sleep 10
  fi
  t1=$(cpu_ticks $mxpid); w1=$(date +%s.%N)
  wait $load || true
  echo
  echo "mxedge CPU profile ($profiler; $n x $size B x 20 sessions: $(cat "$work/profile-run.txt"))"
  awk -v a="$t0" -v b="$t1" -v w0="$w0" -v w1="$w1" -v hz="$hz" -v cores="$(nproc)" \
    'BEGIN{printf "mxedge used %.2f CPU cores on average (of %d) during the 10 s\n", (b-a)/hz/(w1-w0), cores}'
  if [ "$profiler" = perf ]; then
    perf report -i "$work/perf.data" --stdio --no-children --sort symbol 2>/dev/null >"$work/perf-self.txt" || true
    perf report -i "$work/perf.data" --stdio --children --sort symbol 2>/dev/null >"$work/perf-children.txt" || true
    echo "-- top functions by own CPU time:"
    grep -E '^ +[0-9]' "$work/perf-self.txt" | head -25 || true
    echo "-- top functions including callees:"
    grep -E '^ +[0-9]' "$work/perf-children.txt" | head -50 || true
    echo "(full reports: perf-self.txt, perf-children.txt in the work directory; -keep keeps it)"
  else
    # The profile covers the whole run of this mxedge process (mostly the load).
    kill "$mxpid"; wait "$mxpid" 2>/dev/null || true; mxpid=
    (cd "$root" && go tool pprof -top -nodecount=35 "$work/mxedge" "$work/cpu.pprof" 2>/dev/null | sed -n '1,45p') || true
    (cd "$root" && go tool pprof -top -cum -nodecount=45 "$work/mxedge" "$work/cpu.pprof" 2>/dev/null | sed -n '6,55p') || true
    echo "(profile: cpu.pprof in the work directory; -keep keeps it)"
  fi
fi

# (f) optional: RSS of idle sessions, checks on (all of them, pregreet
# included: each source address waits once).
idle_line=
if [ $idle = 1 ]; then
  n=${BENCH_IDLE_N:-10000}
  [ -n "$mxpid" ] || true
  start_mxedge on $((n + 1000))
  say "opening $n idle sessions"
  idle_line=$("$work/idle" -pid $mxpid -n "$n" -per 500 "$mx_addr")
  say "idle: $idle_line"
fi

# The table
echo
printf '%-22s | %-25s | %-25s | %s\n' "" "accepted msgs/s" "end-to-end msgs/s" "CPU ms/msg: mxedge, postfix, sink alone"
printf '%-22s | %7s %7s %9s | %7s %7s %9s | %6s %7s %6s\n' "messages x size x sess" postfix mxedge "mx/pf" postfix mxedge "mx/pf" mxedge postfix sink
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a+0 > 0 && b != "-") printf "%.2fx", b/a; else printf "-" }'; }
human() { awk -v b="$1" 'BEGIN{ if (b >= 1048576) printf "%gMiB", b/1048576; else if (b >= 1024) printf "%gKiB", b/1024; else printf "%gB", b }'; }
for r in "${rows[@]}"; do
  read -r n size sess pa ma pe me cpu pcpu scpu <<<"$r"
  printf '%-22s | %7s %7s %9s | %7s %7s %9s | %6s %7s %6s\n' "$n x $(human "$size") x $sess" \
    "$pa" "$ma" "$(ratio "$pa" "$ma")" "$pe" "$me" "$(ratio "$pe" "$me")" "$cpu" "$pcpu" "$scpu"
done
if [ $checks = 1 ]; then
  echo
  printf '%-22s | %-25s | %-25s\n' "mxedge, checks on" "accepted msgs/s" "end-to-end msgs/s"
  printf '%-22s | %7s %7s %9s | %7s %7s %9s | %s\n' "messages x size x sess" postfix "mx+chk" "mx+c/pf" postfix "mx+chk" "mx+c/pf" "CPU ms/msg"
  for c in $cases; do
    IFS=: read -r n size sess <<<"$c"
    read -r pa pe _ <<<"${res[$c,pf]}"
    read -r ma me cpu <<<"${res[$c,on]}"
    printf '%-22s | %7s %7s %9s | %7s %7s %9s | %s\n' "$n x $(human "$size") x $sess" \
      "$pa" "$ma" "$(ratio "$pa" "$ma")" "$pe" "$me" "$(ratio "$pe" "$me")" "$cpu"
  done
  echo
  echo "connect-to-banner latency (a client that passed pregreet), checks off: $banner_off"
  echo "connect-to-banner latency (a client that passed pregreet), checks on:  $banner_on"
fi
[ -n "$idle_line" ] && { echo; echo "mxedge idle sessions (checks on): $idle_line"; }
exit 0
