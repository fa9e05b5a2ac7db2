#!/usr/bin/env bash
# Fault d: a rate-limit quota on transit/ (POST sys/quotas/rate-limit/NAME {"rate": N,
# "path": "transit/"}) makes OpenBao answer 429 while 8 threads sign. The module retries 429
# with backoff within its deadline; the summary says how many calls still failed. Two phases:
#   1. rate RATE/s (FL_RATE, default 1) for 8 s: the retries and the batching of concurrent
#      signatures into one request absorb it;
#   2. the same quota with block_interval = 7 s (once exceeded, every request gets 429 for 7 s,
#      longer than the 5 s deadline) for 12 s: calls fail with CKR_DEVICE_ERROR within the
#      deadline, none hangs.
# After the quota is deleted, every call succeeds again.
. "$(dirname "$0")/lib.sh"
fl_begin

TIMEOUT_S=5
RATE=${FL_RATE:-1}

fl_single
a=$(fl_addr s1)
fl_module_conf "$FL_DIR/module.conf" "$a" "$TIMEOUT_S"
export VAULT_TOKEN=$FL_ROOT

fl_load_begin "$TIMEOUT_S"
sleep 2
n429() { grep -c -- '-> 429' "$FL_DIR/module.log" || true; }
fl_say "phase 1: rate-limit quota of $RATE requests/s on transit/ for 8 s"
fl_api POST sys/quotas/rate-limit/faults "{\"rate\": $RATE, \"path\": \"transit/\"}" \
    >/dev/null || fl_fail "create the quota"
sleep 8
p1=$(n429)
fl_say "phase 1: HTTP 429 answers seen by the module: $p1"
fl_say "phase 2: the same with block_interval = 7s for 12 s"
fl_api POST sys/quotas/rate-limit/faults \
    "{\"rate\": $RATE, \"path\": \"transit/\", \"block_interval\": \"7s\"}" \
    >/dev/null || fl_fail "update the quota"
sleep 12
fl_api DELETE sys/quotas/rate-limit/faults >/dev/null || fl_fail "delete the quota"
fl_mark "$FL_DIR/fault-end"
fl_say "phase 2: HTTP 429 answers seen by the module: $(($(n429) - p1)); quota deleted"
fl_load_end 5 || exit 1
[ "$(n429)" -gt 0 ] || fl_fail "the quota never answered 429"
