#!/usr/bin/env bash
# tests/bench/spire-bench.sh: how many X509-SVIDs per second spire-server v1.13.3 mints through
# its server API with concurrent callers, for the SPIRE-level table in docs/performance.md:
#
#   tests/bench/spire-bench.sh [--builddir DIR] [--spire-bin DIR] [--seconds S] [--warmup S]
#                              [--callers "1 16 64"] [--kms "disk softhsm module"] [--verify N]
#                              [--json-out FILE] [--smoke]
#
# One spire-server per KeyManager, the three side by side, the same configuration but for the
# KeyManager (trust domain example.org, ca_key_type ec-p256, default CA and SVID TTLs, sqlite3
# datastore, log_level INFO, API socket, all in a scratch dir):
#   disk      SPIRE's built-in disk KeyManager (keys in a JSON file, signing in spire-server)
#   softhsm   spire-keymanager-pkcs11 over SoftHSM2 (a fresh token in the scratch dir)
#   module    spire-keymanager-pkcs11 over vault-transit-pkcs11.so, its keys in OpenBao Transit
# For each caller count N, against each server in turn (the others idle), tests/bench/spire-mint
# (Go, spire-api-sdk): N callers, each on its own connection to the server's API socket (a
# local caller, whom SPIRE lets mint), call svid/v1 MintX509SVID in a loop with a fresh P-256
# CSR each; --warmup seconds, then --seconds measured. Every caller's first SVID and each
# --verify'th after it are checked against the server's bundle (chain, SPIFFE ID, the CSR's
# key); for the plugin the CA key that signed them must be a key of the PKCS#11 token
# (pkcs11-tool lists it). Prints the commit, the load average before and after, and a markdown
# table: SVIDs/s, p50 and p99 latency (ms) of one MintX509SVID call, the rate as a share of the
# disk KeyManager's at the same caller count, and CPU time per SVID minted (warm-up included)
# of spire-server with its plugin process, of OpenBao (when its process is known: ours, or
# run-test's), and of the callers. Exit status 1 when a mint failed, a checked SVID did not
# verify, or a server did not start or stop.
#
# --smoke: --seconds 2 --warmup 0.5 --callers 4 --verify 5, and spire-mint's go test first
# (about 20 s once everything is built; tests/bench/spire-smoke.sh runs it under
# tests/lib/run-test in `make check`).
# Defaults: --seconds 10 --warmup 2 --callers "1 16 64" --verify 50: about 2.5 minutes.
#
# Built here when missing: SPIRE (tests/spire/build-spire.sh into <builddir>/spire-v1.13.3, ~35 s
# with Go's caches warm, ~6 minutes cold; --spire-bin DIR or VTP_SPIRE_BIN=DIR use the
# spire-server in DIR instead, read-only), spire-mint (go build into <builddir>/tests/bench/).
# The plugin (<builddir>/spire/spire-keymanager-pkcs11, or VTP_SPIRE_PLUGIN) and the module come
# from `make`. Vault: VAULT_ADDR and VAULT_TOKEN when both are set (Transit at $VTP_TEST_MOUNT,
# default transit; the keys get a random prefix, or $VTP_TEST_PREFIX, and are deleted at the
# end), else a private OpenBao dev server (tests/lib/bao.sh). Needs Go >= 1.25.3 for SPIRE (1.24
# for spire-mint), jq, curl, openssl, python3, setsid; softhsm2-util and pkcs11-tool.
set -euo pipefail

VTP_SRCDIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
builddir=${VTP_BUILDDIR:-$VTP_SRCDIR}
spire_bin=${VTP_SPIRE_BIN:-}
seconds=10
warmup=2
callers="1 16 64"
kms="disk softhsm module"
verify=50
json_out=
smoke=no

