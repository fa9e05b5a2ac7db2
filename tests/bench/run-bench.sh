#!/usr/bin/env bash
# tests/bench/run-bench.sh: reproduces the tables and the plot in docs/performance.md.
#
#   tests/bench/run-bench.sh [--builddir DIR] [--seconds S] [--warmup S] [--rounds N]
#       [--threads "1 4 16 64"] [--modes "module direct hand softhsm"]
#       [--rsa-modes "module rsasingle direct softhsm"] [--verify N]
#       [--json-out FILE] [--plot FILE.svg] [--baseline MODULE.so] [--from-json FILE]
#
# ECDSA P-256 (CKM_ECDSA over a SHA-256 digest) at each thread count, each way of signing:
#   module    p11bench --module vault-transit-pkcs11.so (Transit through the module, defaults)
#   nobatch   the same with `[module] batching = false` (no group commit)
#   direct    p11bench --direct-http: one Transit request per signature, one keep-alive
#             connection per thread (what a hand-written Transit client does)
#   hand      hand-batched direct HTTP with the same number of signatures outstanding as the
#             module has threads: every schedule of C connections x B signatures per request
#             with C in 1 2 4 and C x B = threads (--connections C --batch B); the best counts
#   softhsm   p11bench --module libsofthsm2.so (local software keys, for scale)
#   baseline  with --baseline: another build of this module (e.g. an older commit's), same
#             config, ECDSA only: the before/after columns
# then RSA-2048 PSS (CKM_RSA_PKCS_PSS, SHA-256, MGF1-SHA-256, salt 32) with --rsa-modes, where
#   rsasingle the module with `[module] batch_rsa = false` (a request per RSA signature)
# Rounds are interleaved (every configuration once, then again) and each figure is the median
# of the rounds (--from-json FILE: no run, the tables and the plot of a run saved with
# --json-out). Prints markdown tables: signatures/s, p50 latency, what a signature cost the
# signing process (CPU us and context switches), the module against direct HTTP and against the
# best hand-batched schedule. With --plot, gnuplot draws ECDSA signatures/s against threads.
#
# Vault: the server named by VAULT_ADDR and VAULT_TOKEN when both are set (Transit must be
# mounted at $VTP_TEST_MOUNT, default transit; keys are created with a random prefix and deleted
# afterwards), else a private OpenBao dev server on a free loopback port (tests/lib/bao.sh).
# Needs: a built tree (make), jq, curl; softhsm2-util and pkcs11-tool for the softhsm2 column;
# gnuplot for --plot.
set -euo pipefail

VTP_SRCDIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
builddir=${VTP_BUILDDIR:-$VTP_SRCDIR}
seconds=4
warmup=1
rounds=2
threads="1 4 16 64"
verify=100
json_out=
plot=
baseline=
from_json=
modes="module direct hand softhsm"
rsa_modes="module rsasingle direct softhsm"

while [ $# -gt 0 ]; do
    case $1 in
    --builddir) builddir=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --verify) verify=$2; shift 2 ;;
    --modes) modes=$2; shift 2 ;;
    --rsa-modes) rsa_modes=$2; shift 2 ;;
    --json-out) json_out=$2; shift 2 ;;
    --plot) plot=$2; shift 2 ;;
    --from-json) from_json=$2; shift 2 ;;
    --baseline) baseline=$(cd "$(dirname "$2")" && pwd)/$(basename "$2"); shift 2 ;;
    -h | --help) sed -n '2,34p' "$0"; exit 0 ;;
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
if [ -n "$plot" ] && ! command -v gnuplot >/dev/null; then
    echo "run-bench: --plot needs gnuplot (apt-get install gnuplot-nox)" >&2
    exit 2
fi
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

