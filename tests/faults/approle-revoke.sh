#!/usr/bin/env bash
# Fault e: the module logs in with AppRole (auth = approle, a sign-only policy). While 8 threads
# sign, every token issued by that AppRole login is revoked
# (PUT sys/leases/revoke-prefix/auth/approle/login), twice. Vault then refuses the module's
# token (403); the module must log in again with its role_id/secret_id and carry on: no wrong
# signature, recovery after each revocation.
. "$(dirname "$0")/lib.sh"
fl_begin

TIMEOUT_S=5

fl_single
fl_api POST sys/auth/approle '{"type":"approle"}' >/dev/null || fl_fail "enable approle"
policy='path "transit/keys" { capabilities = ["list"] }
path "transit/keys/*" { capabilities = ["read"] }
path "transit/sign/*" { capabilities = ["update"] }'
fl_api PUT sys/policies/acl/faults-sign "$(jq -n --arg p "$policy" '{policy: $p}')" \
    >/dev/null || fl_fail "write the policy"
fl_api POST auth/approle/role/faults '{"token_policies":["faults-sign"],"token_ttl":"1h"}' \
    >/dev/null || fl_fail "create the role"
role_id=$(fl_api GET auth/approle/role/faults/role-id | jq -r .data.role_id)
secret_id=$(fl_api POST auth/approle/role/faults/secret-id '{}' | jq -r .data.secret_id)
[ -n "$role_id" ] && [ -n "$secret_id" ] && [ "$secret_id" != null ] ||
    fl_fail "no role_id/secret_id"

fl_module_conf "$FL_DIR/module.conf" "$(fl_addr s1)" "$TIMEOUT_S" \
    "auth = approle" "role_id = $role_id" "secret_id = $secret_id"
unset VAULT_TOKEN

fl_load_begin "$TIMEOUT_S"
for round in 1 2; do
    sleep 2
    out=$(fl_api PUT sys/leases/revoke-prefix/auth/approle/login '{}') ||
        fl_fail "revoke the AppRole tokens"
    fl_mark "$FL_DIR/fault-end"
    fl_say "revocation $round: every token from auth/approle/login revoked"
done
fl_load_end 5 || exit 1
relogins=$(grep -c 'logging in again' "$FL_DIR/module.log" || true)
fl_say "re-logins logged by the module: $relogins"
if grep -q 'secret_id = \|'"$secret_id" "$FL_DIR/module.log"; then
    fl_fail "the secret_id appears in the module log"
fi
