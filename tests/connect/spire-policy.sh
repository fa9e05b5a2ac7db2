#!/usr/bin/env bash
# conf/policies/spire.hcl, written to the server as an operator would, on a token that holds
# that policy alone (no "default" policy), with the module config of docs/spire.md (a slot
# with key_prefix spire-<run>-, no kv_mount, allow_destroy = true):
#  - through the module with pkcs11-tool, auth = token_file: C_GenerateKeyPair of an EC P-256
#    pair named as spire-keymanager-pkcs11 names keys (CKA_ID = CKA_LABEL =
#    <key identifier>.x509-CA-A.<generation>); the Transit key is <key_prefix><label>; a fresh
#    process finds it with that ID and label (derived from the key name, no KV); it signs and
#    OpenSSL verifies;
#  - auth = pin with the same token as PIN: C_Login, sign (OpenSSL verifies), C_DestroyObject;
#    the key is gone from Transit; nothing the module asked Vault for was refused (no 403);
#  - confinement, through the API: a Transit key made by the root token outside the prefix
#    cannot be read, signed with, configured or deleted (403), nor can a key outside the prefix
#    be created, nor KV be read; the key is still there;
#  - confinement, through the module: a slot with another key_prefix cannot generate a key
#    (C_GenerateKeyPair fails with CKR_TOKEN_WRITE_PROTECTED, Vault's 403) and leaves none
#    behind;
#  - no token is in the module's debug log.

# shellcheck source=tests/lib/common.sh
. "$(dirname "$0")/../lib/common.sh"
# shellcheck source=tests/connect/lib.sh
. "$(dirname "$0")/lib.sh"

vtp_require pkcs11-tool openssl jq curl
u=$(vtp_conn_uniq)
PREFIX="spire-t$u-"      # matches the policy's spire-*; unique to this run
OTHER_PREFIX="other-t$u-" # does not
OTHER_KEY="other-$u"
M=$VTP_TEST_MOUNT
P11=(vtp_mod vtp_p11 --module "$VTP_MODULE")

# The run-test cleanup only knows its own prefix: remove ours (and the root's key) at exit.
vtp_conn_at_exit vtp_cleanup_prefix "$PREFIX"
vtp_conn_at_exit vtp_cleanup_prefix "$OTHER_PREFIX"
vtp_conn_at_exit vtp_cleanup_prefix "$OTHER_KEY"

vtp_conn_policy "vtp-spire-$u" "$VTP_SRCDIR/conf/policies/spire.hcl"
body=$(vtp_api POST auth/token/create "$(jq -n --arg p "vtp-spire-$u" \
    '{policies: [$p], no_default_policy: true, ttl: "10m"}')") ||
    vtp_fail "could not create a token"
vtp_conn_at_exit vtp_api POST auth/token/revoke-accessor \
    "$(jq -c '{accessor: .auth.accessor}' <<<"$body")"
tok=$(jq -r .auth.client_token <<<"$body")
jq -e '.auth.policies == ["vtp-spire-'"$u"'"]' <<<"$body" >/dev/null ||
    vtp_fail "the token has other policies: $(jq -c .auth.policies <<<"$body")"
vtp_say "ok: a token with the policy spire.hcl only"
printf '%s\n' "$tok" >"$VTP_TMP/vault-token"
chmod 600 "$VTP_TMP/vault-token"

# conf AUTH-LINES...: the module config of docs/spire.md, plus a slot outside the policy.
conf=$VTP_TMP/spire.conf
export VAULT_TRANSIT_PKCS11_CONFIG=$conf
write_conf() {
    {
        echo "; written by tests/connect/$VTP_NAME (docs/spire.md)"
        echo "[vault]"
        echo "address = $VAULT_ADDR"
        [ -z "${VAULT_CACERT:-}" ] || echo "ca_cert = $VAULT_CACERT"
        [ -z "${VAULT_NAMESPACE:-}" ] || echo "namespace = $VAULT_NAMESPACE"
        printf '%s\n' "$@"
        echo "timeout = 10"
        echo "[slot spire]"
        echo "mount = $M"
        echo "key_prefix = $PREFIX"
        echo "label = SPIRE CA"
        echo "allow_destroy = true"
        echo "[slot other]"
        echo "mount = $M"
        echo "key_prefix = $OTHER_PREFIX"
        echo "label = other"
    } >"$conf"
    chmod 600 "$conf"
}
write_conf "auth = token_file" "token_file = $VTP_TMP/vault-token"

# ---- generate, find, sign (auth = token_file)
kid=$(cat /proc/sys/kernel/random/uuid)
label="$kid.x509-CA-A.0123456789abcdef"
idhex=$(printf '%s' "$label" | od -An -v -tx1 | tr -d ' \n')
vtp_conn_log_reset
vtp_check "C_GenerateKeyPair EC P-256 with CKA_ID = CKA_LABEL = $label" "${P11[@]}" \
    --token-label "SPIRE CA" --keypairgen --key-type EC:prime256v1 --label "$label" --id "$idhex"
# no KV store: the name is the label, .p11-<8 random hex>, and .u<usage> since pkcs11-tool asks
# for CKA_DERIVE (src/kvstore.h)
name=$(vtp_list "$M/keys" | grep -E "^$PREFIX${label//./\\.}\.p11-[0-9a-f]{8}(\.u[0-9a-f]{3})?$" || true)
ktype=$(vtp_api GET "$M/keys/$name" | jq -r .data.type) ||
    vtp_fail "no Transit key $name: $(vtp_list "$M/keys" | grep "^$PREFIX" | tr '\n' ' ')"
