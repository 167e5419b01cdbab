# Shared pieces of the bench scripts (sourced): logging, waiting for a
# port, CPU time, and the mxedge configurations.

# say TEXT: a time-stamped progress line on stderr.
say() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }

# await_port HOST:PORT: wait up to 10 s until something listens there.
await_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on $1" >&2; return 1
}

# cpu_ticks PID: user+system CPU time of a process, in clock ticks.
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }

# bench_mx_config DATA_DIR ROUTE MX_ADDR: the configuration head of a relay
# for bench.test with one MX listener, its edge defenses off (the relay as a
# plain relay; compare.sh -checks turns them on): everything up to the end
# of the [[listener]] table, so the caller can add listener keys.
bench_mx_config() {
  cat <<TOML
hostname = "relay.bench.test"
data_dir = "$1"
relay_domains = ["bench.test"]
[routes]
"bench.test" = "$2"
[[listener]]
name = "mx"
kind = "mx"
address = "$3"
TOML
}

# bench_checks_off: the [[listener]] keys that turn the edge defenses off.
bench_checks_off() {
  cat <<'TOML'
pregreet_wait = "0s"
client_sessions = 0
client_connection_rate = 0
client_message_rate = 0
client_recipient_rate = 0
client_no_ptr = "off"
client_ptr_mismatch = "off"
helo_invalid = "off"
helo_is_us = "off"
helo_unknown = "off"
sender_unknown_domain = "off"
TOML
}

# bench_msgauth_off: SPF, DKIM verification and DMARC off. They are on by
# default and bench/auth.sh measures them; without a [dns] that answers they
# would ask the system resolver, which has no answers on a machine without
# a network (every MAIL waited for its timeout).
bench_msgauth_off() {
  printf '[spf]\nenabled = false\n[dkim_verify]\nenabled = false\n[dmarc]\nenabled = false\n'
}
