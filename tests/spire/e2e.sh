#!/usr/bin/env bash
# SPIRE end to end with the real spire-server and spire-agent v1.13.3, their CA and JWT keys in
# Transit through spire-keymanager-pkcs11 and this module:
#   tests/lib/run-test tests/spire/e2e.sh           (a fresh OpenBao dev server, or the Vault
#                                                    of VAULT_ADDR/VAULT_TOKEN)
#   VTP_BUILDDIR=_build/default tests/spire/e2e.sh  (by hand: the same; starts its own OpenBao
#                                                    when VAULT_ADDR/VAULT_TOKEN are unset)
#   tests/spire/e2e.sh --disk                       SPIRE's built-in "disk" KeyManagers (server
#                                                    and agent a1) instead of the plugin, to
#                                                    check the test itself; every Transit check
#                                                    is left out
# SPIRE comes from tests/spire/build-spire.sh (cached under $VTP_BUILDDIR/spire-v1.13.3/bin;
# VTP_SPIRE_BIN=DIR uses binaries from DIR). The plugin is $VTP_BUILDDIR/spire/
# spire-keymanager-pkcs11 unless VTP_SPIRE_PLUGIN names another.
#
# What runs, all on 127.0.0.1 with free ports, in $VTP_TMP, every process killed at exit:
#   - twice (the servers: [slot spire], key_prefix = spire-<random>-, label "SPIRE CA"; agent
#     a1: [slot spire-agent], key_prefix = spire-agent-<random>-, label "SPIRE agent"): a Vault
#     policy as the plugin's spec documents it (list on keys, create/read/update/delete on
#     keys/<prefix>*, update on .../config and sign/<prefix>*, token self lookup/renew) and a
#     token with only that policy, in a token file; a module config ([vault] auth = token_file,
#     that slot with mount, key_prefix, allow_destroy) that spire-server or spire-agent gets as
#     VAULT_TRANSIT_PKCS11_CONFIG (VAULT_TOKEN is removed from their environment);
#   - server s1: ca_key_type ec-p256, key_identifier_file, default TTLs, disposal_grace_period 1s;
#     server s2 on the same mount: ca_key_type rsa-2048, key_identifier_value, plugin key_prefix,
#     ca_ttl 60s (SPIRE prepares the next CA at 1/2 of its life and activates it at 5/6, checked
#     every 10s; SVID TTLs 10s, the most a 60s CA guarantees);
#   - one agent per server, attested with a join token, unix workload attestor, bootstrap bundle
#     from `spire-server bundle show`; an entry for the current uid. Agent a1 (of s1) keeps its
#     SVID key in Transit: KeyManager "pkcs11" with plugin_args = ["-agent"], plugin_checksum,
#     key_identifier_file in its data_dir, no PIN; a2 (of s2) keeps SPIRE's memory KeyManager.
# Checks: Transit key names (<slot prefix><identifier>.x509-CA-A.<16 hex>, .JWT-Signer-A.) and
# types; pkcs11-tool shows each as objects with CKA_LABEL = CKA_ID = the name less the slot
# prefix; the bundle's CA key and the JWKS key are Transit's public keys; X509-SVIDs verify with
# openssl against the bundle and were signed by a Transit CA key; JWT-SVIDs pass `spire-agent api
# validate jwt`, a tampered one fails, and each signature verifies with openssl against Transit's
# public key; s2 rotates (x509-CA-B and JWT-Signer-B appear, A gets a new generation, the old A
# keys are destroyed) and SVIDs fetched afterwards verify against the new bundle; s1 keeps its
# keys through s2's rotation; both servers stop cleanly on SIGTERM (the plugin deinitialises
# without error); a restart of s1 leaves the Transit key list as it was (its disposal touches no
# key of s2) and it still signs X509- and JWT-SVIDs; no key of the servers' prefix lies outside
# the two servers' namespaces.
# Agent a1: its key_identifier_file holds a new UUID; its only key is the Transit key
# <agent slot prefix><identifier>.agent-svid-A.<16 hex> (SPIRE's agent SVID key ids are
# agent-svid-A and -B, pkg/agent/plugin/keymanager/svidkeymanager.go), ecdsa-p256; the servers'
# token gets 403 on it and a1's token 403 on s1's keys; a1's own X509-SVID (<data_dir>/
# agent-data.json, pkg/agent/storage) verifies against s1's bundle, names its join token and
# holds that Transit key's public key; workload X509- and JWT-SVIDs from a1 verify; a1 survives
# s1's restart, stops cleanly on SIGTERM and restarts with no join token from its stored SVID
# and its key in Transit ("SVID loaded", no new key pair, the same SVID, no key created or
# destroyed) and serves SVIDs again. At the end, with every process stopped, the run's Transit
# keys (servers' and a1's) are deleted and none is left; at exit the policies and tokens are
# deleted (and any keys left after a failure).
# Bounded: every Vault HTTP call 10 s, every SPIRE CLI call 60 s, every wait 60-120 s; a stuck
# Vault fails the test in about 2 minutes.
# Takes about 75 s on a 2-core machine once SPIRE is built (the wait for s2's rotation is most
# of it; building SPIRE first: ~35 s with Go's caches warm, ~5.5 minutes cold). Needs openssl,
# jq, curl, python3 (standard library only), pkcs11-tool.

# shellcheck source=tests/lib/common.sh
. "$(dirname "$0")/../lib/common.sh"
# shellcheck source=tests/spire/lib.sh
. "$(dirname "$0")/lib.sh"

# plugin_cmd and module_path must be absolute
VTP_BUILDDIR=$(cd "$VTP_BUILDDIR" && pwd)
VTP_MODULE=$(realpath -m "$VTP_MODULE")

KM=pkcs11
T=yes # the Transit checks run
if [ "${1:-}" = --disk ]; then
    KM=disk
    T=
fi
TD=example.org
UID_NOW=$(id -u)
vtp_require openssl jq curl python3 sha256sum setsid timeout

# Every HTTP call to Vault (vtp_api's curl) ends within 10 s, so a stuck server fails the test
# instead of hanging it.
printf 'connect-timeout = 5\nmax-time = 10\n' >"$VTP_TMP/.curlrc"
export CURL_HOME=$VTP_TMP

# ---- SPIRE binaries and the plugin ----
vtp_spire_find

PLUGIN=$(realpath -m "${VTP_SPIRE_PLUGIN:-$VTP_BUILDDIR/spire/spire-keymanager-pkcs11}")
if [ "$KM" = pkcs11 ]; then
    vtp_require pkcs11-tool
    [ -x "$PLUGIN" ] || vtp_skip_or_error "the plugin $PLUGIN is not built (make builds it; VTP_SPIRE_PLUGIN names another)"
    [ -e "$VTP_MODULE" ] || vtp_fail "module $VTP_MODULE is not built"
    if [ -n "$VTP_PRELOAD" ]; then
        # A sanitizer build of the module: the plugin process that loads it needs the ASan
        # runtime first (spire-server itself does not). plugin_cmd runs it through a wrapper.
        cat >"$VTP_TMP/spire-keymanager-pkcs11-asan" <<EOF
#!/bin/sh
LD_PRELOAD='$VTP_PRELOAD' ASAN_OPTIONS='$VTP_ASAN_OPTIONS' exec '$PLUGIN' "\$@"
EOF
        chmod +x "$VTP_TMP/spire-keymanager-pkcs11-asan"
        PLUGIN=$VTP_TMP/spire-keymanager-pkcs11-asan
    fi
    PLUGIN_SUM=$(sha256sum "$PLUGIN" | cut -d' ' -f1)
