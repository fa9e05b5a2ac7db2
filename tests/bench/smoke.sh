#!/usr/bin/env bash
# tests/bench/smoke.sh: keeps tests/bench/p11bench working. A 2-second run in each mode
# (the module, --direct-http, softhsm2) for ECDSA P-256 and RSA-2048 PSS, with every signature
# verified locally. No thresholds: each run must exit 0, print a result, sign at least once,
# with no errors and no wrong signature. Runs under tests/lib/run-test (VAULT_ADDR, VAULT_TOKEN,
# VTP_TEST_PREFIX and a module config with that key prefix).
# shellcheck source=tests/lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"

BENCH=${VTP_BENCH:-$VTP_BUILDDIR/tests/bench/p11bench}
SECONDS_EACH=${VTP_BENCH_SECONDS:-2}

if [ -z "${VAULT_ADDR:-}" ] || [ -z "${VAULT_TOKEN:-}" ] || [ -z "${VTP_TEST_PREFIX:-}" ]; then
    echo "smoke: run me under tests/lib/run-test (VAULT_ADDR, VAULT_TOKEN, VTP_TEST_PREFIX)" >&2
    exit 99
fi
[ -x "$BENCH" ] || vtp_fail "$BENCH is not built (run make)"
[ -e "$VTP_MODULE" ] || vtp_fail "$VTP_MODULE is not built (run make)"
vtp_require jq

ec=${VTP_TEST_PREFIX}bench-ec
rsa=${VTP_TEST_PREFIX}bench-rsa
vtp_check "create Transit key $ec" vtp_api POST "$VTP_TEST_MOUNT/keys/$ec" '{"type":"ecdsa-p256"}'
vtp_check "create Transit key $rsa" vtp_api POST "$VTP_TEST_MOUNT/keys/$rsa" '{"type":"rsa-2048"}'

# bench DESC ARGS...: one JSON run; it must succeed and report signatures, all verified.
bench() {
    local desc=$1 out rc=0
    shift
    out=$("$BENCH" --json --seconds "$SECONDS_EACH" --warmup 0.5 --verify 1 "$@" 2>"$VTP_TMP/err") ||
        rc=$?
    if [ "$rc" != 0 ] || [ -z "$out" ]; then
        printf '%s: FAIL: %s: p11bench exit %s, %s bytes of output\n  command: %s %s\n' \
            "$VTP_NAME" "$desc" "$rc" "${#out}" "$BENCH" "$*"
        sed 's/^/  | /' "$VTP_TMP/err"
        printf '%s\n' "$out" | sed 's/^/  | /'
        exit 1
    fi
    # with --batch N, ops counts signatures (N per request) and one per request is verified
    if ! jq -e '.ops > 0 and .errors == 0 and .wrong == 0 and .ops == .requests * .batch
                and .verified == .requests and .outstanding == .threads * .batch
                and .client.cpu_us_per_sig > 0 and .client.ctx_switches_per_sig >= 0
                and .latency_ms.p50 > 0 and .latency_ms.p99 >= .latency_ms.p50' \
        >/dev/null <<<"$out"; then
        printf '%s: FAIL: %s: unexpected result\n  command: %s %s\n  | %s\n' "$VTP_NAME" \
            "$desc" "$BENCH" "$*" "$out"
        exit 1
    fi
    printf '%s: ok: %s: %s\n' "$VTP_NAME" "$desc" "$(jq -r '"\(.ops_per_sec | floor) ops/s,"
        + " p50 \(.latency_ms.p50 * 1000 | round / 1000) ms,"
        + " p99 \(.latency_ms.p99 * 1000 | round / 1000) ms"' <<<"$out")"
}

# The text output is for people; it must name the rate and the percentiles.
vtp_check "text output" "$BENCH" --module "$VTP_MODULE" --label bench-ec --mech ecdsa \
    --seconds 1 --warmup 0.2
vtp_expect "text output has ops/s and p50/p90/p99" 'ops/s'
vtp_expect "text output has the latency percentiles" 'p50 .* p90 .* p99'
vtp_check_fails "unknown label is an error" "$BENCH" --module "$VTP_MODULE" --label no-such-key \
    --seconds 1
