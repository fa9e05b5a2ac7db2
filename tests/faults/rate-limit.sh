#!/usr/bin/env bash
# Fault d: a rate-limit quota on transit/ (POST sys/quotas/rate-limit/NAME {"rate": N,
# "path": "transit/"}) makes OpenBao answer 429 while 8 threads sign. The module retries 429
# with backoff within its deadline; the summary says how many calls still failed. After the
# quota is deleted, every call succeeds again.
. "$(dirname "$0")/lib.sh"
fl_begin

TIMEOUT_S=5
RATE=${FL_RATE:-20}
LIMIT_S=10

fl_single
a=$(fl_addr s1)
fl_module_conf "$FL_DIR/module.conf" "$a" "$TIMEOUT_S"
export VAULT_TOKEN=$FL_ROOT

fl_load_begin "$TIMEOUT_S"
sleep 2
fl_say "rate-limit quota: $RATE requests/s on transit/ for ${LIMIT_S}s"
fl_api POST sys/quotas/rate-limit/faults "{\"rate\": $RATE, \"path\": \"transit/\"}" \
    >/dev/null || fl_fail "create the quota"
sleep "$LIMIT_S"
fl_api DELETE sys/quotas/rate-limit/faults >/dev/null || fl_fail "delete the quota"
fl_mark "$FL_DIR/fault-end"
fl_say "quota deleted"
fl_load_end 5 || exit 1
n429=$(grep -c -- '-> 429' "$FL_DIR/module.log" || true)
fl_say "HTTP 429 answers seen by the module: $n429"
[ "$n429" -gt 0 ] || fl_fail "the quota never answered 429"