while [ $# -gt 0 ]; do
    case $1 in
    --builddir) builddir=$2; shift 2 ;;
    --spire-bin) spire_bin=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --callers) callers=$2; shift 2 ;;
    --kms) kms=$2; shift 2 ;;
    --verify) verify=$2; shift 2 ;;
    --json-out) json_out=$2; shift 2 ;;
    --smoke) seconds=2 warmup=0.5 callers=4 verify=5 smoke=yes; shift ;;
    -h | --help) sed -n '2,40p' "$0"; exit 0 ;;
    *) echo "spire-bench: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
for km in $kms; do
    case $km in disk | softhsm | module) ;; *) echo "spire-bench: unknown KeyManager $km" >&2; exit 2 ;; esac
done
VTP_BUILDDIR=$(cd "$builddir" && pwd)
VTP_MODULE=$(realpath -m "${VTP_MODULE:-$VTP_BUILDDIR/src/.libs/vault-transit-pkcs11.so}")
VTP_SPIRE_BIN=$spire_bin
export VTP_SRCDIR VTP_BUILDDIR VTP_MODULE VTP_SPIRE_BIN

# shellcheck source=tests/lib/common.sh
. "$VTP_SRCDIR/tests/lib/common.sh"
# shellcheck source=tests/spire/lib.sh
. "$VTP_SRCDIR/tests/spire/lib.sh"

vtp_require jq curl openssl python3 setsid timeout sha256sum
[[ " $kms " != *" softhsm "* ]] || vtp_require softhsm2-util pkcs11-tool
[[ " $kms " != *" module "* ]] || vtp_require pkcs11-tool
TD=example.org
MOUNT=${VTP_TEST_MOUNT:-transit}

# ---- what runs: SPIRE, the plugin, the module, spire-mint ----
vtp_spire_find
PLUGIN=$(realpath -m "${VTP_SPIRE_PLUGIN:-$VTP_BUILDDIR/spire/spire-keymanager-pkcs11}")
if [ "$kms" != disk ]; then
    [ -x "$PLUGIN" ] ||
        vtp_skip_or_error "the plugin $PLUGIN is not built (make builds it; VTP_SPIRE_PLUGIN names another)"
    PLUGIN_SUM=$(sha256sum "$PLUGIN" | cut -d' ' -f1)
fi
[[ " $kms " != *" module "* ]] || [ -e "$VTP_MODULE" ] || vtp_fail "module $VTP_MODULE is not built (make)"
vtp_go_find
MINT=$VTP_BUILDDIR/tests/bench/spire-mint/spire-mint
mkdir -p "$(dirname "$MINT")"
in_mint() { cd "$VTP_SRCDIR/tests/bench/spire-mint" && vtp_go "$@"; }
if [ "$smoke" = yes ]; then
    vtp_check "go vet and go test tests/bench/spire-mint" in_mint test -count=1 -vet=all .
fi
vtp_check "go build tests/bench/spire-mint" in_mint build -o "$MINT" .

