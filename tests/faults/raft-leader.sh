#!/usr/bin/env bash
# Fault f: a 3-node raft cluster on 127.0.0.1, 127.0.0.2 and 127.0.0.3 (each its own ports),
# joined through sys/storage/raft/join and unsealed through the HTTP API. The module is given
# all three addresses. While 8 threads sign, the leader is killed (kill -9) and stays dead:
# signing continues through the standbys (they forward to the new leader once one is elected)
# and the recovery time is reported.
. "$(dirname "$0")/lib.sh"
fl_begin

TIMEOUT_S=5

fl_server_start n1 127.0.0.1 raft
fl_server_start n2 127.0.0.2 raft
fl_server_start n3 127.0.0.3 raft
a1=$(fl_addr n1)
fl_init "$a1"
fl_unseal "$a1" || fl_fail "unseal n1"
fl_wait_health "$a1" 200 || fl_fail "n1 not active"
for n in n2 n3; do
    fl_put "$(fl_addr $n)" sys/storage/raft/join "{\"leader_api_addr\":\"$a1\"}" >/dev/null ||
        fl_fail "$n: raft join"
    # Unsealing a joined node may need a moment while it fetches the keyring from the leader.
    for _ in $(seq 50); do
        out=$(fl_put "$(fl_addr $n)" sys/unseal "{\"key\":\"$FL_UNSEAL_KEY\"}" 2>/dev/null) &&
            [ "$(jq -r .sealed <<<"$out")" = false ] && break
        sleep 0.2
    done
    fl_wait_health "$(fl_addr $n)" "429" 60 || fl_fail "$n did not become a standby"
done
FL_API_ADDR=$a1
# Joined nodes start as non-voters; autopilot promotes them once stable. Without three voters
# the cluster cannot elect a new leader after losing one.
fl_api POST sys/storage/raft/autopilot/configuration '{"server_stabilization_time":"2s"}' \
    >/dev/null || fl_fail "autopilot configuration"
for _ in $(seq 60); do
    voters=$(fl_api GET sys/storage/raft/configuration |
        jq -r '[.data.config.servers[] | select(.voter) | .node_id] | join(",")')
    [ "$voters" = "n1,n2,n3" ] && break
    sleep 0.5
done
[ "$voters" = "n1,n2,n3" ] || fl_fail "voters after 30 s: $voters"
fl_say "raft cluster up, voters: $voters"
fl_setup_transit

fl_module_conf "$FL_DIR/module.conf" "$a1, $(fl_addr n2), $(fl_addr n3)" "$TIMEOUT_S"
export VAULT_TOKEN=$FL_ROOT

fl_load_begin "$TIMEOUT_S"
sleep 2
leader_addr=$(vtp_curl -s "$a1/v1/sys/leader" | jq -r .leader_address)
leader=
for n in n1 n2 n3; do
    [ "$(fl_addr $n)" = "$leader_addr" ] && leader=$n
done
[ -n "$leader" ] || fl_fail "no leader among the nodes (sys/leader says $leader_addr)"
fl_say "kill -9 the leader $leader ($leader_addr)"
fl_server_kill "$leader" KILL
fl_mark "$FL_DIR/fault-end"
new=
for _ in $(seq 150); do
    for n in n1 n2 n3; do
        [ "$n" = "$leader" ] && continue
        [ "$(fl_health "$(fl_addr $n)")" = 200 ] && new=$n
    done
    [ -n "$new" ] && break
    sleep 0.2
done
if [ -n "$new" ]; then
    fl_say "new leader: $new, $(($(fl_now_ms) - $(cat "$FL_DIR/fault-end"))) ms after the kill"
else
    fl_say "no new leader within 30 s"
fi
fl_load_end 8
