# shellcheck shell=bash
# Stack pieces shared by deploy/local/up and the integration tests
# (test/integration/lib/stack.sh): the config files of sigil-server and sigil-agent, the
# server's bundle, a join token, waiting, a free port, a pid file check. Sourced, not run.
# Every function returns non-zero (and says why on stderr) when its piece fails.

# sigil_until_ok SECS CMD...: runs CMD every 0.2 s until it succeeds, at most SECS seconds.
sigil_until_ok() {
  local secs=$1
  shift
  for _ in $(seq 1 $((secs * 5))); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  return 1
}

# sigil_free_port: a TCP port on 127.0.0.1 that nothing listens on right now.
sigil_free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# sigil_port_free PORT: true if nothing listens on 127.0.0.1:PORT (SO_REUSEADDR, as the server
# binds: connections of a killed server in TIME_WAIT do not count).
sigil_port_free() {
  /usr/bin/python3 -c '
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))' "$1" 2>/dev/null
}

# sigil_server_config FILE TRUST_DOMAIN CONNINFO ADMIN_SOCKET NODE_LISTEN KEY_DIR [POLICY]
# Writes sigil-server's config (mode 0600: it names the database). POLICY: YAML lines
# under `policy:`, each indented by two spaces; empty: the built-in policy (commented).
sigil_server_config() {
  local file=$1 td=$2 conninfo=$3 admin=$4 listen=$5 keys=$6 policy=${7:-}
  (
    umask 077
    cat >"$file" <<EOF
# sigil-server configuration (every key: sigil-server run --print-config-doc)
trust_domain: $td
database:
  conninfo: $conninfo
  pool_size: 2
admin:
  # platform-admin rights for whoever can open it: owner only
  socket_path: $admin
  socket_mode: "0600"
node_api:
  # where agents attest and fetch their entries' SVIDs (TLS)
  listen: $listen
ca:
  # the CA's private keys (directory 0700)
  key_dir: $keys
EOF
    if [ -n "$policy" ]; then
      printf 'policy:\n%s\n' "$policy" >>"$file"
    else
      cat >>"$file" <<'EOF'
# the built-in registration policy (docs/policy.md): IDs spiffe://<td>/<env>/<platform>/
# <team>/<workload>, unix entries name unix:uid, unix:path and unix:sha256
#policy:
#  tier: strict
EOF
    fi
    printf 'log:\n  level: info\n' >>"$file"
  )
}

# sigil_agent_config FILE TRUST_DOMAIN SERVER_ADDR BUNDLE DATA_DIR API_SOCKET [EXTRA]
# Writes sigil-agent's config (mode 0600). EXTRA: top-level YAML lines appended (e.g. a
# retry: or log: section); without it, log level info.
sigil_agent_config() {
  local file=$1 td=$2 addr=$3 bundle=$4 data=$5 api=$6 extra=${7:-}
  (
    umask 077
    cat >"$file" <<EOF
# sigil-agent configuration (every key: sigil-agent run --print-config-doc)
trust_domain: $td
server_address: $addr
# the server's CA bundle for the first connection (sigil-server bundle show)
trust_bundle_path: $bundle
# the agent's own SVID and key (0600)
data_dir: $data
workload_api:
  socket_path: $api
  # anyone may connect: workload attestation, not the file mode, decides who gets an ID
  socket_mode: "0666"
workload_attestors: [unix]
EOF
    if [ -n "$extra" ]; then
      printf '%s\n' "$extra" >>"$file"
    else
      printf 'log:\n  level: info\n' >>"$file"
    fi
  )
}

# sigil_bundle SERVER_BIN OUT: the server's X.509 bundle as PEM into OUT (waits up to 10 s
# for the CA to be ready).
sigil_bundle() {
  local srv=$1 out=$2
  sigil_until_ok 10 "$srv" bundle show || { echo "sigil-server bundle show fails" >&2; return 1; }
  if ! "$srv" bundle show >"$out" || ! openssl x509 -in "$out" -noout; then
    echo "sigil-server bundle show: no PEM certificate" >&2
    return 1
  fi
}

# sigil_join_token SERVER_BIN AGENT_PATH [TTL]: prints a new single-use join token whose
# agent gets spiffe://<td>AGENT_PATH.
sigil_join_token() {
  local srv=$1 path=$2 ttl=${3:-10m} out token
  out=$("$srv" token generate --ttl "$ttl" --agent-path "$path" 2>&1) ||
    { echo "sigil-server token generate: $out" >&2; return 1; }
  token=$(printf '%s\n' "$out" | sed -nE 's/^Token +: ([A-Za-z0-9_-]+)$/\1/p')
  [ -n "$token" ] || { echo "sigil-server token generate: no token in its answer" >&2; return 1; }
  printf '%s\n' "$token"
}

# sigil_pid_alive PIDFILE NEEDLE: true if PIDFILE names a live process whose command line
# contains NEEDLE (so a pid reused by another program is not taken for ours).
sigil_pid_alive() {
  local pidfile=$1 needle=$2 pid
  [ -f "$pidfile" ] || return 1
  pid=$(cat "$pidfile" 2>/dev/null) || return 1
  case $pid in '' | *[!0-9]*) return 1 ;; esac
  [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$needle"
}

# sigil_running PID: the process exists and is not a zombie (whoever owns it)
sigil_running() {
  [ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}

# sigil_stop_pid NAME PID [SECS]: SIGTERM, wait up to SECS (default 10) seconds, then
# SIGKILL. Says what it did; status 1 if the process could not be signalled or stays.
sigil_stop_pid() {
  local name=$1 pid=$2 secs=${3:-10}
  sigil_running "$pid" || { echo "$name: not running"; return 0; }
  if ! kill -TERM "$pid" 2>/dev/null; then
    echo "$name: cannot signal pid $pid (not ours: run this as its owner)" >&2
    return 1
  fi
  for _ in $(seq 1 $((secs * 10))); do
    sigil_running "$pid" || { echo "$name: stopped (pid $pid)"; return 0; }
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null
  for _ in $(seq 1 20); do
    sigil_running "$pid" || { echo "$name: killed (pid $pid, still running ${secs}s after SIGTERM)"; return 0; }
    sleep 0.1
  done
  echo "$name: pid $pid still runs after SIGKILL" >&2
  return 1
}
