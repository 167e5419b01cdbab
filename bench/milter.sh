#!/usr/bin/env bash
# mxedge with rspamd as a pre-queue milter next to Postfix with the same
# rspamd as smtpd_milters, in the same run, through the same sink
# (/work/shared/bench). Also each relay without the milter, so that the
# cost rspamd adds to each is visible.
#
# Usage: bench/milter.sh [messages] [bytes] [sessions]   (default 2000 10240 20)
# Needs root, rspamd, Postfix (postfix-peer.sh installs it), smtp-source.
# Postfix's main.cf gets smtpd_milters for the milter runs and loses it
# afterwards; Postfix is stopped at the end if this script started it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/bench/lib.sh"
shared=${BENCH_SHARED:-/work/shared/bench}
n=${1:-2000} size=${2:-10240} sess=${3:-20}
pf_addr=127.0.0.1:2600 mx_addr=${MXEDGE_ADDR:-127.0.0.1:2700} sink_addr=127.0.0.1:2626
rsp_addr=127.0.0.1:${RSPAMD_PORT:-11332}
export BENCH_WAIT_S=${BENCH_WAIT_S:-600}
work=$(mktemp -d "${BENCH_TMP:-/var/tmp}/mxedge-milter-bench.XXXXXX")
mxpid= rsppid= pf_started=0
cleanup() {
  [ -n "$mxpid" ] && kill "$mxpid" 2>/dev/null && wait "$mxpid" 2>/dev/null
  [ -n "$rsppid" ] && kill -- -"$rsppid" 2>/dev/null
  postconf -X smtpd_milters milter_default_action 2>/dev/null || true
  if [ $pf_started = 1 ]; then postfix stop >/dev/null 2>&1 || true; else postfix reload >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
# lib.sh's await_port, but 60 s: rspamd and Postfix may start slowly.
await_port() { for _ in $(seq 600); do (echo >/dev/tcp/${1%:*}/${1#*:}) 2>/dev/null && return 0; sleep 0.1; done; echo "nothing on $1" >&2; exit 1; }
for a in $sink_addr $mx_addr $rsp_addr; do
  if (echo >/dev/tcp/${a%:*}/${a#*:}) 2>/dev/null; then echo "$a is taken (another benchmark?)" >&2; exit 1; fi
done

# rspamd: the proxy worker alone, milter mode, scanning itself, offline.
mkdir -p "$work/rspamd/local.d"
printf 'extended_spam_headers = true;\nskip_local = false;\n' >"$work/rspamd/local.d/milter_headers.conf"
cat >"$work/rspamd/rspamd.conf" <<CONF
.include "/etc/rspamd/common.conf"
options { pidfile = "$work/rspamd/rspamd.pid"; .include "/etc/rspamd/options.inc"
  dns { nameserver = ["127.0.0.1:9"]; timeout = 1s; retransmits = 1; } }
logging { type = "file"; filename = "$work/rspamd/rspamd.log"; level = "error"; }
worker "rspamd_proxy" { bind_socket = "$rsp_addr"; milter = yes; timeout = 120s;
  upstream "local" { default = yes; self_scan = yes; } count = ${RSPAMD_WORKERS:-2}; }
CONF
say "starting rspamd on $rsp_addr"
setsid rspamd -f -i -u root -g root -c "$work/rspamd/rspamd.conf" --var=DBDIR="$work/rspamd" \
  --var=RUNDIR="$work/rspamd" --var=LOGDIR="$work/rspamd" --var=LOCAL_CONFDIR="$work/rspamd" >"$work/rspamd/out" 2>&1 &
rsppid=$!
await_port $rsp_addr

(cd "$root" && go build -o "$work/mxedge" ./cmd/mxedge)
postfix status >/dev/null 2>&1 || pf_started=1
"$shared/postfix-peer.sh" start >/dev/null
await_port $pf_addr

# mxedge MILTER(yes|no)
start_mxedge() {
  if [ -n "$mxpid" ]; then kill "$mxpid"; wait "$mxpid" 2>/dev/null || true; mxpid=; fi
  {
    bench_mx_config "$work/data" "$sink_addr" "$mx_addr"
    bench_checks_off
    printf '[queue]\nconcurrency = 20\n'
    # rspamd checks SPF, DKIM and DMARC itself, as it does for Postfix.
    bench_msgauth_off
  } >"$work/mxedge.toml"
  if [ "$1" = yes ]; then
    printf '[[milter]]\nname = "rspamd"\naddress = "inet:%s"\nkinds = ["mx"]\n' "$rsp_addr" >>"$work/mxedge.toml"
  fi
  "$work/mxedge" serve -config "$work/mxedge.toml" >>"$work/mxedge.out" 2>>"$work/mxedge.log" &
  mxpid=$!
  await_port $mx_addr
}
pf_milter() {
  if [ "$1" = yes ]; then
    postconf -e "smtpd_milters = inet:$rsp_addr" "milter_default_action = tempfail"
  else
    postconf -X smtpd_milters milter_default_action
  fi
  postfix reload >/dev/null 2>&1
  await_port $pf_addr
}
run() { "$shared/mta-bench.sh" "$1" "$n" "$size" "$sess" bench.test "$sink_addr" | tail -1; }

# Warm rspamd up (its first scans load maps) with GTUBE messages, which
# are refused in the session: nothing is queued to reach a later sink.
start_mxedge yes
for _ in $(seq 20); do
  swaks --server "${mx_addr%:*}" --port "${mx_addr#*:}" --from sender@src.test --to user@bench.test \
    --body 'XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X' >/dev/null 2>&1 || true
done
printf '%-28s %s\n' case result
for m in no yes; do
  pf_milter $m
  printf '%-28s %s\n' "postfix milter=$m" "$(run $pf_addr)"
  start_mxedge $m
  printf '%-28s %s\n' "mxedge  milter=$m" "$(run $mx_addr)"
done
say "rspamd scanned: $(grep -c 'milter verdict' "$work/mxedge.log" || true) messages by mxedge (log lines)"
