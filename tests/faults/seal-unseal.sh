#!/usr/bin/env bash
# Fault a: seal the server (PUT sys/seal) for longer than the module's deadline while 8 threads
# sign, then unseal it with the key (PUT sys/unseal). Calls during the seal fail with
# CKR_DEVICE_ERROR within the deadline; signing resumes after the unseal without restarting
# the application; no wrong signature.
. "$(dirname "$0")/lib.sh"
fl_begin

TIMEOUT_S=5
SEAL_S=8

fl_single
a=$(fl_addr s1)
fl_module_conf "$FL_DIR/module.conf" "$a" "$TIMEOUT_S"
export VAULT_TOKEN=$FL_ROOT

fl_load_begin "$TIMEOUT_S"
sleep 2
fl_say "sealing $a for ${SEAL_S}s (module timeout ${TIMEOUT_S}s)"
fl_api PUT sys/seal >/dev/null || fl_fail "sys/seal"
sleep "$SEAL_S"
fl_unseal "$a" || fl_fail "unseal after seal"
fl_mark "$FL_DIR/fault-end"
fl_say "unsealed"
fl_load_end 5
