#!/usr/bin/env bash
# auth = pin: no token in any file or variable; the C_Login PIN is the Vault token.
#  - pkcs11-tool -L shows the token needs a login; private keys are invisible before it;
#  - --login --pin <token> lists and signs (OpenSSL verifies); a wrong PIN gives
#    CKR_PIN_INCORRECT;
#  - a renewable 3 s PIN token is renewed while one process keeps signing;
#  - when the PIN token is revoked the next signature fails with CKR_USER_NOT_LOGGED_IN (a
#    PIN cannot be had again without the application);
#  - neither PIN is in the module's debug log.

# shellcheck source=tests/lib/common.sh
. "$(dirname "$0")/../lib/common.sh"
# shellcheck source=tests/connect/lib.sh
. "$(dirname "$0")/lib.sh"

vtp_require pkcs11-tool openssl jq
LOOP=$VTP_BUILDDIR/tests/connect/p11loop
[ -x "$LOOP" ] || vtp_fail "$LOOP is not built"
POL=$VTP_SRCDIR/conf/policies
u=$(vtp_conn_uniq)

vtp_conn_key ec1
vtp_conn_policy "vtp-sign-$u" "$POL/sign-only.hcl"
vtp_conn_policy "vtp-kv-$u" "$POL/kv-certs.hcl"
token() {
    local body acc
    body=$(vtp_api POST auth/token/create "$(jq -n --arg a "vtp-sign-$u" --arg b "vtp-kv-$u" \
        --arg t "$1" '{policies: [$a, $b], ttl: $t}')") || vtp_fail "could not create a token"
    acc=$(jq -r .auth.accessor <<<"$body")
    vtp_conn_at_exit vtp_api POST auth/token/revoke-accessor "{\"accessor\":\"$acc\"}"
    jq -r .auth.client_token <<<"$body"
}
pin=$(token 10m)
wrong="s.$(vtp_random_hex 12)"
secrets=("$VAULT_TOKEN" "$pin" "$wrong")

conf=$VTP_TMP/pin.conf
export VAULT_TRANSIT_PKCS11_CONFIG=$conf
vtp_conn_config "$conf" "auth = pin"
P11=(vtp_mod vtp_p11 --module "$VTP_MODULE")

vtp_check "pkcs11-tool -L" "${P11[@]}" -L
vtp_expect "the token says a login is required" 'token flags +:.*login required'
# Before C_Login the module has no token at all. It may answer the search with no private key
# (what PKCS#11 wants: only public objects are visible) or refuse it with
# CKR_USER_NOT_LOGGED_IN (what it does while it cannot list Transit without a token).
rc=0
out=$("${P11[@]}" -O --type privkey 2>&1) || rc=$?
if grep -q 'Private Key Object' <<<"$out"; then
    vtp_fail "a private key is visible before C_Login: $out"
elif [ "$rc" = 0 ]; then
    vtp_say "ok: no private key is visible before C_Login (the search finds nothing)"
elif grep -q 'CKR_USER_NOT_LOGGED_IN' <<<"$out"; then
    vtp_say "ok: no private key is visible before C_Login (C_FindObjectsInit says" \
        "CKR_USER_NOT_LOGGED_IN)"
else
    vtp_fail "listing before C_Login failed otherwise: $out"
fi
vtp_check "list private keys after --login --pin <token>" "${P11[@]}" --login --pin "$pin" \
    -O --type privkey
vtp_expect "the private key is listed after login" 'Private Key Object; EC'

vtp_conn_sign "sign after --login --pin <token>" --login --pin "$pin"

vtp_check_fails "log in with a wrong PIN" "${P11[@]}" --login --pin "$wrong" -O --type privkey
vtp_expect "C_Login says CKR_PIN_INCORRECT" 'C_Login.*(CKR_PIN_INCORRECT|0xa0)'

# A renewable short PIN token.
short=$(token 3s)
secrets+=("$short")
vtp_conn_log_reset
export VTP_P11_PIN=$short
vtp_check "15 signatures over 6 s after C_Login with a renewable 3 s token" \
    vtp_mod "$LOOP" -n 15 -i 400
unset VTP_P11_PIN
renewals=$(grep -c 'token renewed: lease 3 s' "$VTP_LOG" || true)
lookups=$(grep -c 'GET auth/token/lookup-self ->' "$VTP_LOG" || true)
vtp_say "lookup-self requests: $lookups, renewals: $renewals"
[ "$lookups" = 1 ] || vtp_fail "want one lookup-self (C_Login's), got $lookups"
[ "$renewals" -ge 2 ] || vtp_fail "the PIN token was not renewed"
vtp_say "ok: the PIN token was renewed before expiry"

# Revoke the PIN token between two signatures.
rm -f "$VTP_TMP/go"
VTP_P11_PIN=$pin vtp_mod "$LOOP" -a -n 2 -w "$VTP_TMP/go" >"$VTP_TMP/loop.out" 2>&1 &
loop_pid=$!
vtp_conn_wait_line "$VTP_TMP/loop.out" 'signature 1/2: ok'
vtp_api POST auth/token/revoke "{\"token\":\"$pin\"}" >/dev/null || vtp_fail "revoke failed"
touch "$VTP_TMP/go"
rc=0
wait "$loop_pid" || rc=$?
sed 's/^/  | /' "$VTP_TMP/loop.out"
[ "$rc" != 0 ] && grep -q 'signature 2/2: CKR_USER_NOT_LOGGED_IN' "$VTP_TMP/loop.out" ||
    vtp_fail "after the PIN token was revoked, want CKR_USER_NOT_LOGGED_IN"
vtp_say "ok: a revoked PIN token gives CKR_USER_NOT_LOGGED_IN"

vtp_conn_no_secrets "${secrets[@]}"
vtp_say PASS