fi
vtp_say "spire-server $SPIRE_VERSION from $SPIRE_BIN; KeyManager $KM${PLUGIN_SUM:+ ($PLUGIN)}"

# ---- processes and cleanup ----
# Every server and agent runs in its own process group (setsid), its id in $VTP_TMP/NAME/pid.
OWN_BAO=no
POLICIES=()  # the run's Vault policies, tokens (by accessor) and Transit key prefixes
ACCESSORS=()
MODPREFIX=   # the servers' slot key_prefix
AGPREFIX=    # agent a1's slot key_prefix

# check_here DESC CMD...: vtp_check, but CMD runs in this shell (not a subshell), so that the
# processes it starts are this shell's children
check_here() {
    local desc=$1 rc=0
    shift
    "$@" >"$VTP_TMP/check.out" 2>&1 || rc=$?
    VTP_LAST_OUT=$(cat "$VTP_TMP/check.out")
    if [ "$rc" = 0 ]; then
        printf '%s: ok: %s\n' "$VTP_NAME" "$desc"
    else
        printf '%s: FAIL: %s (exit %s)\n  command: %s\n' "$VTP_NAME" "$desc" "$rc" "$*"
        printf '%s\n' "$VTP_LAST_OUT" | sed 's/^/  | /'
        exit 1
    fi
}

# stop_all: SIGTERM to every server and agent at once, up to 15 s for all to exit, then SIGKILL
stop_all() {
    local f pid pids=() end
    for f in "$VTP_TMP"/*/pid; do
        [ -s "$f" ] || continue
        pid=$(cat "$f")
        pids+=("$pid")
        kill -TERM "$pid" 2>/dev/null || true
    done
    end=$(($(date +%s) + 15))
    for pid in "${pids[@]}"; do
        while vtp_group_alive "$pid" && [ "$(date +%s)" -lt "$end" ]; do
            sleep 0.1
        done
        kill -KILL -- "-$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}

cleanup() {
    local rc=$? f
    trap - EXIT INT TERM
    stop_all
    if [ "$rc" != 0 ] && [ "$rc" != 77 ]; then
        for f in "$VTP_TMP"/*/server.log "$VTP_TMP"/*/agent.log; do
            [ -s "$f" ] || continue
            echo "----- last 40 lines of ${f#"$VTP_TMP"/} -----"
            tail -n 40 "$f"
        done
        for f in "$VTP_TMP"/*/module.log; do
            [ -s "$f" ] || continue
            echo "----- module log ${f#"$VTP_TMP"/}: last 20 warnings and errors -----"
            grep -E 'ERROR|WARN|error|warn' "$f" | tail -n 20
        done
    fi
    if [ -n "${VAULT_ADDR:-}" ] && [ "$(vtp_api_status GET sys/health)" = 000 ]; then
        echo "$VTP_NAME: WARNING: $VAULT_ADDR does not answer: its keys $MODPREFIX* $AGPREFIX*," \
            "policies ${POLICIES[*]:-none} and tokens are left" >&2
        MODPREFIX='' AGPREFIX='' ACCESSORS=() POLICIES=()
    fi
    for f in "$MODPREFIX" "$AGPREFIX"; do
        if [ -n "$f" ] && [ -n "${VAULT_ADDR:-}" ]; then
            vtp_cleanup_prefix "$f" ||
                echo "$VTP_NAME: WARNING: could not delete every Transit key $f*" >&2
        fi
    done
    for f in "${ACCESSORS[@]}"; do
        vtp_api POST auth/token/revoke-accessor "{\"accessor\":\"$f\"}" >/dev/null || true
    done
    for f in "${POLICIES[@]}"; do
        vtp_api DELETE "sys/policies/acl/$f" >/dev/null || true
    done
    if [ "$OWN_BAO" = yes ]; then
        vtp_bao_stop
    fi
    if [ -z "${VTP_TEST_TMP:-}" ]; then
        rm -rf "$VTP_TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- Vault: server, mount, policy, token, module config ----
MOUNT=${VTP_TEST_MOUNT:-transit}
if [ "$KM" = pkcs11 ]; then
    if [ -z "${VAULT_ADDR:-}" ] || [ -z "${VAULT_TOKEN:-}" ]; then
        vtp_bao_start "$VTP_TMP/bao" || vtp_fail "could not start an OpenBao dev server"
        OWN_BAO=yes
        vtp_say "started OpenBao dev server $VAULT_ADDR"
    fi
    mounts=$(vtp_api GET sys/mounts) || vtp_fail "cannot read sys/mounts of $VAULT_ADDR"
    if ! jq -e --arg m "$MOUNT/" '(.data // .) | has($m)' >/dev/null <<<"$mounts"; then
        vtp_check "enable Transit at $MOUNT/" vtp_api POST "sys/mounts/$MOUNT" '{"type":"transit"}'
    fi
    RUNID=$(vtp_random_hex 4)
    # Neither prefix is a prefix of the other ("agent-" is not hex), so neither policy reaches
    # the other's keys.
    MODPREFIX="spire-$RUNID-"
    AGPREFIX="spire-agent-$RUNID-"

    # module_setup WHO POLICY PREFIX NAME SLOT LABEL: a policy for keys PREFIX* as the plugin's
    # spec documents it, a token with only that policy in $VTP_TMP/NAME-token, and a module
    # config $VTP_TMP/NAME.conf with one slot over PREFIX
    module_setup() {
        local who=$1 policy=$2 prefix=$3 name=$4 slot=$5 label=$6 hcl
        POLICIES+=("$policy")
        hcl="path \"$MOUNT/keys\" { capabilities = [\"list\"] }
path \"$MOUNT/keys/$prefix*\" { capabilities = [\"create\", \"read\", \"update\", \"delete\"] }
path \"$MOUNT/keys/$prefix*/config\" { capabilities = [\"update\"] }
path \"$MOUNT/sign/$prefix*\" { capabilities = [\"update\"] }
path \"auth/token/lookup-self\" { capabilities = [\"read\"] }
path \"auth/token/renew-self\" { capabilities = [\"update\"] }"
        vtp_check "Vault policy $policy for $who as the plugin's spec documents it (keys $prefix*)" \
            vtp_api PUT "sys/policies/acl/$policy" "$(jq -n --arg p "$hcl" '{policy: $p}')"
        vtp_check "a token for $who with only that policy" vtp_api POST auth/token/create \
            "{\"policies\":[\"$policy\"],\"no_default_policy\":true,\"ttl\":\"1h\",\"renewable\":true}"
        ACCESSORS+=("$(jq -r .auth.accessor <<<"$VTP_LAST_OUT")")
        (umask 077 && jq -r .auth.client_token <<<"$VTP_LAST_OUT" >"$VTP_TMP/$name-token")
        cat >"$VTP_TMP/$name.conf" <<EOF
; vault-transit-pkcs11 config for $who, written by tests/spire/e2e.sh
[vault]
address = $VAULT_ADDR
auth = token_file
token_file = $VTP_TMP/$name-token
timeout = 10

[slot $slot]
mount = $MOUNT
key_prefix = $prefix
label = $label
allow_destroy = true
EOF
        chmod 600 "$VTP_TMP/$name.conf"
    }
    module_setup "the servers" "vtp-spire-e2e-$RUNID" "$MODPREFIX" spire-module spire "SPIRE CA"
    module_setup "agent a1" "vtp-spire-e2e-agent-$RUNID" "$AGPREFIX" agent-module spire-agent "SPIRE agent"
    vtp_say "Vault $VAULT_ADDR, mount $MOUNT, module key_prefix $MODPREFIX (servers), $AGPREFIX (agent a1)"
fi

# ---- SPIRE servers and agents ----
srv_dir() { echo "$VTP_TMP/$1"; }

# srv NAME ARGS...: spire-server ARGS... against server NAME's API socket
srv() {
    local name=$1
    shift
    timeout -k 5 60 "$SPIRE_BIN/spire-server" "$@" -socketPath "$(srv_dir "$name")/api.sock"
}

# srv_config NAME KEYTYPE EXTRA_SERVER_LINES PLUGIN_DATA_LINES: write NAME/server.conf
srv_config() {
    local name=$1 keytype=$2 extra=$3 pdata=$4 dir km
    dir=$(srv_dir "$name")
    mkdir -p "$dir/data"
    vtp_free_port >"$dir/port"
    if [ "$KM" = pkcs11 ]; then
        km="KeyManager \"pkcs11\" {
        plugin_cmd = \"$PLUGIN\"
        plugin_checksum = \"$PLUGIN_SUM\"
        plugin_data {
            module_path = \"$VTP_MODULE\"
            token_label = \"SPIRE CA\"
$pdata
        }
    }"
    else
        km="KeyManager \"disk\" {
        plugin_data {
            keys_path = \"$dir/data/keys.json\"
        }
    }"
    fi
    cat >"$dir/server.conf" <<EOF