COMMIT=$(git -C "$VTP_SRCDIR" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ "$COMMIT" != unknown ] && [ -n "$(git -C "$VTP_SRCDIR" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
    COMMIT="$COMMIT (with uncommitted changes)"
fi
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
LOAD_BEFORE=$(loadavg)
STARTED=$(date -u '+%Y-%m-%d %H:%M UTC')
vtp_say "commit $COMMIT, spire-server $SPIRE_VERSION ($SPIRE_BIN), $(nproc) CPUs, load average $LOAD_BEFORE"

# ---- cleanup: the server, the run's Transit keys, our OpenBao ----
OWN_BAO=no
PREFIX=
declare -A PIDS=() # KeyManager -> its spire-server's process group
cleanup() {
    local rc=$? km
    trap - EXIT INT TERM
    for km in "${!PIDS[@]}"; do
        vtp_stop_group "${PIDS[$km]}" || true
        if [ "$rc" != 0 ] && [ -s "$VTP_TMP/$km/server.log" ]; then
            echo "----- the end of $km/server.log -----"
            tail -n 30 "$VTP_TMP/$km/server.log"
        fi
    done
    if [ -n "$PREFIX" ] && [ "$OWN_BAO" = no ]; then
        vtp_cleanup_prefix "$PREFIX" || echo "spire-bench: WARNING: could not delete the Transit keys $PREFIX*" >&2
    fi
    [ "$OWN_BAO" = no ] || vtp_bao_stop
    [ -n "${VTP_TEST_TMP:-}" ] || rm -rf "$VTP_TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- the tokens: SoftHSM2, and a slot of this module over Transit ----
if [[ " $kms " == *" softhsm "* ]]; then
    vtp_softhsm_setup # token "t", PIN 1234; exports SOFTHSM2_CONF for the plugin
fi
echo 1234 >"$VTP_TMP/pin"
if [[ " $kms " == *" module "* ]]; then
    if [ -z "${VAULT_ADDR:-}" ] || [ -z "${VAULT_TOKEN:-}" ]; then
        vtp_bao_start "$VTP_TMP/bao" || vtp_fail "could not start an OpenBao dev server"
        OWN_BAO=yes
    fi
    mounts=$(vtp_api GET sys/mounts) || vtp_fail "cannot read sys/mounts of $VAULT_ADDR"
    if ! jq -e --arg m "$MOUNT/" '(.data // .) | has($m)' >/dev/null <<<"$mounts"; then
        vtp_check "enable Transit at $MOUNT/" vtp_api POST "sys/mounts/$MOUNT" '{"type":"transit"}'
    fi
    PREFIX="${VTP_TEST_PREFIX:-}spirebench-$(vtp_random_hex 4)-"
    (umask 077 && printf '%s\n' "$VAULT_TOKEN" >"$VTP_TMP/vault-token")
    cat >"$VTP_TMP/module.conf" <<EOF
[vault]
address = $VAULT_ADDR
auth = token_file
token_file = $VTP_TMP/vault-token
timeout = 10

[slot spire]
mount = $MOUNT
key_prefix = $PREFIX
label = SPIRE CA
EOF
    chmod 600 "$VTP_TMP/module.conf"
    vtp_say "Vault $VAULT_ADDR (our own dev server: $OWN_BAO), mount $MOUNT, key prefix $PREFIX"
fi

# ---- spire-server ----
# server_config KM DIR: DIR/server.conf, the same for every KeyManager but its KeyManager block
server_config() {
    local km=$1 dir=$2 block
    case $km in
    disk)
        block="KeyManager \"disk\" {
        plugin_data {
            keys_path = \"$dir/data/keys.json\"
        }
    }" ;;
    *)
        local module=$VTP_MODULE label="SPIRE CA"
        [ "$km" != softhsm ] || { module=$VTP_SOFTHSM_MODULE; label=t; }
        block="KeyManager \"pkcs11\" {
        plugin_cmd = \"$PLUGIN\"
        plugin_checksum = \"$PLUGIN_SUM\"
        plugin_data {
            module_path = \"$module\"
            token_label = \"$label\"
            pin_file = \"$VTP_TMP/pin\"
            key_identifier_value = \"bench\"
        }
    }" ;;
    esac
    mkdir -p "$dir/data"
    cat >"$dir/server.conf" <<EOF
server {
    bind_address = "127.0.0.1"
    bind_port = "$(vtp_free_port)"
    socket_path = "$dir/api.sock"
    trust_domain = "$TD"
    data_dir = "$dir/data"
    log_level = "INFO"
    ca_key_type = "ec-p256"
}
plugins {
    DataStore "sql" {
        plugin_data {
            database_type = "sqlite3"
            connection_string = "$dir/data/datastore.sqlite3"
        }
    }
    $block
}
EOF
}