[ "$ktype" = ecdsa-p256 ] || vtp_fail "Transit key $name has type $ktype"
vtp_say "ok: the Transit key is $name ($ktype)"
vtp_check "a fresh process lists the token's keys" "${P11[@]}" --token-label "SPIRE CA" -O
vtp_listing_has "$VTP_LAST_OUT" "Private Key" "$label" "$idhex" ||
    vtp_fail "no private key with label and ID $label: $VTP_LAST_OUT"
vtp_listing_has "$VTP_LAST_OUT" "Public Key" "$label" "$idhex" ||
    vtp_fail "no public key with label and ID $label: $VTP_LAST_OUT"
vtp_say "ok: private and public key found with CKA_ID = CKA_LABEL = the name after the prefix"
vtp_conn_sign "sign with the spire token (token_file)" --token-label "SPIRE CA"

# ---- auth = pin: the same token as the C_Login PIN; sign, destroy
write_conf "auth = pin"
vtp_conn_sign "sign with the spire token as PIN (auth = pin)" --token-label "SPIRE CA" \
    --login --pin "$tok"
vtp_check "C_DestroyObject (auth = pin)" "${P11[@]}" --token-label "SPIRE CA" --login \
    --pin "$tok" --delete-object --type privkey --id "$idhex"
if vtp_list "$M/keys" | grep -qxF "$name"; then
    vtp_fail "Transit key $name is still there after C_DestroyObject"
fi
vtp_say "ok: the Transit key is gone"
if grep -E ' -> 403 ' "$VTP_LOG"; then
    vtp_fail "the module was refused something it asked for with spire.hcl (above)"
fi
vtp_say "ok: Vault refused none of the module's $(grep -cE ' -> [0-9]+ \(' "$VTP_LOG") requests"

# ---- confinement through the API
vtp_api POST "$M/keys/$OTHER_KEY" '{"type":"ecdsa-p256"}' >/dev/null ||
    vtp_fail "the root token could not create $OTHER_KEY"
status() { # METHOD PATH [JSON]: the HTTP status of the request with the spire token
    local -a a=(-s -o /dev/null -w '%{http_code}' -X "$1" -H "X-Vault-Token: $tok")
    [ -z "${VAULT_NAMESPACE:-}" ] || a+=(-H "X-Vault-Namespace: $VAULT_NAMESPACE")
    [ -z "${VAULT_CACERT:-}" ] || a+=(--cacert "$VAULT_CACERT")
    [ -z "${3:-}" ] || a+=(-H 'Content-Type: application/json' --data "$3")
    vtp_curl "${a[@]}" "${VAULT_ADDR%/}/v1/$2" || true
}
refused() { # DESC METHOD PATH [JSON]
    local desc=$1 code
    shift
    code=$(status "$@")
    [ "$code" = 403 ] || vtp_fail "$desc: HTTP $code, expected 403"
    vtp_say "ok: $desc: 403"
}
digest=$(printf 'x' | openssl dgst -sha256 -binary | base64)
refused "sign with $OTHER_KEY" POST "$M/sign/$OTHER_KEY" \
    "{\"input\":\"$digest\",\"prehashed\":true}"
refused "sign with $OTHER_KEY (hash in the path)" POST "$M/sign/$OTHER_KEY/sha2-256" \
    "{\"input\":\"$digest\",\"prehashed\":true}"
refused "read $OTHER_KEY" GET "$M/keys/$OTHER_KEY"
refused "allow deletion of $OTHER_KEY" POST "$M/keys/$OTHER_KEY/config" \
    '{"deletion_allowed":true}'
refused "delete $OTHER_KEY" DELETE "$M/keys/$OTHER_KEY"
refused "create a key outside the prefix" POST "$M/keys/${OTHER_PREFIX}new" \
    '{"type":"ecdsa-p256"}'
refused "read KV" GET "$VTP_TEST_KV/data/vault-transit-pkcs11/$M/$OTHER_KEY"
vtp_api GET "$M/keys/$OTHER_KEY" >/dev/null || vtp_fail "$OTHER_KEY is gone"
vtp_say "ok: $OTHER_KEY is still in Transit"
code=$(status LIST "$M/keys")
[ "$code" = 200 ] || vtp_fail "LIST $M/keys: HTTP $code"
vtp_say "ok: the token may list key names (LIST $M/keys: 200)"

# ---- confinement through the module: the slot with another prefix
write_conf "auth = token_file" "token_file = $VTP_TMP/vault-token"
vtp_check_fails "C_GenerateKeyPair in the slot with key_prefix $OTHER_PREFIX" "${P11[@]}" \
    --token-label other --keypairgen --key-type EC:prime256v1 --label "$label" --id "$idhex"
vtp_expect "refused with CKR_TOKEN_WRITE_PROTECTED" \
    'C_GenerateKeyPair.*(CKR_TOKEN_WRITE_PROTECTED|0xe2\))'
if vtp_list "$M/keys" | grep -q "^$OTHER_PREFIX"; then
    vtp_fail "a key with prefix $OTHER_PREFIX was created"
fi
vtp_say "ok: no key with prefix $OTHER_PREFIX exists"

vtp_conn_no_secrets "$VAULT_TOKEN" "$tok"
vtp_say PASS