vtp_check_fails "--direct-http with an unknown key is an error" "$BENCH" --direct-http \
    --mount "$VTP_TEST_MOUNT" --key "${VTP_TEST_PREFIX}no-such-key" --seconds 1

for threads in 1 4; do
    bench "module ECDSA P-256, $threads thread(s)" --module "$VTP_MODULE" --label bench-ec \
        --mech ecdsa --threads "$threads"
    bench "direct HTTP ECDSA P-256, $threads thread(s)" --direct-http --mount "$VTP_TEST_MOUNT" \
        --key "$ec" --mech ecdsa --threads "$threads"
done
bench "module ECDSA P-256 (CKM_ECDSA_SHA256)" --module "$VTP_MODULE" --label bench-ec \
    --mech ecdsa-sha256 --threads 2
bench "module RSA-2048 PSS, 4 threads" --module "$VTP_MODULE" --label bench-rsa --mech rsa-pss \
    --threads 4
bench "direct HTTP RSA-2048 PSS, 4 threads" --direct-http --mount "$VTP_TEST_MOUNT" --key "$rsa" \
    --mech rsa-pss --threads 4
bench "direct HTTP ECDSA P-256, batch_input of 8, 2 threads" --direct-http \
    --mount "$VTP_TEST_MOUNT" --key "$ec" --mech ecdsa --threads 2 --batch 8
bench "direct HTTP ECDSA P-256, --connections 4 --batch 2" --direct-http \
    --mount "$VTP_TEST_MOUNT" --key "$ec" --mech ecdsa --connections 4 --batch 2
{
    cat "$VAULT_TRANSIT_PKCS11_CONFIG"
    printf '[module]\nbatch_rsa = false\n'
} >"$VTP_TMP/batch-rsa.conf"
chmod 600 "$VTP_TMP/batch-rsa.conf"
VAULT_TRANSIT_PKCS11_CONFIG=$VTP_TMP/batch-rsa.conf bench \
    "module RSA-2048 PSS, a request each (batch_rsa = false), 4 threads" --module "$VTP_MODULE" \
    --label bench-rsa --mech rsa-pss --threads 4
vtp_check_fails "--connections with a module is refused" "$BENCH" --module "$VTP_MODULE" \
    --label bench-ec --connections 2 --seconds 1
vtp_check_fails "--batch with a module is refused" "$BENCH" --module "$VTP_MODULE" \
    --label bench-ec --batch 2 --seconds 1

# softhsm2: the same tool against another module (skipped locally when it is not installed).
softhsm=${VTP_SOFTHSM_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
if ! command -v softhsm2-util >/dev/null 2>&1 || ! command -v pkcs11-tool >/dev/null 2>&1 ||
    [ ! -e "$softhsm" ]; then
    if [ "${CI:-}" = true ]; then
        vtp_fail "softhsm2 or pkcs11-tool is missing, and CI must skip nothing"
    fi
    vtp_say "SKIP: softhsm2 part (softhsm2-util, pkcs11-tool or $softhsm missing)"
    exit 0
fi
vtp_softhsm_setup
vtp_check "softhsm2: EC P-256 key" vtp_p11 --module "$VTP_SOFTHSM_MODULE" --token-label t \
    --login --pin 1234 --keypairgen --key-type EC:prime256v1 --label bench-ec --id 01
vtp_check "softhsm2: RSA-2048 key" vtp_p11 --module "$VTP_SOFTHSM_MODULE" --token-label t \
    --login --pin 1234 --keypairgen --key-type rsa:2048 --label bench-rsa --id 02
bench "softhsm2 ECDSA P-256, 2 threads" --module "$VTP_SOFTHSM_MODULE" --token t --pin 1234 \
    --label bench-ec --mech ecdsa --threads 2
bench "softhsm2 RSA-2048 PSS, 2 threads" --module "$VTP_SOFTHSM_MODULE" --token t --pin 1234 \
    --label bench-rsa --mech rsa-pss --threads 2