# server_start KM: spire-server with DIR=$VTP_TMP/KM/server.conf in its own process group
# (PIDS[KM]); healthy within 90 s
server_start() {
    local dir=$VTP_TMP/$1 end
    setsid env -u VAULT_TOKEN VAULT_TRANSIT_PKCS11_CONFIG="$VTP_TMP/module.conf" \
        "$SPIRE_BIN/spire-server" run -config "$dir/server.conf" >>"$dir/server.log" 2>&1 </dev/null &
    PIDS[$1]=$!
    end=$(($(date +%s) + 90))
    until timeout 10 "$SPIRE_BIN/spire-server" healthcheck -socketPath "$dir/api.sock" >/dev/null 2>&1; do
        kill -0 "${PIDS[$1]}" 2>/dev/null || { echo "spire-server exited"; return 1; }
        [ "$(date +%s)" -lt "$end" ] || { echo "spire-server is not healthy after 90s"; return 1; }
        sleep 0.5
    done
}

# signer_in_token KM SPKI_SHA256...: each hash is that of an EC public key object of the
# plugin's token (its CA key)
signer_in_token() {
    local km=$1 listing id h hashes=
    shift
    local -a p11=(--module "$VTP_MODULE" --token-label "SPIRE CA")
    [ "$km" != softhsm ] || p11=(--module "$VTP_SOFTHSM_MODULE" --token-label t)
    listing=$(VAULT_TOKEN='' VAULT_TRANSIT_PKCS11_CONFIG="$VTP_TMP/module.conf" \
        vtp_p11 "${p11[@]}" --login --pin 1234 -O --type pubkey 2>&1) || { echo "$listing"; return 1; }
    for id in $(awk '$1 == "ID:" { print $2 }' <<<"$listing"); do
        vtp_ec_spki_from_listing "$listing" "$VTP_TMP/spki.der" "$id" || continue
        hashes+=" $(sha256sum <"$VTP_TMP/spki.der" | cut -d' ' -f1)"
    done
    for h in "$@"; do
        [[ "$hashes " == *" $h "* ]] || { echo "issuer key $h is no key of the token:"; echo "$listing"; return 1; }
    done
    echo "signed by the token's key ${1:0:16}…"
}

# cpu_ticks PGID|-PID...: user+system CPU clock ticks of the live processes of each process
# group PGID and of each process PID (the reaped children of both included)
cpu_ticks() {
    local a pids=()
    for a in "$@"; do
        case $a in
        -*) pids+=("${a#-}") ;;
        *) mapfile -t -O "${#pids[@]}" pids < <(ps -e -o pgid=,pid= | awk -v g="$a" '$1 == g { print $2 }') ;;
        esac
    done
    for a in "${pids[@]}"; do cat "/proc/$a/stat" 2>/dev/null || true; done |
        awk '{ sub(/^.*\) /, ""); t += $12 + $13 + $14 + $15 } END { print t + 0 }'
}
TICK=$(getconf CLK_TCK)
BAO_PID=${VTP_BAO_PID:-}
[ -z "$BAO_PID" ] || kill -0 "$BAO_PID" 2>/dev/null || BAO_PID=

# ---- the runs ----
# The three servers run side by side, idle but for the one measured, and each caller count is
# measured on each KeyManager in turn: a change in the machine's load hits the rows that are
# compared with each other alike.
for km in $kms; do
    server_config "$km" "$VTP_TMP/$km"
    # not in vtp_check's subshell: the server must be this shell's child
    server_start "$km" >"$VTP_TMP/start.out" 2>&1 ||
        vtp_fail "spire-server with KeyManager $km did not start: $(cat "$VTP_TMP/start.out")"
    vtp_say "spire-server with KeyManager $km is healthy"
