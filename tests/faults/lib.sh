# shellcheck shell=bash
# Helpers for the fault scenarios in tests/faults/. Sourced, never run.
#
# Every scenario starts its own OpenBao servers the way an operator would: a non-dev config
# file with raft (integrated) storage, init and unseal through the HTTP API. Servers listen on
# loopback addresses only (127.0.0.0/8) and are killed and reaped on exit.
#
#   fl_server_start NAME IP STORAGE
#                       start server NAME on IP with "raft" (persistent) or "inmem" storage;
#                       sets FL_ADDR_<NAME>, FL_PID_<NAME>; FL_LISTENER_EXTRA: more lines
#                       for its listener "tcp" block
#   fl_server_restart NAME   start NAME again with the same config and data
#   fl_server_kill NAME [SIG] kill NAME (default KILL) and reap it
#   fl_init ADDR        sys/init with one key share; sets FL_ROOT, FL_UNSEAL_KEY
#   fl_unseal ADDR      sys/unseal with FL_UNSEAL_KEY until unsealed
#   fl_health ADDR      print the sys/health HTTP status (000: no answer)
#   fl_wait_health ADDR CODES [S]  wait up to S seconds (30) for a status in CODES ("200 429")
#   fl_setup_transit    enable Transit at transit/ and create the key $FL_KEY (ecdsa-p256)
#   fl_module_conf FILE ADDRESSES TIMEOUT [EXTRA_VAULT_LINES]
#                       write a module config: [vault] address/timeout + one slot over transit/
#   fl_signload_start OUT ARGS...   run signload in the background; sets FL_LOAD_PID
#   fl_wait_ready FILE [S]          wait for signload's ready file
#   fl_now_ms           wall-clock milliseconds (signload compares with CLOCK_REALTIME)
#   fl_mark FILE        write fl_now_ms into FILE (fault start / fault end for signload)
#   fl_verdict OUT      print signload's summary and decide: 0 ok, 1 failed
#
# Knobs: FL_THREADS (8), VTP_MODULE, VTP_BUILDDIR, VTP_SRCDIR.

set -uo pipefail

: "${VTP_SRCDIR:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
: "${VTP_BUILDDIR:=$VTP_SRCDIR}"
: "${VTP_MODULE:=$VTP_BUILDDIR/src/.libs/vault-transit-pkcs11.so}"
: "${FL_SIGNLOAD:=$VTP_BUILDDIR/tests/faults/signload}"
: "${FL_THREADS:=8}"
export VTP_SRCDIR VTP_BUILDDIR VTP_MODULE

# shellcheck source=tests/lib/bao.sh
. "$VTP_SRCDIR/tests/lib/bao.sh"

FL_NAME=$(basename "$0" .sh)
FL_PREFIX="f$(vtp_random_hex 4)-"
FL_KEY="${FL_PREFIX}k1"
FL_SERVERS=()
FL_LOAD_PID=

fl_say() { printf '%s: %s\n' "$FL_NAME" "$*"; }
fl_fail() {
    printf '%s: FAIL: %s\n' "$FL_NAME" "$*"
    exit 1
}

fl_now_ms() { date +%s%3N; }
fl_mark() { fl_now_ms >"$1.tmp" && mv "$1.tmp" "$1"; }

fl_cleanup() {
    local rc=$? n pid
    trap - EXIT INT TERM
    if [ -n "$FL_LOAD_PID" ]; then
        kill "$FL_LOAD_PID" 2>/dev/null
        wait "$FL_LOAD_PID" 2>/dev/null
    fi
    for n in "${FL_SERVERS[@]}"; do
        pid=$(fl_pid "$n")
        if [ -n "$pid" ]; then
            kill -CONT "$pid" 2>/dev/null
            kill -KILL "$pid" 2>/dev/null
            wait "$pid" 2>/dev/null
        fi
    done
    if [ "$rc" != 0 ] && [ -n "${FL_DIR:-}" ]; then
        for n in "${FL_SERVERS[@]}"; do
            if [ -s "$FL_DIR/$n/bao.log" ]; then
                echo "--- last lines of the $n server log:"
                tail -n 15 "$FL_DIR/$n/bao.log"
            fi
        done
        if [ -s "$FL_DIR/module.log" ]; then
            echo "--- last lines of the module log:"
            grep -E 'WARN|ERR' "$FL_DIR/module.log" | tail -n 30
        fi
    fi
    if [ -n "${FL_DIR:-}" ] && [ "${FL_KEEP:-0}" != 1 ]; then
        rm -rf "$FL_DIR"
    fi
    exit "$rc"
}