# measure: the server, the keys and the tokens, then every run; the JSON lines go to $results.
measure() {
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
for extra in "batching = false:nobatch" "batch_rsa = false:rsasingle"; do
    {
        cat "$tmp/module.conf"
        printf '\n[module]\n%s\n' "${extra%%:*}"
    } >"$tmp/module-${extra##*:}.conf"
done
chmod 600 "$tmp"/module*.conf
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
else
    modes=$(tr ' ' '\n' <<<"$modes" | grep -vx softhsm | tr '\n' ' ')
    rsa_modes=$(tr ' ' '\n' <<<"$rsa_modes" | grep -vx softhsm | tr '\n' ' ')
fi

if [ -n "$baseline" ]; then
    [ -e "$baseline" ] || { echo "run-bench: --baseline $baseline is missing" >&2; exit 2; }
    grep -qw baseline <<<"$modes" || modes="$modes baseline"
fi

results=$tmp/results.jsonl
: >"$results"
common=(--seconds "$seconds" --warmup "$warmup" --verify "$verify" --json)

# run ROUND ALG MECH KEY THREADS MODE [CONNECTIONS BATCH]: one p11bench run, its JSON tagged.
run() {
    local round=$1 alg=$2 mech=$3 key=$4 n=$5 mode=$6 conns=${7:-} per=${8:-} out tag=$6
    local -a args
    local conf=$tmp/module.conf
    case $mode in
    module) args=(--module "$module" --label "$key" --threads "$n") ;;
    baseline) args=(--module "$baseline" --label "$key" --threads "$n") ;;
    nobatch | rsasingle)
        args=(--module "$module" --label "$key" --threads "$n")
        conf=$tmp/module-$mode.conf
        ;;
    direct) args=(--direct-http --mount "$VTP_TEST_MOUNT" --key "$prefix$key" --threads "$n") ;;
    hand)
        args=(--direct-http --mount "$VTP_TEST_MOUNT" --key "$prefix$key"
            --connections "$conns" --batch "$per")
        tag="hand ${conns}x$per"
        ;;
    softhsm)
        args=(--module "$softhsm" --token bench --pin 1234 --label "$key" --threads "$n")
        ;;
    *) echo "run-bench: unknown mode $mode" >&2; exit 2 ;;
    esac
    echo "run-bench: round $round, $alg, $n outstanding, $tag" >&2
    if ! out=$(VAULT_TRANSIT_PKCS11_CONFIG=$conf "$bench" "${args[@]}" --mech "$mech" \
        "${common[@]}"); then
        echo "run-bench: p11bench failed ($alg, $n, $tag): ${out:-no output}" >&2
        exit 1
    fi
    jq -c --arg alg "$alg" --arg m "$mode" --arg tag "$tag" --argjson n "$n" \
        --argjson round "$round" \
        '. + {alg: $alg, run: $m, schedule: $tag, n: $n, round: $round}' <<<"$out" >>"$results"
}

echo "run-bench: load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
start=$(date +%s)
for ((round = 1; round <= rounds; round++)); do
    for spec in "ECDSA P-256:ecdsa:ec:$modes" "RSA-2048 PSS:rsa-pss:rsa:$rsa_modes"; do
        IFS=: read -r alg mech key these <<<"$spec"
        for n in $threads; do
            for mode in $these; do
                if [ "$mode" != hand ]; then
                    run "$round" "$alg" "$mech" "$key" "$n" "$mode"
                    continue
                fi
                for c in 1 2 4; do
                    if [ $((n % c)) = 0 ] && [ $((n / c)) -ge 2 ] && [ $((n / c)) -le 240 ]; then
                        run "$round" "$alg" "$mech" "$key" "$n" hand "$c" $((n / c))
                    fi
                done
            done
        done
    done
done
echo "run-bench: load after: $(cut -d' ' -f1-3 /proc/loadavg)," \
    "$(($(date +%s) - start)) s" >&2
[ -n "$json_out" ] && cp "$results" "$json_out"
}

if [ -n "$from_json" ]; then
    results=$from_json
    if [ "$(jq -s 'any(.[]; .run == "baseline")' "$results")" = true ] &&
        ! grep -qw baseline <<<"$modes"; then
        modes="$modes baseline"
    fi
else
    measure
fi

# Medians over the rounds, per (alg, n, schedule); "hand" is the best hand-batched schedule.
summary=$tmp/summary.json
jq -s '
    def median: sort | if length == 0 then null
        elif length % 2 == 1 then .[length / 2 | floor]
        else (.[length / 2 - 1] + .[length / 2]) / 2 end;
    group_by([.alg, .n, .schedule]) | map({
        alg: .[0].alg, n: .[0].n, run: .[0].run, schedule: .[0].schedule,
        ops: (map(.ops_per_sec) | median), p50: (map(.latency_ms.p50) | median),
        p99: (map(.latency_ms.p99) | median), cpu: (map(.client.cpu_us_per_sig) | median),
        cs: (map(.client.ctx_switches_per_sig) | median), rounds: length,
        errors: (map(.errors) | add), wrong: (map(.wrong) | add),
        verified: (map(.verified) | add)})
    | group_by([.alg, .n]) | map(
        (map(select(.run == "hand")) | max_by(.ops)) as $best |
        {alg: .[0].alg, n: .[0].n,
         r: (map(select(.run != "hand") | {key: .run, value: .}) | from_entries
             + (if $best == null then {} else {hand: $best} end)),
         hands: map(select(.run == "hand"))})' "$results" >"$summary"