done
RESULTS=$VTP_TMP/results.jsonl
: >"$RESULTS"
FAILED=0
for n in $callers; do
    for km in $kms; do
        rc=0
        spire0=$(cpu_ticks "${PIDS[$km]}")
        bao0=$(cpu_ticks ${BAO_PID:+"-$BAO_PID"})
        out=$("$MINT" -socket "$VTP_TMP/$km/api.sock" -trust-domain "$TD" -callers "$n" \
            -seconds "$seconds" -warmup "$warmup" -verify "$verify" 2>"$VTP_TMP/mint.err") || rc=$?
        spire_cpu=$((($(cpu_ticks "${PIDS[$km]}") - spire0) * 1000 / TICK))
        bao_cpu=null
        [ -z "$BAO_PID" ] || [ "$km" != module ] || bao_cpu=$((($(cpu_ticks "-$BAO_PID") - bao0) * 1000 / TICK))
        if [ -z "$out" ]; then
            out='{"svids":0,"svids_per_sec":0,"errors":1,"verified":0,"wrong":0,"latency_ms":{}}'
        fi
        out=$(jq -c --arg km "$km" --argjson s "$spire_cpu" --argjson b "$bao_cpu" \
            '{km: $km} + . + {spire_cpu_ms: $s, bao_cpu_ms: $b}' <<<"$out")
        printf '%s\n' "$out" >>"$RESULTS"
        if [ "$rc" != 0 ]; then
            FAILED=1
            printf '%s: FAIL: %s, %s callers: spire-mint exit %s\n' "$VTP_NAME" "$km" "$n" "$rc"
            sed 's/^/  | /' "$VTP_TMP/mint.err"
            continue
        fi
        vtp_say "ok: $km, $n callers: $(jq -r '"\(.svids_per_sec) SVIDs/s, p50 \(.latency_ms.p50) ms, "
            + "p99 \(.latency_ms.p99) ms, \(.verified) checked, 0 errors"' <<<"$out")"
        if [ "$km" != disk ]; then
            mapfile -t issuers < <(jq -r '.issuer_spki_sha256[]' <<<"$out")
            vtp_check "$km, $n callers: the SVIDs' CA key is a key of the token" \
                signer_in_token "$km" "${issuers[@]}"
        fi
    done
    vtp_say "load average after $n callers: $(loadavg)"
done
for km in $kms; do
    vtp_stop_group "${PIDS[$km]}" >"$VTP_TMP/stop.out" ||
        vtp_fail "spire-server ($km) did not stop on SIGTERM: $(cat "$VTP_TMP/stop.out")"
    unset "PIDS[$km]"
done
[ -z "$json_out" ] || cp "$RESULTS" "$json_out"

# ---- the table ----
echo
echo "spire-server $SPIRE_VERSION, commit $COMMIT, $STARTED, $(nproc) CPUs, load average $LOAD_BEFORE before, $(loadavg) after;"
echo "${seconds}s measured after ${warmup}s warm-up per row; every ${verify}th SVID of each caller checked"
echo
echo "| KeyManager | Callers | SVIDs/s | p50 ms | p99 ms | vs disk | CPU ms/SVID: spire-server + plugin | OpenBao | callers |"
echo "|---|--:|--:|--:|--:|--:|--:|--:|--:|"
jq -rs '
    def name: {disk: "disk (SPIRE built-in)", softhsm: "pkcs11 plugin, SoftHSM2",
               module: "pkcs11 plugin, vault-transit-pkcs11 + OpenBao"}[.];
    def per_svid($ms): if $ms == null or (.minted // 0) == 0 then "-"
                       else ($ms / .minted * 1000 | round / 1000 | tostring) end;
    (map(select(.km == "disk")) | map({key: (.callers | tostring), value: .svids_per_sec})
        | from_entries) as $disk
    | .[]
    | "| \(.km | name) | \(.callers) | \(.svids_per_sec) | \(.latency_ms.p50 // "-") | \(.latency_ms.p99 // "-") | "
      + (if ($disk[.callers | tostring] // 0) > 0
         then "\(.svids_per_sec / $disk[.callers | tostring] * 100 | round / 100)x" else "-" end)
      + (if .errors > 0 or .wrong > 0 then " (FAILED: \(.errors) errors, \(.wrong) wrong)" else "" end)
      + " | \(per_svid(.spire_cpu_ms)) | \(per_svid(.bao_cpu_ms)) | \(per_svid(if .client_cpu_sec then .client_cpu_sec * 1000 else null end)) |"' "$RESULTS"
[ "$FAILED" = 0 ] || vtp_fail "a run failed (see above)"
