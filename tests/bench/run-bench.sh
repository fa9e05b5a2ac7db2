#!/usr/bin/env bash
# tests/bench/run-bench.sh: reproduces the table in docs/performance.md.
#
#   tests/bench/run-bench.sh [--builddir DIR] [--seconds S] [--warmup S] [--threads "1 4 16 64"]
#                            [--modes "module nobatch direct softhsm"] [--verify N]
#                            [--json-out FILE]
#
# Signs with ECDSA P-256 (CKM_ECDSA over a SHA-256 digest) and RSA-2048 PSS (CKM_RSA_PKCS_PSS,
# SHA-256, MGF1-SHA-256, salt 32) at each thread count, three ways:
#   module       p11bench --module vault-transit-pkcs11.so (Transit through the module)
#   nobatch      the same with `[module] batching = false` (no group commit)
#   direct       p11bench --direct-http (one Transit request per signature, keep-alive)
#   softhsm      p11bench --module libsofthsm2.so (local software keys, for scale)
# and prints a markdown table: ops/s, p50 and p99 latency (ms), and module/direct ratios.
#
# Vault: the server named by VAULT_ADDR and VAULT_TOKEN when both are set (Transit must be
# mounted at $VTP_TEST_MOUNT, default transit; keys are created with a random prefix and deleted
# afterwards), else a private OpenBao dev server on a free loopback port (tests/lib/bao.sh).
# Needs: a built tree (make), jq, curl; softhsm2-util and pkcs11-tool for the softhsm2 column.
set -euo pipefail

VTP_SRCDIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
builddir=${VTP_BUILDDIR:-$VTP_SRCDIR}
seconds=10
warmup=2
threads="1 4 16 64"
verify=100
json_out=
modes="module nobatch direct softhsm"

while [ $# -gt 0 ]; do
    case $1 in
    --builddir) builddir=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --verify) verify=$2; shift 2 ;;
    --modes) modes=$2; shift 2 ;;
    --json-out) json_out=$2; shift 2 ;;
    -h | --help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "run-bench: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
builddir=$(cd "$builddir" && pwd)
VTP_BUILDDIR=$builddir
export VTP_SRCDIR VTP_BUILDDIR

bench=$builddir/tests/bench/p11bench
module=$builddir/src/.libs/vault-transit-pkcs11.so
softhsm=${VTP_SOFTHSM_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
for f in "$bench" "$module"; do
    [ -e "$f" ] || { echo "run-bench: $f is missing: build first (make)" >&2; exit 2; }
done
for t in jq curl; do
    command -v "$t" >/dev/null || { echo "run-bench: $t is missing" >&2; exit 2; }
done
have_softhsm=yes
if ! command -v softhsm2-util >/dev/null || ! command -v pkcs11-tool >/dev/null ||
    [ ! -e "$softhsm" ]; then
    echo "run-bench: softhsm2-util, pkcs11-tool or $softhsm missing: no softhsm2 column" >&2
    have_softhsm=no
fi

# shellcheck source=tests/lib/bao.sh
. "$VTP_SRCDIR/tests/lib/bao.sh"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/vtp-bench.XXXXXX")
started=no
prefix=
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$prefix" ] && [ "$started" = no ]; then
        vtp_cleanup_prefix "$prefix" || echo "run-bench: could not delete keys $prefix*" >&2
    fi
    [ "$started" = yes ] && vtp_bao_stop
    rm -rf "$tmp"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ -n "${VAULT_ADDR:-}" ] && [ -n "${VAULT_TOKEN:-}" ]; then
    echo "run-bench: using the Vault at $VAULT_ADDR" >&2
    mounts=$(vtp_api GET sys/mounts)
    if ! jq -e --arg m "$VTP_TEST_MOUNT/" '(.data // .) | has($m)' >/dev/null <<<"$mounts"; then
        vtp_api POST "sys/mounts/$VTP_TEST_MOUNT" '{"type":"transit"}' >/dev/null
    fi
else
    vtp_bao_start "$tmp/bao"
    started=yes
    echo "run-bench: started OpenBao dev server $VAULT_ADDR ($("$VTP_BAO" version | head -n 1))" >&2
    vtp_api POST "sys/mounts/$VTP_TEST_MOUNT" '{"type":"transit"}' >/dev/null
fi
prefix="bench-$(vtp_random_hex 4)-"
vtp_api POST "$VTP_TEST_MOUNT/keys/${prefix}ec" '{"type":"ecdsa-p256"}' >/dev/null
vtp_api POST "$VTP_TEST_MOUNT/keys/${prefix}rsa" '{"type":"rsa-2048"}' >/dev/null