server {
    bind_address = "127.0.0.1"
    bind_port = "$(cat "$dir/port")"
    socket_path = "$dir/api.sock"
    trust_domain = "$TD"
    data_dir = "$dir/data"
    log_level = "DEBUG"
    ca_key_type = "$keytype"
$extra
}
plugins {
    DataStore "sql" {
        plugin_data {
            database_type = "sqlite3"
            connection_string = "$dir/data/datastore.sqlite3"
        }
    }
    NodeAttestor "join_token" {
        plugin_data {}
    }
    $km
}
EOF
}

# srv_start NAME: start server NAME in its own process group; wait (90 s at most) until
# `spire-server healthcheck` passes
srv_start() {
    local name=$1 dir pid end
    dir=$(srv_dir "$name")
    setsid env -u VAULT_TOKEN SPIRE_PKCS11_PIN=1234 VAULT_TRANSIT_PKCS11_CONFIG="$VTP_TMP/spire-module.conf" \
        VAULT_TRANSIT_PKCS11_DEBUG="level:4,file:$dir/module.log" \
        "$SPIRE_BIN/spire-server" run -config "$dir/server.conf" >>"$dir/server.log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$dir/pid"
    end=$(($(date +%s) + 90))
    while [ "$(date +%s)" -lt "$end" ]; do
        if timeout 10 "$SPIRE_BIN/spire-server" healthcheck -socketPath "$dir/api.sock" >/dev/null 2>&1; then
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            wait "$pid" 2>/dev/null
            echo "spire-server $name exited with status $?; the end of its log:"
            tail -n 10 "$dir/server.log"
            return 1
        fi
        sleep 0.5
    done
    echo "spire-server $name is not healthy after 90s; the end of its log:"
    tail -n 30 "$dir/server.log"
    srv "$name" healthcheck 2>&1
    return 1
}

srv_stop() { # srv_stop NAME: stop server or agent NAME; 1 if it needed SIGKILL
    local f rc=0
    f=$(srv_dir "$1")/pid
    if [ -s "$f" ]; then
        vtp_stop_group "$(cat "$f")" || rc=1
        rm -f "$f"
    fi
    return "$rc"
}

# clean_stop NAME: stop server or agent NAME; it must exit on SIGTERM and unload its KeyManager
# without an error (the plugin's Deinit: C_Finalize and exit)
clean_stop() {
    local log
    log=$(srv_dir "$1")/server.log
    [ -e "$log" ] || log=$(srv_dir "$1")/agent.log
    srv_stop "$1" || return 1
    if grep -E 'level=error' "$log" | grep -E 'Failed to deinitialize plugin|plugin process exited'; then
        return 1
    fi
}

# agent_start AGENT SERVER KEYMANAGER: a join token from SERVER, the bootstrap bundle, an agent
# with KEYMANAGER (memory, disk: SPIRE's own; pkcs11: the plugin with plugin_args ["-agent"]
# over $VTP_TMP/agent-module.conf, its key identifier in its data_dir), an entry
# spiffe://$TD/workload for the current uid under it
agent_start() {
    local name=$1 server=$2 km=$3 dir token kmconf
    dir=$(srv_dir "$name")
    mkdir -p "$dir/data"
    token=$(srv "$server" token generate -ttl 600 2>/dev/null | sed -n 's/^Token: //p')
    [ -n "$token" ] || { echo "spire-server token generate gave no token"; return 1; }
    echo "$token" >"$dir/join-token"
    srv "$server" bundle show >"$dir/bootstrap.pem" || return 1
    case $km in
    pkcs11)
        kmconf="KeyManager \"pkcs11\" {
        plugin_cmd = \"$PLUGIN\"
        plugin_args = [\"-agent\"]
        plugin_checksum = \"$PLUGIN_SUM\"
        plugin_data {
            module_path = \"$VTP_MODULE\"
            token_label = \"SPIRE agent\"
            key_identifier_file = \"$dir/data/pkcs11-key-id\"
        }
    }" ;;
    disk)
        kmconf="KeyManager \"disk\" {
        plugin_data {
            directory = \"$dir/data\"
        }
    }" ;;
    *)
        kmconf="KeyManager \"memory\" {
        plugin_data {}
    }" ;;
    esac
    cat >"$dir/agent.conf" <<EOF
agent {
    data_dir = "$dir/data"
    log_level = "DEBUG"
    server_address = "127.0.0.1"
    server_port = "$(cat "$(srv_dir "$server")/port")"
    socket_path = "$dir/agent.sock"
    trust_bundle_path = "$dir/bootstrap.pem"
    trust_domain = "$TD"
}
plugins {
    NodeAttestor "join_token" {
        plugin_data {}
    }
    $kmconf
    WorkloadAttestor "unix" {
        plugin_data {}
    }
}
EOF
    agent_run "$name" -joinToken "$token" || return 1
    srv "$server" entry create -parentID "spiffe://$TD/spire/agent/join_token/$token" \
        -spiffeID "spiffe://$TD/workload" -selector "unix:uid:$UID_NOW"
}

# agent_run AGENT ARGS...: start AGENT (its agent.conf written) in its own process group, with the
# agent's module config and no VAULT_TOKEN; wait (60 s at most) until it is healthy
agent_run() {
    local name=$1 dir pid end
    shift
    dir=$(srv_dir "$name")
    setsid env -u VAULT_TOKEN VAULT_TRANSIT_PKCS11_CONFIG="$VTP_TMP/agent-module.conf" \
        VAULT_TRANSIT_PKCS11_DEBUG="level:4,file:$dir/module.log" \
        "$SPIRE_BIN/spire-agent" run -config "$dir/agent.conf" "$@" >>"$dir/agent.log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$dir/pid"
    end=$(($(date +%s) + 60))
    while :; do
        if [ "$(date +%s)" -ge "$end" ]; then
            echo "spire-agent $name not healthy after 60s"
            tail -n 30 "$dir/agent.log"
            return 1
        fi
        if timeout 10 "$SPIRE_BIN/spire-agent" healthcheck -socketPath "$dir/agent.sock" >/dev/null 2>&1; then
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "spire-agent $name exited; the end of its log:"
            tail -n 30 "$dir/agent.log"
            return 1
        fi
        sleep 0.5
    done
}