fl_begin() {
    if [ ! -x "$FL_SIGNLOAD" ]; then
        echo "$FL_NAME: $FL_SIGNLOAD is missing (make check-faults builds it)" >&2
        exit 99
    fi
    if [ ! -e "$VTP_MODULE" ]; then
        echo "$FL_NAME: module $VTP_MODULE is missing" >&2
        exit 99
    fi
    vtp_bao_find || exit 99
    FL_DIR=$(mktemp -d "${TMPDIR:-/tmp}/vtp-fault.XXXXXX") || exit 99
    trap fl_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    unset VAULT_ADDR VAULT_TOKEN BAO_ADDR BAO_TOKEN VAULT_NAMESPACE
    export VAULT_TRANSIT_PKCS11_DEBUG="level:4,file:$FL_DIR/module.log"
    fl_say "bao: $("$VTP_BAO" version 2>/dev/null | head -n 1); work dir $FL_DIR"
}

# Indirect variables per server name.
fl_pid() { local v="FL_PID_$1"; echo "${!v:-}"; }
fl_addr() { local v="FL_ADDR_$1"; echo "${!v:-}"; }

fl_port_free() {
    python3 - "$1" "$2" <<'EOF'
import socket, sys
s = socket.socket()
try:
    s.bind((sys.argv[1], int(sys.argv[2])))
except OSError:
    sys.exit(1)
s.close()
EOF
}

# Two free consecutive ports on IP: API and cluster.
fl_ports() {
    local ip=$1 p i
    for i in $(seq 1 50); do
        p=$((20000 + RANDOM % 20000))
        if fl_port_free "$ip" "$p" && fl_port_free "$ip" "$((p + 1))"; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

# fl_server_start NAME IP STORAGE
fl_server_start() {
    local name=$1 ip=$2 storage=$3 port dir
    dir="$FL_DIR/$name"
    mkdir -p "$dir/data"
    port=$(fl_ports "$ip") || fl_fail "no free port on $ip"
    case $storage in
    raft)
        # OpenBao 2.x keeps raft (integrated storage) as its persistent local backend; the
        # "file" backend is gone. performance_multiplier = 1: fast elections for tests.
        printf 'storage "raft" {\n  path = "%s"\n  node_id = "%s"\n' "$dir/data" "$name" \
            >"$dir/server.hcl"
        printf '  performance_multiplier = 1\n}\n' >>"$dir/server.hcl"
        ;;
    inmem)
        printf 'storage "inmem" {}\n' >"$dir/server.hcl"
        ;;
    *) fl_fail "unknown storage $storage" ;;
    esac
    cat >>"$dir/server.hcl" <<EOF
listener "tcp" {
  address = "$ip:$port"
  cluster_address = "$ip:$((port + 1))"
  tls_disable = true
${FL_LISTENER_EXTRA:-}
}
api_addr = "http://$ip:$port"
cluster_addr = "https://$ip:$((port + 1))"
log_level = "info"
# HashiCorp Vault >= 1.20 refuses to start without it; OpenBao warns that it is unknown and goes on
disable_mlock = true
EOF
    printf -v "FL_ADDR_$name" '%s' "http://$ip:$port"
    printf -v "FL_PORT_$name" '%s' "$port"
    FL_SERVERS+=("$name")
    fl_server_restart "$name"
}

fl_server_restart() {
    local name=$1 dir="$FL_DIR/$1" pid i
    env -u VAULT_ADDR -u VAULT_TOKEN -u BAO_ADDR -u BAO_TOKEN -u LD_PRELOAD -u ASAN_OPTIONS \
        HOME="$dir" "$VTP_BAO" server -config="$dir/server.hcl" >>"$dir/bao.log" 2>&1 </dev/null &
    pid=$!
    printf -v "FL_PID_$name" '%s' "$pid"
    # Listening (any status, 501 uninitialised or 503 sealed) within 20 s.
    for ((i = 0; i < 200; i++)); do
        if [ "$(fl_health "$(fl_addr "$name")")" != 000 ]; then
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || fl_fail "server $name exited: $(tail -n 5 "$dir/bao.log")"
        sleep 0.1
    done
    fl_fail "server $name did not listen within 20 s"
}

fl_server_kill() {
    local name=$1 sig=${2:-KILL} pid
    pid=$(fl_pid "$name")
    [ -n "$pid" ] || return 0
    kill -"$sig" "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    printf -v "FL_PID_$name" '%s' ""
}

fl_health() {
    vtp_curl -s -o /dev/null -m 2 -w '%{http_code}' "$1/v1/sys/health" 2>/dev/null || true
}

fl_wait_health() {
    local addr=$1 codes=$2 timeout=${3:-30} i code
    for ((i = 0; i < timeout * 10; i++)); do
        code=$(fl_health "$addr")
        case " $codes " in *" $code "*) return 0 ;; esac
        sleep 0.1
    done
    echo "$FL_NAME: $addr/v1/sys/health is $code, not one of $codes, after ${timeout}s" >&2
    return 1
}

