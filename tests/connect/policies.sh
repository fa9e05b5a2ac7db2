#!/usr/bin/env bash
# The least-privilege policies of conf/policies/, written to the server as an operator would:
#  - sign-only.hcl + kv-certs.hcl: the module lists and signs (OpenSSL verifies);
#    Vault's 403 policy denial refuses C_GenerateKeyPair with CKR_TOKEN_WRITE_PROTECTED (its list
#    has no CKR_ACTION_PROHIBITED) and C_DestroyObject with CKR_ACTION_PROHIBITED, and the key is
#    still there;
#  - keymgmt.hcl + kv-certs.hcl: C_GenerateKeyPair (with an ID and label kept in KV) and
#    C_DestroyObject work;
#  - kv-certs.hcl alone grants read/write/list/delete under vault-transit-pkcs11/<mount>/ and
#    vault-transit-pkcs11/certs/<mount>/ of the KV mount and nothing beside it.

# shellcheck source=tests/lib/common.sh
. "$(dirname "$0")/../lib/common.sh"
# shellcheck source=tests/connect/lib.sh
. "$(dirname "$0")/lib.sh"

vtp_require pkcs11-tool openssl jq
POL=$VTP_SRCDIR/conf/policies
u=$(vtp_conn_uniq)
P11=(vtp_mod vtp_p11 --module "$VTP_MODULE")

vtp_conn_key ec1
vtp_conn_policy "vtp-sign-$u" "$POL/sign-only.hcl"
vtp_conn_policy "vtp-keymgmt-$u" "$POL/keymgmt.hcl"
vtp_conn_policy "vtp-kv-$u" "$POL/kv-certs.hcl"

# token POLICY...: a child token with exactly these policies (plus "default").
token() {
    local body acc
    body=$(vtp_api POST auth/token/create "$(printf '%s\n' "$@" |
        jq -R . | jq -s '{policies: ., ttl: "10m"}')") || vtp_fail "could not create a token"
    acc=$(jq -r .auth.accessor <<<"$body")
    vtp_conn_at_exit vtp_api POST auth/token/revoke-accessor "{\"accessor\":\"$acc\"}"
    jq -r .auth.client_token <<<"$body"
}
signer=$(token "vtp-sign-$u" "vtp-kv-$u")
admin=$(token "vtp-keymgmt-$u" "vtp-kv-$u")
kvonly=$(token "vtp-kv-$u")
secrets=("$VAULT_TOKEN" "$signer" "$admin" "$kvonly")
conf=$VTP_TMP/policy.conf
export VAULT_TRANSIT_PKCS11_CONFIG=$conf

# ---- sign-only
vtp_conn_config "$conf" "auth = token" "token = $signer"
vtp_conn_sign "sign with a sign-only token"
id=$(awk '$1 == "ID:" { print $2; exit }' < <("${P11[@]}" -O --type privkey 2>/dev/null))
[ -n "$id" ] || vtp_fail "no key ID"

vtp_check_fails "C_GenerateKeyPair with a sign-only token" "${P11[@]}" --keypairgen \
    --key-type EC:prime256v1 --label "gen-$u" --id 0a0b0c
vtp_expect "refused with CKR_TOKEN_WRITE_PROTECTED" \
    'C_GenerateKeyPair.*(CKR_TOKEN_WRITE_PROTECTED|0xe2\))'
vtp_check_fails "C_DestroyObject with a sign-only token" "${P11[@]}" --delete-object \
    --type privkey --id "$id"
vtp_expect "refused with CKR_ACTION_PROHIBITED" 'C_DestroyObject.*(CKR_ACTION_PROHIBITED|0x1b\))'
vtp_api GET "$VTP_TEST_MOUNT/keys/${VTP_TEST_PREFIX}ec1" >/dev/null ||
    vtp_fail "the key is gone although the destroy was refused"
vtp_say "ok: the key is still in Transit"

# ---- key management
vtp_conn_config "$conf" "auth = token" "token = $admin"
vtp_check "C_GenerateKeyPair with a keymgmt token" "${P11[@]}" --keypairgen \
    --key-type EC:prime256v1 --label "gen-$u" --id 0a0b0c
vtp_check "the new key is listed with its ID and label" "${P11[@]}" -O --type privkey
vtp_listing_has "$VTP_LAST_OUT" "Private Key" "gen-$u" 0a0b0c ||
    vtp_fail "no private key gen-$u with ID 0a0b0c: $VTP_LAST_OUT"
vtp_check "C_DestroyObject with a keymgmt token" "${P11[@]}" --delete-object --type privkey \
    --id 0a0b0c
vtp_check "list after the destroy" "${P11[@]}" -O --type privkey
if vtp_listing_has "$VTP_LAST_OUT" "Private Key" "gen-$u" 0a0b0c; then
    vtp_fail "the destroyed key is still listed"
fi
vtp_say "ok: generated and destroyed with keymgmt.hcl"

# ---- kv-certs alone, through the API
kv() {
    local rc=0
    VAULT_TOKEN=$kvonly vtp_api "$@" >/dev/null 2>&1 || rc=$?
    return "$rc"
}
base="$VTP_TEST_KV/data/vault-transit-pkcs11"
meta="$VTP_TEST_KV/metadata/vault-transit-pkcs11"
vtp_check "kv-certs: write key metadata" kv POST "$base/$VTP_TEST_MOUNT/${VTP_TEST_PREFIX}probe" \
    '{"data":{"id":"01"}}'
vtp_check "kv-certs: read it" kv GET "$base/$VTP_TEST_MOUNT/${VTP_TEST_PREFIX}probe"
vtp_check "kv-certs: list it" kv LIST "$meta/$VTP_TEST_MOUNT"
vtp_check "kv-certs: write a certificate" kv POST "$base/certs/$VTP_TEST_MOUNT/${VTP_TEST_PREFIX}c" \
    '{"data":{"der":"AA=="}}'
vtp_check "kv-certs: list certificates" kv LIST "$meta/certs/$VTP_TEST_MOUNT"
vtp_check "kv-certs: delete the certificate" kv DELETE "$meta/certs/$VTP_TEST_MOUNT/${VTP_TEST_PREFIX}c"
vtp_check "kv-certs: delete the key metadata" kv DELETE "$meta/$VTP_TEST_MOUNT/${VTP_TEST_PREFIX}probe"
vtp_check_fails "kv-certs: no write beside the module's prefix" kv POST \
    "$VTP_TEST_KV/data/other-$u" '{"data":{"x":"1"}}'
vtp_check_fails "kv-certs: no write under another Transit mount's subtree" kv POST \
    "$base/not-$VTP_TEST_MOUNT-$u/x" '{"data":{"x":"1"}}'
vtp_check_fails "kv-certs: no Transit signing" kv POST \
    "$VTP_TEST_MOUNT/sign/${VTP_TEST_PREFIX}ec1" '{"input":"AA=="}'

vtp_conn_no_secrets "${secrets[@]}"
vtp_say PASS