# The module sees only this run's keys; their labels are the names minus the prefix.
cat >"$tmp/module.conf" <<EOF
[slot bench]
mount = $VTP_TEST_MOUNT
key_prefix = $prefix
label = bench
EOF
{
    cat "$tmp/module.conf"
    printf '\n[module]\nbatching = false\n'
} >"$tmp/module-nobatch.conf"
chmod 600 "$tmp/module.conf" "$tmp/module-nobatch.conf"
unset VAULT_TRANSIT_PKCS11_DEBUG

if [ "$have_softhsm" = yes ]; then
    mkdir -p "$tmp/softhsm"
    printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
        "$tmp/softhsm" >"$tmp/softhsm2.conf"
    export SOFTHSM2_CONF=$tmp/softhsm2.conf
    softhsm2-util --init-token --free --label bench --pin 1234 --so-pin 5678 >/dev/null
    pkcs11-tool --module "$softhsm" --token-label bench --login --pin 1234 --keypairgen \
        --key-type EC:prime256v1 --label ec --id 01 >/dev/null
    pkcs11-tool --module "$softhsm" --token-label bench --login --pin 1234 --keypairgen \
        --key-type rsa:2048 --label rsa --id 02 >/dev/null
fi

results=$tmp/results.jsonl
: >"$results"
common=(--seconds "$seconds" --warmup "$warmup" --verify "$verify" --json)

# run ALG MECH KEY THREADS MODE: one p11bench run, its JSON tagged with alg and mode.
run() {
    local alg=$1 mech=$2 key=$3 n=$4 mode=$5 out
    local -a args
    local conf=$tmp/module.conf
    case $mode in
    module) args=(--module "$module" --label "$key") ;;
    nobatch)
        args=(--module "$module" --label "$key")
        conf=$tmp/module-nobatch.conf
        ;;
    direct) args=(--direct-http --mount "$VTP_TEST_MOUNT" --key "$prefix$key") ;;
    softhsm) args=(--module "$softhsm" --token bench --pin 1234 --label "$key") ;;
    *) echo "run-bench: unknown mode $mode" >&2; exit 2 ;;
    esac
    echo "run-bench: $alg, $n thread(s), $mode" >&2
    if ! out=$(VAULT_TRANSIT_PKCS11_CONFIG=$conf "$bench" "${args[@]}" --mech "$mech" \
        --threads "$n" "${common[@]}"); then
        echo "run-bench: p11bench failed ($alg, $n threads, $mode): ${out:-no output}" >&2
        exit 1
    fi
    jq -c --arg alg "$alg" --arg m "$mode" '. + {alg: $alg, run: $m}' <<<"$out" >>"$results"
}

if [ "$have_softhsm" = no ]; then
    modes=$(tr ' ' '\n' <<<"$modes" | grep -vx softhsm | tr '\n' ' ')
fi
echo "run-bench: load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for spec in "ECDSA P-256:ecdsa:ec" "RSA-2048 PSS:rsa-pss:rsa"; do
    IFS=: read -r alg mech key <<<"$spec"
    for n in $threads; do
        for mode in $modes; do
            run "$alg" "$mech" "$key" "$n" "$mode"
        done
    done
done
echo "run-bench: load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
[ -n "$json_out" ] && cp "$results" "$json_out"

# The table: one row per algorithm and thread count, three columns per mode, then the ratios.
jq -rs --arg modes "$modes" '
    def r(x): if x == null then "-" else (x * 10 | round / 10 | tostring) end;
    def ms(x): if x == null then "-" else
        (if x < 1 then (x * 1000 | round / 1000) else (x * 100 | round / 100) end | tostring) end;
    def ratio(a; b): if a == null or b == null or b == 0 then "-"
        else ((a / b * 100 | round / 100 | tostring) + "x") end;
    {module: "Module", nobatch: "Module, batching off", direct: "Direct HTTP",
     softhsm: "softhsm2"} as $names |
    ($modes | split(" ") | map(select(. != ""))) as $ms |
    group_by(.alg, .threads) | sort_by(.[0].alg != "ECDSA P-256", .[0].threads) |
    ("| Key, mechanism | Threads | "
     + ($ms | map("\($names[.]) ops/s | p50 ms | p99 ms") | join(" | "))
     + " | Module/direct ops/s | Module/direct p50 |"),
    ("|---|--:|" + ($ms | map("--:|--:|--:|") | join("")) + "--:|--:|"),
    (.[] | (map({key: .run, value: .}) | from_entries) as $r |
        "| \(.[0].alg) | \(.[0].threads) | "
        + ($ms | map($r[.] as $x | "\(r($x.ops_per_sec)) | \(ms($x.latency_ms.p50))"
                    + " | \(ms($x.latency_ms.p99))") | join(" | "))
        + " | \(ratio($r.module.ops_per_sec; $r.direct.ops_per_sec))"
        + " | \(ratio($r.module.latency_ms.p50; $r.direct.latency_ms.p50)) |")
' "$results"