jq -r --arg modes "$modes" --arg rsa_modes "$rsa_modes" '
    def r(x): if x == null then "-" else (x | round | tostring) end;
    def ms(x): if x == null then "-" else
        (if x < 1 then (x * 1000 | round / 1000) else (x * 100 | round / 100) end | tostring) end;
    def one(x): if x == null then "-" else (x * 10 | round / 10 | tostring) end;
    def two(x): if x == null then "-" else (x * 100 | round / 100 | tostring) end;
    def ratio(a; b): if a == null or b == null or b == 0 then "-"
        else ((a / b * 100 | round / 100 | tostring) + "x") end;
    {module: "Module", nobatch: "Module, batching off", rsasingle: "Module, batch_rsa off",
     direct: "Direct HTTP", hand: "Best hand-batched", softhsm: "softhsm2",
     baseline: "Baseline module"} as $names |
    def costly: . == "module" or . == "direct" or . == "rsasingle" or . == "baseline";
    def table($alg; $ms):
        ("| Threads (outstanding) | "
         + ($ms | map("\($names[.]) sig/s | p50 ms"
              + (if costly then " | CPU us/sig | ctx sw/sig" else "" end)
              + (if . == "hand" then " | schedule" else "" end)) | join(" | "))
         + " | Module/direct | Module/best hand-batched | Module p50/direct p50 |"),
        ("|--:|" + ($ms | map("--:|--:|"
              + (if costly then "--:|--:|" else "" end)
              + (if . == "hand" then ":-:|" else "" end)) | join("")) + "--:|--:|--:|"),
        (.[] | select(.alg == $alg) | .r as $r |
            "| \(.n) | "
            + ($ms | map($r[.] as $x | "\(r($x.ops)) | \(ms($x.p50))"
                + (if costly then " | \(one($x.cpu)) | \(two($x.cs))" else "" end)
                + (if . == "hand" then " | \($x.schedule // "-" | sub("hand "; ""))"
                   else "" end)) | join(" | "))
            + " | \(ratio($r.module.ops; $r.direct.ops))"
            + " | \(ratio($r.module.ops; $r.hand.ops))"
            + " | \(ratio($r.module.p50; $r.direct.p50)) |");
    ($modes | split(" ") | map(select(. != ""))) as $ems |
    ($rsa_modes | split(" ") | map(select(. != "" and . != "hand"))) as $rms |
    "### ECDSA P-256", "", table("ECDSA P-256"; $ems), "",
    "Every hand-batched schedule (connections x signatures per request), signatures/s:", "",
    (.[] | select(.alg == "ECDSA P-256" and (.hands | length) > 0) |
        "- \(.n) outstanding: " + (.hands | sort_by(-.ops)
            | map("\(.schedule | sub("hand "; "")) \(r(.ops))") | join(", "))),
    "", "### RSA-2048 PSS", "", table("RSA-2048 PSS"; $rms)
' "$summary"

bad=$(jq '[.[] | .r[], .hands[]] | map(.errors + .wrong) | add' "$summary")
if [ "$bad" != 0 ]; then
    echo "run-bench: $bad failed or wrong signatures" >&2
    exit 1
fi

if [ -n "$plot" ]; then
    jq -r '.[] | select(.alg == "ECDSA P-256") |
        [.n, .r.module.ops, .r.direct.ops, .r.hand.ops, .r.softhsm.ops]
        | map(if . == null then "NaN" else tostring end) | join(" ")' "$summary" |
        sort -n >"$tmp/ecdsa.dat"
    gnuplot <<EOF
set terminal svg size 720,440 dynamic font "sans,12" background "white"
set output "$plot"
set title "ECDSA P-256 signatures per second ($(nproc) cores, OpenBao on loopback)"
set xlabel "signing threads (outstanding signatures)"
set ylabel "signatures/s"
set logscale x 2
set xrange [0.8:80]
set xtics (1, 4, 16, 64)
set key top left
set offsets 0, 0, graph 0.3, 0
set grid
set yrange [0:*]
plot "$tmp/ecdsa.dat" using 1:2 with linespoints lw 2 pt 7 title "vault-transit-pkcs11", \
     "" using 1:4 with linespoints lw 2 pt 5 title "best hand-batched direct HTTP", \
     "" using 1:3 with linespoints lw 2 pt 9 title "direct HTTP, one request each", \
     "" using 1:5 with linespoints lw 1 pt 13 title "softhsm2 (local keys)"
EOF
    echo "run-bench: plot written to $plot" >&2
fi
