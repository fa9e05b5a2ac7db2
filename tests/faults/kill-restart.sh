#!/usr/bin/env bash
# Fault b: kill -9 the server (raft storage on disk) while 8 threads sign, start it again from
# the same config and data 6 s later (longer than the 5 s deadline), unseal it. Signing resumes without restarting the application;
# no call outlives the deadline; no wrong signature.
. "$(dirname "$0")/lib.sh"
fl_begin

TIMEOUT_S=5

fl_single
a=$(fl_addr s1)
fl_module_conf "$FL_DIR/module.conf" "$a" "$TIMEOUT_S"
export VAULT_TOKEN=$FL_ROOT

fl_load_begin "$TIMEOUT_S"
sleep 2
fl_say "kill -9 $a"
fl_server_kill s1 KILL
sleep 6
fl_say "restarting it from its data directory"
fl_server_restart s1
fl_unseal "$a" || fl_fail "unseal after restart"
fl_wait_health "$a" 200 || fl_fail "not active after restart"
fl_mark "$FL_DIR/fault-end"
fl_say "restarted, unsealed and active"
fl_load_end 5
