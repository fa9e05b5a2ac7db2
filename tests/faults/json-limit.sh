#!/usr/bin/env bash
# Fault g: a listener whose JSON limits are below OpenBao's defaults
# (max_request_json_strings = 100, where the default is 1000): a sign batch of more than 22
# signatures is refused with HTTP 400 "refused JSON input due to high complexity". 64 threads
# sign through the module with batch_concurrency = 1, so batches of up to 63 signatures form.
# The module must send a refused batch again as two halves, remember the size that went
# through, and lose nothing: no failed call, no wrong signature, one warning in its log.
. "$(dirname "$0")/lib.sh"
fl_begin

TIMEOUT_S=5
FL_THREADS=64
FL_LISTENER_EXTRA='  max_request_json_strings = 100'

fl_single
fl_module_conf "$FL_DIR/module.conf" "$(fl_addr s1)" "$TIMEOUT_S"
printf '[module]\nbatch_concurrency = 1\n' >>"$FL_DIR/module.conf"
export VAULT_TOKEN=$FL_ROOT

# The server's own answer to a batch of 30 (what the module must get round).
body=$(jq -nc '{batch_input: [range(30) | {input: "aGVsbG8=", reference: tostring}]}')
status=$(curl -s -o "$FL_DIR/refused.json" -w '%{http_code}' -H "X-Vault-Token: $FL_ROOT" \
    -X POST --data "$body" "$(fl_addr s1)/v1/transit/sign/$FL_KEY")
fl_say "a direct batch of 30 signatures: HTTP $status $(head -c 120 "$FL_DIR/refused.json")"
[ "$status" = 400 ] || fl_fail "the listener took a batch of 30 (HTTP $status): no limit to test"

fl_load_begin "$TIMEOUT_S"
# The limit holds for the whole run: no fault ends, every call must succeed from the start.
fl_mark "$FL_DIR/fault-end"
fl_load_end 6 || exit 1
grep -q 'failed=0 wrong=0' "$FL_DIR/load.out" || fl_fail "signatures failed or were wrong"
warn=$(grep -c 'refused a batch of' "$FL_DIR/module.log" || true)
halved=$(grep -c 'refused as too large; halving' "$FL_DIR/module.log" || true)
fl_say "module log: $warn warning(s) that a batch was refused, $halved later halvings"
[ "$warn" = 1 ] || fl_fail "expected one warning about a refused batch, saw $warn"
stats=$(grep -o 'largest batch [0-9]* ([0-9]* refused as too large and halved)' \
    "$FL_DIR/module.log" | tail -n 1)
fl_say "module statistics at C_Finalize: ${stats:-none}"
