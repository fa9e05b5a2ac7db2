#!/usr/bin/env bash
# Go tests of the SPIRE KeyManager plugin (spire/keymanager) against real tokens, under run-test:
#   - SoftHSM2 (a token the tests make with softhsm2-util);
#   - this module over the test's OpenBao, three times: with the run-test slot (KV v2 holds CKA_ID
#     and CKA_LABEL), with a slot without kv_mount (both derived from the Transit key name), and
#     with no config file at all (the README's VAULT_ADDR/VAULT_TOKEN mode).
# Each pass: the four key types SPIRE uses with every hash and PSS salt length, verified with Go's
# crypto against the PKIX key the plugin returned; bad requests and their gRPC codes; key
# replacement (new pair first, old one destroyed) and a restart that creates no key; two
# namespaces on one token; disposal of superseded keys after the grace period only; 64
# concurrent SignData over a pool of sessions; Configure and Close while 16 callers sign; a
# token that cannot be used. Then the plugin with Vault unreachable: Configure fails within
# the module's timeout and names the address. Last, the module's statistics show that
# concurrent SignData calls were signed in Transit batches (group commit).

# shellcheck source=tests/lib/common.sh
. "$(dirname "$0")/../lib/common.sh"
# shellcheck source=tests/spire/lib.sh
. "$(dirname "$0")/lib.sh"

vtp_spire_go_test_setup spire
vtp_check "go vet" vtp_go vet ./...
vtp_check "plugin tests under the race detector: SoftHSM2 and this module (slot with kv_mount)" \
    vtp_go test -count=1 -race -v ./keymanager/
printf '%s\n' "$VTP_LAST_OUT" | grep -E "^ *(--- |ok|PASS|FAIL)" | sed "s/^/  /"

nokv=$VTP_TMP/nokv.conf
cat >"$nokv" <<CONF
[slot nokv]
mount = ${VTP_TEST_MOUNT:-transit}
key_prefix = ${VTP_TEST_PREFIX:-}
label = vtp-nokv
CONF
vtp_check "plugin tests: this module, slot without kv_mount" \
    env VAULT_TRANSIT_PKCS11_CONFIG="$nokv" SKM_VTP_TOKEN=vtp-nokv \
    "$VTP_GO" test -count=1 -v -run '/vault-transit-pkcs11' ./keymanager/
printf '%s\n' "$VTP_LAST_OUT" | grep -E "^ *(--- |ok|PASS|FAIL)" | sed "s/^/  /"

# The README's first configuration: no module config file at all, only VAULT_ADDR and
# VAULT_TOKEN (one slot over mount "transit", token "Vault Transit transit", no KV).
default_conf=$(strings "$VTP_MODULE" | grep -m1 '/vault-transit-pkcs11/vault-transit-pkcs11.conf$' || true)
if [ -n "$default_conf" ] && [ -e "$default_conf" ]; then
    vtp_fail "$default_conf exists: the no-config pass cannot run on this machine"
fi
if [ "${VTP_TEST_MOUNT:-transit}" = transit ]; then
    vtp_check "plugin tests: this module with no config file (VAULT_ADDR and VAULT_TOKEN only)" \
        env -u VAULT_TRANSIT_PKCS11_CONFIG SKM_VTP_TOKEN="Vault Transit transit" \
        "$VTP_GO" test -count=1 -v -run '/vault-transit-pkcs11' ./keymanager/
    printf '%s\n' "$VTP_LAST_OUT" | grep -E "^ *(--- |ok|PASS|FAIL)" | sed "s/^/  /"
fi

# The plugin's concurrent SignData reach the module's group commit: some C_Finalize statistics
# line (the module logs one whenever the plugin's last token closes) shows a batch of several.
log=${VTP_TEST_TMP:-}/module.log
if [ -f "$log" ]; then
    largest=$(sed -n 's/.*largest batch \([0-9]*\).*/\1/p' "$log" | sort -n | tail -n 1)
    [ "${largest:-0}" -ge 2 ] ||
        vtp_fail "no Transit batch of two or more signatures in $log (largest: ${largest:-none})"
    vtp_say "ok: concurrent SignData went to Transit in batches (largest: $largest signatures)"
fi
