#!/usr/bin/env bash
# Fault c: SIGSTOP the server for longer than the module's timeout (3 s). The connections stay
# open but nothing answers: calls must fail with CKR_DEVICE_ERROR within the deadline + 1 s,
# none may hang. SIGCONT: signing resumes.
. "$(dirname "$0")/lib.sh"
fl_begin

TIMEOUT_S=3
STOP_S=8

fl_single
a=$(fl_addr s1)
fl_module_conf "$FL_DIR/module.conf" "$a" "$TIMEOUT_S"
export VAULT_TOKEN=$FL_ROOT

fl_load_begin "$TIMEOUT_S"
sleep 2
fl_say "SIGSTOP $a for ${STOP_S}s (module timeout ${TIMEOUT_S}s)"
kill -STOP "$(fl_pid s1)"
sleep "$STOP_S"
kill -CONT "$(fl_pid s1)"
fl_mark "$FL_DIR/fault-end"
fl_say "SIGCONT"
fl_load_end 5 || exit 1
grep -q 'CKR_DEVICE_ERROR=' "$FL_DIR/load.out" ||
    fl_fail "no call failed during an ${STOP_S}s stop with a ${TIMEOUT_S}s timeout"