# fetch_x509 AGENT OUTDIR: `spire-agent api fetch x509 -write OUTDIR`, retried for 60 s until the
# entry has reached the agent
fetch_x509() {
    local dir end
    dir=$(srv_dir "$1")
    rm -rf "$2"
    mkdir -p "$2"
    end=$(($(date +%s) + 60))
    while [ "$(date +%s)" -lt "$end" ]; do
        if timeout 10 "$SPIRE_BIN/spire-agent" api fetch x509 -socketPath "$dir/agent.sock" -write "$2" \
            >"$2/out" 2>&1 && [ -s "$2/svid.0.pem" ]; then
            return 0
        fi
        sleep 1
    done
    cat "$2/out"
    return 1
}

# fetch_jwt AGENT AUDIENCE: print a JWT-SVID for spiffe://$TD/workload
fetch_jwt() {
    local dir
    dir=$(srv_dir "$1")
    timeout 30 "$SPIRE_BIN/spire-agent" api fetch jwt -socketPath "$dir/agent.sock" -audience "$2" \
        -output json | jq -re '.[0].svids[0].svid'
}

validate_jwt() { # validate_jwt AGENT AUDIENCE TOKEN
    timeout 30 "$SPIRE_BIN/spire-agent" api validate jwt -socketPath "$(srv_dir "$1")/agent.sock" \
        -audience "$2" -svid "$3"
}

# ---- keys and certificates ----
# pub_hash: sha256 of the DER SubjectPublicKeyInfo of the PEM public key on stdin
pub_hash() { openssl pkey -pubin -outform DER | sha256sum | cut -d' ' -f1; }
cert_pub_hash() { openssl x509 -in "$1" -noout -pubkey | pub_hash; }

# split_pem FILE PREFIX: one PREFIX.N.pem per certificate of FILE; prints the count
split_pem() {
    awk -v p="$2" '/-----BEGIN CERTIFICATE-----/ { n++ } n { print > (p "." n ".pem") }
        END { print n + 0 }' "$1"
}

# transit_keys [NAMESPACE]: the run's Transit keys (under the servers' module prefix, or $KPFX
# when set [and NAMESPACE])
transit_keys() {
    vtp_list "$MOUNT/keys" | awk -v p="${KPFX:-$MODPREFIX}${1:-}" 'index($0, p) == 1' | sort
}

# transit_pub NAME OUT: Transit's public key (PEM) of NAME's latest version; prints its type
transit_pub() {
    local body
    body=$(vtp_api GET "$MOUNT/keys/$1") || return 1
    jq -r '.data.keys[(.data.latest_version | tostring)].public_key' <<<"$body" >"$2"
    jq -r .data.type <<<"$body"
}

# key_with_pub HASH NAMES...: print the first Transit key of NAMES whose public key has HASH
key_with_pub() {
    local h=$1 k
    shift
    for k in "$@"; do
        transit_pub "$k" "$VTP_TMP/k.pem" >/dev/null || continue
        if [ "$(pub_hash <"$VTP_TMP/k.pem")" = "$h" ]; then
            echo "$k"
            return 0
        fi
    done
    return 1
}

# svid_issuer SVID BUNDLE: print the DER public key hash of the bundle certificate that signed
# SVID's leaf
svid_issuer() {
    local n i
    n=$(split_pem "$2" "$VTP_TMP/issuer")
    for ((i = 1; i <= n; i++)); do
        if openssl verify -CAfile "$VTP_TMP/issuer.$i.pem" "$1" >/dev/null 2>&1; then
            cert_pub_hash "$VTP_TMP/issuer.$i.pem"
            return 0
        fi
    done
    echo "no certificate of $2 signed $1"
    return 1
}