# Unauthenticated PUT with a JSON body; prints the body, fails on a non-2xx answer.
fl_put() {
    local addr=$1 path=$2 data=$3 out code
    out=$(vtp_curl -sS -X PUT -H 'Content-Type: application/json' --data "$data" \
        -w '\n%{http_code}' "$addr/v1/$path") || return 1
    code=${out##*$'\n'}
    out=${out%$'\n'*}
    if [ "${code:0:1}" != 2 ]; then
        echo "$FL_NAME: PUT $path -> $code $out" >&2
        return 1
    fi
    printf '%s\n' "$out"
}

fl_init() {
    local out
    out=$(fl_put "$1" sys/init '{"secret_shares":1,"secret_threshold":1}') ||
        fl_fail "sys/init on $1"
    FL_ROOT=$(jq -r '.root_token' <<<"$out")
    FL_UNSEAL_KEY=$(jq -r '.keys_base64[0]' <<<"$out")
    [ -n "$FL_ROOT" ] && [ "$FL_ROOT" != null ] || fl_fail "sys/init gave no root token"
    printf '%s\n' "$FL_UNSEAL_KEY" >"$FL_DIR/unseal-key"
    chmod 600 "$FL_DIR/unseal-key"
}

fl_unseal() {
    local out
    out=$(fl_put "$1" sys/unseal "{\"key\":\"$FL_UNSEAL_KEY\"}") || return 1
    [ "$(jq -r '.sealed' <<<"$out")" = false ] || {
        echo "$FL_NAME: $1 still sealed after sys/unseal: $out" >&2
        return 1
    }
}

# As root, through tests/lib/bao.sh's vtp_api.
fl_api() { VAULT_ADDR=$FL_API_ADDR VAULT_TOKEN=$FL_ROOT vtp_api "$@"; }

fl_setup_transit() {
    fl_api POST sys/mounts/transit '{"type":"transit"}' >/dev/null || fl_fail "enable transit"
    fl_api POST "transit/keys/$FL_KEY" '{"type":"ecdsa-p256"}' >/dev/null ||
        fl_fail "create key $FL_KEY"
}

# fl_module_conf FILE "ADDR1, ADDR2" TIMEOUT [extra [vault] lines...]
fl_module_conf() {
    local file=$1 addrs=$2 timeout=$3 line
    shift 3
    {
        echo "; written by tests/faults/$FL_NAME.sh"
        echo "[vault]"
        echo "address = $addrs"
        echo "timeout = $timeout"
        echo "connect_timeout = 1"
        for line in "$@"; do echo "$line"; done
        echo "[slot faults]"
        echo "mount = transit"
        echo "key_prefix = $FL_PREFIX"
        echo "label = faults"
    } >"$file"
    chmod 600 "$file"
    export VAULT_TRANSIT_PKCS11_CONFIG=$file
}

# fl_signload_start OUT ARGS...: OUT gets signload's output.
fl_signload_start() {
    local out=$1
    shift
    "$FL_SIGNLOAD" -m "$VTP_MODULE" -l k1 "$@" >"$out" 2>&1 &
    FL_LOAD_PID=$!
}

fl_wait_ready() {
    local file=$1 timeout=${2:-30} i
    for ((i = 0; i < timeout * 10; i++)); do
        [ -e "$file" ] && return 0
        kill -0 "$FL_LOAD_PID" 2>/dev/null || break
        sleep 0.1
    done
    cat "$FL_DIR/load.out" 2>/dev/null
    fl_fail "signload did not sign within ${timeout}s"
}

fl_wait_load() {
    local rc=0
    wait "$FL_LOAD_PID" || rc=$?
    FL_LOAD_PID=
    return "$rc"
}

# fl_verdict RC OUT: signload's exit status and output; prints the summary lines.
fl_verdict() {
    local rc=$1 out=$2
    sed 's/^/  /' "$out"
    case $rc in
    0) fl_say "PASS" ;;
    *) fl_say "FAIL (signload exit $rc)" ;;
    esac
    return "$rc"
}

# fl_single: one server s1 on 127.0.0.1 (raft storage), initialised, unsealed, active, with
# Transit and the key; sets FL_API_ADDR.
fl_single() {
    local a
    fl_server_start s1 127.0.0.1 raft
    a=$(fl_addr s1)
    fl_init "$a"
    fl_unseal "$a" || fl_fail "unseal $a"
    fl_wait_health "$a" 200 || fl_fail "$a did not become active"
    FL_API_ADDR=$a
    fl_setup_transit
}

# fl_load_begin DEADLINE_S [SIGNLOAD ARGS...]: start FL_THREADS signing threads (at most 120 s,
# stopped by fl_load_end) and wait until each has signed once.
fl_load_begin() {
    local deadline_s=$1
    shift
    FL_DEADLINE_S=$deadline_s
    fl_signload_start "$FL_DIR/load.out" -t "$FL_THREADS" -d 120 -s "$FL_DIR/stop" \
        -r "$FL_DIR/ready" -e "$FL_DIR/fault-end" -T $((deadline_s * 1000)) "$@"
    fl_wait_ready "$FL_DIR/ready"
}

# fl_load_end [SECONDS]: let the load run SECONDS (5) more, stop it, print the verdict.
fl_load_end() {
    local rc=0
    sleep "${1:-5}"
    touch "$FL_DIR/stop"
    fl_wait_load || rc=$?
    fl_verdict "$rc" "$FL_DIR/load.out"
}