cat >"$VTP_TMP/jwt.py" <<'PY'
# jwt.py TOKEN JWKS OUTDIR: split a JWT-SVID into OUTDIR/input (signed bytes) and OUTDIR/sig
# (DER ECDSA or raw RSA signature), write the JWKS key with the token's kid as OUTDIR/jwk.pem;
# print the algorithm
import base64, json, sys
tok, jwks, out = sys.argv[1], json.load(open(sys.argv[2])), sys.argv[3]
def b64(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
def tlv(tag, body):
    n = len(body)
    ln = bytes([n]) if n < 0x80 else (lambda b: bytes([0x80 | len(b)]) + b)(n.to_bytes((n.bit_length() + 7) // 8, "big"))
    return bytes([tag]) + ln + body
def der_int(b):
    b = b.lstrip(b"\0") or b"\0"
    return tlv(2, (b"\0" + b) if b[0] & 0x80 else b)
h, p, s = tok.split(".")
hdr = json.loads(b64(h))
open(out + "/input", "wb").write((h + "." + p).encode())
sig = b64(s)
if hdr["alg"].startswith("ES"):
    n = len(sig) // 2
    sig = tlv(0x30, der_int(sig[:n]) + der_int(sig[n:]))
open(out + "/sig", "wb").write(sig)
keys = [k for k in jwks["keys"] if k.get("use") == "jwt-svid" and k.get("kid") == hdr.get("kid")]
if len(keys) != 1:
    sys.exit("kid %r: %d JWT keys in the bundle" % (hdr.get("kid"), len(keys)))
k = keys[0]
if k["kty"] == "EC":
    curve = {"P-256": "06082a8648ce3d030107", "P-384": "06052b81040022", "P-521": "06052b81040023"}[k["crv"]]
    alg = tlv(0x30, bytes.fromhex("06072a8648ce3d0201" + curve))
    spki = tlv(0x30, alg + tlv(3, b"\0\x04" + b64(k["x"]) + b64(k["y"])))
else:
    alg = tlv(0x30, bytes.fromhex("06092a864886f70d0101010500"))
    spki = tlv(0x30, alg + tlv(3, b"\0" + tlv(0x30, der_int(b64(k["n"])) + der_int(b64(k["e"])))))
pem = base64.encodebytes(spki).decode().replace("\n", "")
open(out + "/jwk.pem", "w").write("-----BEGIN PUBLIC KEY-----\n" +
    "\n".join(pem[i:i + 64] for i in range(0, len(pem), 64)) + "\n-----END PUBLIC KEY-----\n")
print(hdr["alg"])
PY

# jwt_signed_by SERVER TOKEN KEYS...: the JWKS key of the token's kid (from SERVER's bundle) is
# the public key of one of the Transit KEYS, and openssl verifies the token's signature with that
# Transit key; prints its name
jwt_signed_by() {
    local server=$1 tok=$2 d alg k opts=()
    shift 2
    d=$(mktemp -d "$VTP_TMP/jwt.XXXXXX")
    srv "$server" bundle show -format spiffe >"$d/jwks.json" || return 1
    alg=$(python3 "$VTP_TMP/jwt.py" "$tok" "$d/jwks.json" "$d") || return 1
    if ! k=$(key_with_pub "$(pub_hash <"$d/jwk.pem")" "$@"); then
        echo "the bundle's JWT key for this token is none of the Transit keys $*"
        return 1
    fi
    transit_pub "$k" "$d/transit.pem" >/dev/null || return 1
    case $alg in
    PS*) opts=(-sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:-1) ;;
    esac
    openssl dgst "-sha${alg:2}" "${opts[@]}" -verify "$d/transit.pem" -signature "$d/sig" \
        "$d/input" >/dev/null || { echo "$alg signature does not verify with Transit's $k"; return 1; }
    echo "$k"
}

# expect_keys NAMESPACE IDS...: Transit has exactly one key <prefix><NAMESPACE><id>.<16 hex>
# (then .p11-<8 hex>: without a KV store the module makes every name new, src/kvstore.h) for each id, and no other key in NAMESPACE; prints the names (prefix: $KPFX, or the servers')
expect_keys() {
    local ns=$1 id keys k found pfx=${KPFX:-$MODPREFIX}
    shift
    keys=$(transit_keys "$ns")
    for id in "$@"; do
        found=$(grep -Ec "^$pfx${ns//./\\.}$id\.[0-9a-f]{16}(\.p11-[0-9a-f]{8})?$" <<<"$keys" || true)
        [ "$found" = 1 ] || { echo "want one key $pfx$ns$id.<16 hex>, found $found in:"; echo "$keys"; return 1; }
    done
    [ "$(grep -c . <<<"$keys")" = $# ] || { echo "want $# keys in $pfx$ns, found:"; echo "$keys"; return 1; }
    echo "$keys"
}

key_named() { # key_named NAMESPACE ID: the current Transit key of ID (prefix as for expect_keys)
    transit_keys "$1" | grep -E "^${KPFX:-$MODPREFIX}${1//./\\.}$2\.[0-9a-f]{16}(\.p11-[0-9a-f]{8})?$" | tail -n 1
}

check_types() { # check_types TYPE KEYS...: Transit's type of each key is TYPE
    local want=$1 k t
    shift
    [ $# -gt 0 ] || { echo "no Transit key listed"; return 1; }
    for k in "$@"; do
        t=$(transit_pub "$k" "$VTP_TMP/k.pem") || return 1
        [ "$t" = "$want" ] || { echo "$k is $t, not $want"; return 1; }
    done
}

check_bundle_ca() { # check_bundle_ca SERVER KEY: the bundle's only CA key is Transit's KEY
    local d=$VTP_TMP/bundle-$1 n
    mkdir -p "$d"
    srv "$1" bundle show >"$d/bundle.pem" || return 1
    n=$(split_pem "$d/bundle.pem" "$d/ca")
    [ "$n" = 1 ] || { echo "the bundle holds $n CA certificates, not 1"; return 1; }
    transit_pub "$2" "$d/transit.pem" >/dev/null || return 1
    [ "$(cert_pub_hash "$d/ca.1.pem")" = "$(pub_hash <"$d/transit.pem")" ] ||
        { echo "bundle CA key differs from Transit's $2"; openssl x509 -in "$d/ca.1.pem" -noout -pubkey; cat "$d/transit.pem"; return 1; }
}

# check_svid DIR KEYS...: DIR/svid.0.pem verifies against DIR/bundle.0.pem for
# spiffe://$TD/workload, and its issuer's key is one of the Transit KEYS (none: not checked);
# prints the issuer's key name or hash
check_svid() {
    local dir=$1 h k
    shift
    openssl verify -CAfile "$dir/bundle.0.pem" "$dir/svid.0.pem" || return 1
    openssl x509 -in "$dir/svid.0.pem" -noout -ext subjectAltName | grep -q "URI:spiffe://$TD/workload" ||
        { echo "the SVID is not for spiffe://$TD/workload"; return 1; }
    h=$(svid_issuer "$dir/svid.0.pem" "$dir/bundle.0.pem") || { echo "$h"; return 1; }
    if [ $# = 0 ]; then
        [ -z "$T" ] || { echo "no Transit CA key listed to compare the issuer with"; return 1; }
        echo "issuer $h"
        return 0
    fi
    k=$(key_with_pub "$h" "$@") || { echo "the SVID's issuer key is none of the Transit keys $*"; return 1; }
    echo "issuer $k"
}

tamper() { # tamper JWT: change one character in the middle of the signature
    local t=$1 s c
    s=${t##*.}
    c=${s:10:1}
    if [ "$c" = A ]; then c=B; else c=A; fi
    echo "${t%.*}.${s:0:10}$c${s:11}"
}

# agent_pub AGENT OUT: the public key (PEM) of AGENT's SVID key agent-svid-A in its KeyManager:
# Transit's $A1_KEY (the plugin), or the entry of the disk KeyManager's keys.json (--disk)
agent_pub() {
    if [ "$KM" = pkcs11 ]; then
        transit_pub "$A1_KEY" "$2" >/dev/null
    else
        jq -re '.keys["agent-svid-A"]' "$(srv_dir "$1")/data/keys.json" | base64 -d |
            openssl pkey -inform DER -pubout >"$2"
    fi
}

# agent_svid AGENT OUT: the agent's own X509-SVID (the leaf), which spire-agent keeps in
# <data_dir>/agent-data.json ("svid": base64 of PEM certificates; pkg/agent/storage)
agent_svid() {
    jq -re '.svid[0]' "$(srv_dir "$1")/data/agent-data.json" | base64 -d >"$2" &&
        openssl x509 -in "$2" -noout
}

# check_agent_svid AGENT SERVER CAKEYS...: AGENT's own SVID verifies against SERVER's bundle, is
# spiffe://$TD/spire/agent/join_token/<its join token>, holds the public key of the agent's
# KeyManager key (agent_pub), and its issuer is one of the Transit CAKEYS (none: not checked);
# prints its serial and issuer
check_agent_svid() {
    local a=$1 server=$2 d h k id
    shift 2
    d=$VTP_TMP/$a-agent-svid
    rm -rf "$d" && mkdir -p "$d"
    agent_svid "$a" "$d/svid.pem" || { echo "no agent SVID in $(srv_dir "$a")/data/agent-data.json"; return 1; }
    srv "$server" bundle show >"$d/bundle.pem" || return 1
    h=$(openssl verify -CAfile "$d/bundle.pem" "$d/svid.pem" 2>&1) || { echo "$h"; return 1; }
    id="spiffe://$TD/spire/agent/join_token/$(cat "$(srv_dir "$a")/join-token")"
    openssl x509 -in "$d/svid.pem" -noout -ext subjectAltName | grep -qxE " *URI:$id" ||
        { echo "the agent SVID is not for $id:"; openssl x509 -in "$d/svid.pem" -noout -ext subjectAltName; return 1; }
    agent_pub "$a" "$d/key.pem" || { echo "cannot read the public key of $a's agent-svid-A"; return 1; }
    [ "$(cert_pub_hash "$d/svid.pem")" = "$(pub_hash <"$d/key.pem")" ] ||
        { echo "the agent SVID's public key is not that of $a's agent-svid-A ($A1_KEY):"
          openssl x509 -in "$d/svid.pem" -noout -pubkey; cat "$d/key.pem"; return 1; }
    h=$(svid_issuer "$d/svid.pem" "$d/bundle.pem") || { echo "$h"; return 1; }
    if [ $# -gt 0 ]; then
        k=$(key_with_pub "$h" "$@") || { echo "the agent SVID's issuer key is none of the Transit keys $*"; return 1; }
        h=$k
    fi
    echo "$(openssl x509 -in "$d/svid.pem" -noout -serial), issuer $h"
}


# ---- server s1: ec-p256, key_identifier_file ----
if [ "$KM" = pkcs11 ]; then
    S1_PDATA="            pin_env = \"SPIRE_PKCS11_PIN\"
            key_identifier_file = \"$(srv_dir s1)/data/pkcs11-key-id\"
            disposal_grace_period = \"1s\""
fi
srv_config s1 ec-p256 "" "${S1_PDATA:-}"
check_here "spire-server s1 (ca_key_type ec-p256, KeyManager $KM) starts and is healthy" srv_start s1
if [ "$KM" = pkcs11 ]; then
    ID1=$(cat "$(srv_dir s1)/data/pkcs11-key-id" 2>/dev/null || true)
    vtp_check "s1 wrote a generated key identifier ($ID1) to key_identifier_file" \
        grep -Eq '^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$' <<<"$ID1"
    NS1="$ID1."
    vtp_check "Transit has s1's x509-CA-A and JWT-Signer-A as $MODPREFIX$NS1<id>.<16 hex>" \
        expect_keys "$NS1" x509-CA-A JWT-Signer-A
    S1_CA_A=$(key_named "$NS1" x509-CA-A)
    S1_JWT_A=$(key_named "$NS1" JWT-Signer-A)
    vtp_check "s1's Transit keys are ecdsa-p256" check_types ecdsa-p256 "$S1_CA_A" "$S1_JWT_A"
    vtp_check "s1's bundle CA public key is Transit's $S1_CA_A" check_bundle_ca s1 "$S1_CA_A"
fi

# ---- server s2: rsa-2048, key_identifier_value, plugin key_prefix, ca_ttl 60s ----
if [ "$KM" = pkcs11 ]; then
    echo 1234 >"$VTP_TMP/pin"
    S2_PDATA="            pin_file = \"$VTP_TMP/pin\"
            key_identifier_value = \"srv2\"
            key_prefix = \"p_\""
    NS2="p_srv2."
fi
S2_EXTRA='    ca_ttl = "60s"
    default_x509_svid_ttl = "10s"
    default_jwt_svid_ttl = "10s"'
srv_config s2 rsa-2048 "$S2_EXTRA" "${S2_PDATA:-}"
S2_START=$(date +%s)
check_here "spire-server s2 (ca_key_type rsa-2048, ca_ttl 60s) on the same mount starts and is healthy" \
    srv_start s2
if [ "$KM" = pkcs11 ]; then
    vtp_check "Transit has s2's x509-CA-A and JWT-Signer-A under its own $MODPREFIX$NS2" \
        expect_keys "$NS2" x509-CA-A JWT-Signer-A
    S2_CA_A=$(key_named "$NS2" x509-CA-A)
    S2_JWT_A=$(key_named "$NS2" JWT-Signer-A)
    vtp_check "s2's Transit keys are rsa-2048" check_types rsa-2048 "$S2_CA_A" "$S2_JWT_A"
    vtp_check "s2's bundle CA public key is Transit's $S2_CA_A" check_bundle_ca s2 "$S2_CA_A"
    vtp_check "s1's keys are unchanged by s2's start" expect_keys "$NS1" x509-CA-A JWT-Signer-A
fi

# The module shows each of these Transit keys as a public key object whose CKA_LABEL and CKA_ID
# are the key name less the slot's key_prefix, as the plugin's spec says.
p11_objects() {
    local listing k label id
    listing=$(VAULT_TOKEN='' VAULT_TRANSIT_PKCS11_CONFIG="$VTP_TMP/spire-module.conf" \
        vtp_p11 --module "$VTP_MODULE" --token-label "SPIRE CA" -O --type pubkey 2>&1) ||
        { echo "$listing"; return 1; }
    for k in $(transit_keys); do
        label=${k#"$MODPREFIX"}
        label=${label%.p11-[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]} # no KV
        id=$(printf %s "$label" | od -An -tx1 | tr -d ' \n')
        vtp_listing_has "$listing" "Public Key" "$label" "$id" ||
            { echo "no public key object with CKA_LABEL and CKA_ID $label in:"; echo "$listing"; return 1; }
    done
}
if [ "$KM" = pkcs11 ]; then
    vtp_check "pkcs11-tool: each key is a public key object with CKA_LABEL = CKA_ID = its name (less .p11-<8 hex>)" \
        p11_objects
fi

# ---- agents: a1 with the plugin (--disk: SPIRE's disk KeyManager), a2 with SPIRE's memory one ----
A1_KM=$KM
check_here "agent a1 (KeyManager $A1_KM${T:+, plugin_args -agent}) attests to s1 with a join token; entry for uid $UID_NOW" \
    agent_start a1 s1 "$A1_KM"
check_here "agent a2 (KeyManager memory) attests to s2 with a join token; entry for uid $UID_NOW" \
    agent_start a2 s2 memory
A1_KEY=
if [ "$KM" = pkcs11 ]; then
    IDA1=$(cat "$(srv_dir a1)/data/pkcs11-key-id" 2>/dev/null || true)
    new_uuid() {
        grep -Eq '^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$' <<<"$IDA1" &&
            [ "$IDA1" != "$ID1" ]
    }
    vtp_check "a1 wrote a generated key identifier ($IDA1), not s1's, to its key_identifier_file" new_uuid
    NSA1="$IDA1."
    a1_keys() { # one key under $AGPREFIX: a1's agent-svid-A
        KPFX=$AGPREFIX expect_keys "$NSA1" agent-svid-A || return 1
        [ "$(KPFX=$AGPREFIX transit_keys | grep -c .)" = 1 ] ||
            { echo "other keys under $AGPREFIX:"; KPFX=$AGPREFIX transit_keys; return 1; }
    }
    vtp_check "Transit has a1's SVID key as $AGPREFIX${NSA1}agent-svid-A.<16 hex>, the only key under $AGPREFIX" \
        a1_keys
    A1_KEY=$(KPFX=$AGPREFIX key_named "$NSA1" agent-svid-A)
    vtp_check "a1's Transit key is ecdsa-p256" check_types ecdsa-p256 "$A1_KEY"
    vault_apart() { # a1's key is in no server's namespace; each token reaches its own keys only
        local st
        case $A1_KEY in "$MODPREFIX"* | "$MODPREFIX$NS1"* | "$MODPREFIX$NS2"*)
            echo "$A1_KEY is under the servers' prefix $MODPREFIX"; return 1 ;;
        esac
        st=$(VAULT_TOKEN=$(cat "$VTP_TMP/agent-module-token") vtp_api_status GET "$MOUNT/keys/$A1_KEY")
        [ "$st" = 200 ] || { echo "a1's token reading $A1_KEY: HTTP $st, not 200"; return 1; }
        st=$(VAULT_TOKEN=$(cat "$VTP_TMP/agent-module-token") vtp_api_status GET "$MOUNT/keys/$S1_CA_A")
        [ "$st" = 403 ] || { echo "a1's token reading s1's $S1_CA_A: HTTP $st, not 403"; return 1; }
        st=$(VAULT_TOKEN=$(cat "$VTP_TMP/spire-module-token") vtp_api_status GET "$MOUNT/keys/$A1_KEY")
        [ "$st" = 403 ] || { echo "the servers' token reading $A1_KEY: HTTP $st, not 403"; return 1; }
    }
    vtp_check "a1's key is outside the servers' namespaces and tokens (403 both ways)" vault_apart
fi
A1_KEY_DESC="Transit's $A1_KEY; signed by s1's Transit CA key"
[ -n "$T" ] || A1_KEY_DESC="agent-svid-A in its disk KeyManager"
vtp_check "a1's own X509-SVID (agent-data.json) verifies against s1's bundle; its public key is $A1_KEY_DESC" \
    check_agent_svid a1 s1 ${S1_CA_A:+"$S1_CA_A"}
vtp_say "  $VTP_LAST_OUT"
A1_SVID_SERIAL=${VTP_LAST_OUT%%,*}

# ---- SVIDs from s1 ----
vtp_check "a1 fetches an X509-SVID (spire-agent api fetch x509)" fetch_x509 a1 "$VTP_TMP/a1-x509"
vtp_check "openssl verifies s1's X509-SVID against the bundle${T:+; signed by a Transit CA key of s1}" \
    check_svid "$VTP_TMP/a1-x509" ${S1_CA_A:+"$S1_CA_A"}
vtp_say "  $(tail -n 1 <<<"$VTP_LAST_OUT")"
vtp_check "a1 fetches a JWT-SVID" fetch_jwt a1 e2e-aud
JWT1=$(tail -n 1 <<<"$VTP_LAST_OUT")
vtp_check "spire-agent api validate jwt accepts it" validate_jwt a1 e2e-aud "$JWT1"
vtp_check_fails "spire-agent api validate jwt rejects it with a changed signature" \
    validate_jwt a1 e2e-aud "$(tamper "$JWT1")"
if [ "$KM" = pkcs11 ]; then
    vtp_check "the JWT-SVID's JWKS key is Transit's $S1_JWT_A and openssl verifies it with that key" \
        jwt_signed_by s1 "$JWT1" "$S1_JWT_A"
fi

# ---- SVIDs from s2 (RSA) ----
vtp_check "a2 fetches an X509-SVID" fetch_x509 a2 "$VTP_TMP/a2-x509"
S2_CAS=()
[ "$KM" != pkcs11 ] || mapfile -t S2_CAS < <(transit_keys "${NS2}x509-CA-")
vtp_check "openssl verifies s2's RSA X509-SVID against the bundle${T:+; signed by a Transit CA key of s2}" \
    check_svid "$VTP_TMP/a2-x509" "${S2_CAS[@]}"
vtp_say "  $(tail -n 1 <<<"$VTP_LAST_OUT")"
A2_ISSUER_BEFORE=$(svid_issuer "$VTP_TMP/a2-x509/svid.0.pem" "$VTP_TMP/a2-x509/bundle.0.pem")
vtp_check "a2 fetches a JWT-SVID" fetch_jwt a2 e2e-aud
JWT2=$(tail -n 1 <<<"$VTP_LAST_OUT")
vtp_check "spire-agent api validate jwt accepts s2's RSA JWT-SVID" validate_jwt a2 e2e-aud "$JWT2"
if [ "$KM" = pkcs11 ]; then
    mapfile -t S2_JWTS < <(transit_keys "${NS2}JWT-Signer-")
    vtp_check "openssl verifies s2's JWT-SVID with a Transit JWT-Signer key of s2" \
        jwt_signed_by s2 "$JWT2" "${S2_JWTS[@]}"
fi

# ---- rotation on s2 ----
# Within ~30-40 s of its start s2 prepares B (x509-CA-B, JWT-Signer-B), activates it at ~50-60 s,
# and at ~60-70 s prepares A again: a new generation, and the old A is destroyed.
rotated_b() {
    if [ "$KM" = pkcs11 ]; then
        expect_keys "$NS2" x509-CA-A JWT-Signer-A x509-CA-B JWT-Signer-B >/dev/null
    else
        [ "$(srv s2 bundle show | grep -c 'BEGIN CERTIFICATE')" -ge 2 ]
    fi
}
rotated_a() {
    if [ "$KM" = pkcs11 ]; then
        expect_keys "$NS2" x509-CA-A JWT-Signer-A x509-CA-B JWT-Signer-B >/dev/null &&
            [ "$(key_named "$NS2" x509-CA-A)" != "$S2_CA_A" ] &&
            [ "$(key_named "$NS2" JWT-Signer-A)" != "$S2_JWT_A" ]
    else
        [ "$(srv s2 bundle show | grep -c 'BEGIN CERTIFICATE')" -ge 3 ]
    fi
}
wait_until() { # wait_until DEADLINE CMD...: run CMD every 2 s until it succeeds or DEADLINE
    local deadline=$1
    shift
    while ! "$@"; do
        if [ "$(date +%s)" -ge "$deadline" ]; then
            return 1
        fi
        sleep 2
    done
}
wait_for() { # wait_for SECONDS_AFTER_S2_START CMD...
    local deadline=$((S2_START + $1)) rc=0
    shift
    while ! "$@" >/dev/null 2>&1; do
        if [ "$(date +%s)" -ge "$deadline" ]; then
            rc=1
            break
        fi
        sleep 2
    done
    "$@" # once more, for its output
    return "$rc"
}
vtp_check "s2 prepares its next CA and JWT key (x509-CA-B, JWT-Signer-B) within 80s" wait_for 80 rotated_b
vtp_say "  after $(($(date +%s) - S2_START))s"
if [ "$KM" = pkcs11 ]; then
    mapfile -t S2_B < <(transit_keys "$NS2" | grep -- '-B\.')
    vtp_check "s2's B keys are rsa-2048" check_types rsa-2048 "${S2_B[@]}"
fi
vtp_check "s2 replaces A with a new generation within 120s" wait_for 120 rotated_a
vtp_say "  after $(($(date +%s) - S2_START))s"
if [ "$KM" = pkcs11 ]; then
    gone() { ! transit_keys | grep -qxF -e "$S2_CA_A" -e "$S2_JWT_A"; }
    vtp_check "the replaced keys $S2_CA_A and $S2_JWT_A are destroyed in Transit" gone
    vtp_check "s1's keys are untouched by s2's rotation" expect_keys "$NS1" x509-CA-A JWT-Signer-A
fi

# After rotation: a fresh SVID from the agent, signed by the new active CA (B), which is a
# Transit key that still exists.
new_issuer() {
    fetch_x509 a2 "$VTP_TMP/a2-x509-rot" >/dev/null || return 1
    [ "$(svid_issuer "$VTP_TMP/a2-x509-rot/svid.0.pem" "$VTP_TMP/a2-x509-rot/bundle.0.pem")" != \
        "$A2_ISSUER_BEFORE" ]
}
vtp_check "after rotation a2 serves an X509-SVID from a new CA (within 30s)" \
    wait_until $(($(date +%s) + 30)) new_issuer
S2_CAS=()
[ "$KM" != pkcs11 ] || mapfile -t S2_CAS < <(transit_keys "${NS2}x509-CA-")
vtp_check "openssl verifies it against the new bundle${T:+; signed by a current Transit CA key of s2}" \
    check_svid "$VTP_TMP/a2-x509-rot" "${S2_CAS[@]}"
vtp_say "  $(tail -n 1 <<<"$VTP_LAST_OUT"); bundle holds $(grep -c 'BEGIN CERT' "$VTP_TMP/a2-x509-rot/bundle.0.pem") CA certificates"
vtp_check "a2 fetches a JWT-SVID after rotation" fetch_jwt a2 e2e-aud
JWT3=$(tail -n 1 <<<"$VTP_LAST_OUT")
vtp_check "spire-agent api validate jwt accepts it" validate_jwt a2 e2e-aud "$JWT3"
if [ "$KM" = pkcs11 ]; then
    mapfile -t S2_JWTS < <(transit_keys "${NS2}JWT-Signer-")
    vtp_check "openssl verifies it with one of s2's current Transit JWT-Signer keys" \
        jwt_signed_by s2 "$JWT3" "${S2_JWTS[@]}"
    vtp_say "  signed by $VTP_LAST_OUT"
fi

# ---- restart of s1, with s2 stopped and its keys frozen ----
srv_stop a2 || true
check_here "stop s2 (SIGTERM): the server and the plugin exit cleanly" clean_stop s2
KEYS_BEFORE=
if [ "$KM" = pkcs11 ]; then
    KEYS_BEFORE=$(transit_keys)
fi
check_here "stop s1 (SIGTERM): the server and the plugin exit cleanly" clean_stop s1
check_here "spire-server s1 restarts and is healthy" srv_start s1
if [ "$KM" = pkcs11 ]; then
    same_keys() {
        local now
        now=$(transit_keys)
        [ "$now" = "$KEYS_BEFORE" ] || { diff <(echo "$KEYS_BEFORE") <(echo "$now"); return 1; }
    }
    vtp_check "the restart created no Transit key and destroyed none, s2's included" same_keys
    vtp_check "s1's bundle CA public key is still Transit's $S1_CA_A" check_bundle_ca s1 "$S1_CA_A"
fi
mint_x509() {
    local d=$VTP_TMP/s1-mint
    rm -rf "$d" && mkdir -p "$d"
    srv s1 x509 mint -spiffeID "spiffe://$TD/workload" -write "$d" >/dev/null || return 1
    mv "$d/svid.pem" "$d/svid.0.pem" && mv "$d/bundle.pem" "$d/bundle.0.pem"
    check_svid "$d" ${S1_CA_A:+"$S1_CA_A"}
}
vtp_check "after the restart s1 mints an X509-SVID that openssl verifies${T:+; signed by its Transit CA key}" \
    mint_x509
if [ "$KM" = pkcs11 ]; then
    JWT4=$(srv s1 jwt mint -spiffeID "spiffe://$TD/workload" -audience e2e-aud) ||
        vtp_fail "spire-server jwt mint failed after the restart: $JWT4"
    vtp_check "after the restart s1 mints a JWT-SVID that openssl verifies with Transit's $S1_JWT_A" \
        jwt_signed_by s1 "$JWT4" "$S1_JWT_A"
fi
vtp_check "a1 still fetches an X509-SVID that verifies" fetch_x509 a1 "$VTP_TMP/a1-x509-2"
vtp_check "openssl verifies it against the bundle" check_svid "$VTP_TMP/a1-x509-2" ${S1_CA_A:+"$S1_CA_A"}

# ---- restart of a1: its SVID from agent-data.json, its key from its KeyManager ----
# With no join token (the one it had is used up) a1 can only come back with the SVID it keeps
# and the key its KeyManager finds for it (pkg/agent/attestor/node: "SVID loaded").
A1_LOG=$(srv_dir a1)/agent.log
A1_LOG_LINES=$(wc -l <"$A1_LOG")
A1_KEYS_BEFORE=
[ "$KM" != pkcs11 ] || A1_KEYS_BEFORE=$(KPFX=$AGPREFIX transit_keys)
check_here "stop a1 (SIGTERM): the agent and the plugin exit cleanly" clean_stop a1
check_here "a1 restarts with no join token and is healthy" agent_run a1
a1_reloaded() {
    local log out
    log=$(tail -n +"$((A1_LOG_LINES + 1))" "$A1_LOG")
    grep -q 'msg="SVID loaded"' <<<"$log" || { echo "no \"SVID loaded\" in a1's log since its restart"; return 1; }
    if grep -E 'Generating new keypair|Node attestation was successful' <<<"$log"; then
        return 1
    fi
    out=$(check_agent_svid a1 s1 ${S1_CA_A:+"$S1_CA_A"}) || { echo "$out"; return 1; }
    [ "${out%%,*}" = "$A1_SVID_SERIAL" ] || { echo "a1's SVID is now $out, not $A1_SVID_SERIAL"; return 1; }
    echo "$out"
}
vtp_check "a1 loaded its SVID ($A1_SVID_SERIAL) and found its key; no new key pair, no attestation" \
    a1_reloaded
if [ "$KM" = pkcs11 ]; then
    a1_same_keys() {
        local now
        now=$(KPFX=$AGPREFIX transit_keys)
        [ "$now" = "$A1_KEYS_BEFORE" ] || { diff <(echo "$A1_KEYS_BEFORE") <(echo "$now"); return 1; }
    }
    vtp_check "a1's restart created no Transit key and destroyed none ($A1_KEY)" a1_same_keys
fi
vtp_check "a1 fetches an X509-SVID after its restart" fetch_x509 a1 "$VTP_TMP/a1-x509-3"
vtp_check "openssl verifies it against the bundle${T:+; signed by a Transit CA key of s1}" \
    check_svid "$VTP_TMP/a1-x509-3" ${S1_CA_A:+"$S1_CA_A"}
vtp_check "a1 fetches a JWT-SVID after its restart" fetch_jwt a1 e2e-aud
vtp_check "spire-agent api validate jwt accepts it" validate_jwt a1 e2e-aud "$(tail -n 1 <<<"$VTP_LAST_OUT")"

if [ "$KM" = pkcs11 ]; then
    strays() {
        local s
        s=$(transit_keys | grep -v -e "^$MODPREFIX$NS1" -e "^$MODPREFIX$NS2" || true)
        [ -z "$s" ] || { echo "keys outside both namespaces: $s"; return 1; }
        echo "$(transit_keys | grep -c .) keys: s1 $(transit_keys "$NS1" | grep -c .), s2 $(transit_keys "$NS2" | grep -c .)"
    }
    vtp_check "every Transit key of the servers' prefix belongs to s1's or s2's namespace" strays
    vtp_say "  $VTP_LAST_OUT"
    vtp_check "the agent prefix $AGPREFIX holds a1's $A1_KEY and nothing else" a1_keys
fi

# ---- the end: everything stopped, then the run's Transit keys deleted ----
for f in "$VTP_TMP"/*/pid; do
    if [ -s "$f" ]; then
        srv_stop "$(basename "$(dirname "$f")")" || true
    fi
done
if [ "$KM" = pkcs11 ]; then
    delete_run_keys() {
        local p left
        for p in "$MODPREFIX" "$AGPREFIX"; do
            vtp_cleanup_prefix "$p" || return 1
        done
        left=$(vtp_list "$MOUNT/keys" | grep -e "^$MODPREFIX" -e "^$AGPREFIX" || true)
        [ -z "$left" ] || { echo "still in Transit:"; echo "$left"; return 1; }
    }
    N_KEYS=$(vtp_list "$MOUNT/keys" | grep -c -e "^$MODPREFIX" -e "^$AGPREFIX" || true)
    vtp_check "the run's $N_KEYS Transit keys (the servers' and a1's) are deleted" delete_run_keys
    MODPREFIX='' AGPREFIX='' # nothing left for cleanup to delete
fi
vtp_say "PASS"
