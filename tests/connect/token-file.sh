#!/usr/bin/env bash
# auth = token_file, the way a Vault Agent sink rewrites it (new file, rename):
#  - a child token with the sign-only + kv-certs policies in the file: pkcs11-tool signs;
#  - one process keeps signing while the file is rewritten with a new token and the old one
#    revoked: right away (the module re-reads the file when Vault refuses the old token) and
#    after more than a second (the module notices the change itself, no refusal);
#  - the file still holds a revoked token: listing fails (C_FindObjectsInit: CKR_DEVICE_ERROR,
#    its list has no CKR_USER_NOT_LOGGED_IN);
#  - a renewable 3 s token in the file is looked up and renewed while one process signs;
#  - a token_file (or secret_id_file) group or others may write fails C_Initialize with an
#    error naming it and its mode; one others may read works with a warning;
#  - no token is in the module's debug log.

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

# token POLICY... : a child token of ours with those policies (10 min), revoked at exit.
token() {
    local body acc
    body=$(vtp_api POST auth/token/create "$(jq -n --arg a "vtp-sign-$u" --arg b "vtp-kv-$u" \
        --arg t "${TTL:-10m}" '{policies: [$a, $b], ttl: $t}')") ||
        vtp_fail "could not create a token"
    acc=$(jq -r .auth.accessor <<<"$body")
    vtp_conn_at_exit vtp_api POST auth/token/revoke-accessor "{\"accessor\":\"$acc\"}"
    jq -r .auth.client_token <<<"$body"
}

tf=$VTP_TMP/agent-sink/token
mkdir -p "$(dirname "$tf")"
# sink TOKEN: write the file as Vault Agent does (a new file renamed over the old one).
sink() {
    printf '%s\n' "$1" >"$tf.tmp"
    chmod 600 "$tf.tmp"
    mv -f "$tf.tmp" "$tf"
}
revoke() {
    vtp_api POST auth/token/revoke "{\"token\":\"$1\"}" >/dev/null || vtp_fail "revoke failed"
}

tok1=$(token)
tok2=$(token)
tok3=$(token)
secrets=("$VAULT_TOKEN" "$tok1" "$tok2" "$tok3")
sink "$tok1"
conf=$VTP_TMP/token-file.conf
export VAULT_TRANSIT_PKCS11_CONFIG=$conf
vtp_conn_config "$conf" "auth = token_file" "token_file = $tf"

vtp_conn_sign "sign with auth = token_file"

# Secret files follow the config file's rule: writable by group or others is refused at
# C_Initialize (CKR_GENERAL_ERROR, an error naming the file and its mode); readable by others
# works with a warning.
# refused MODE FILE DESC: C_Initialize fails and the log names FILE and MODE.
refused() {
    local rc=0 out
    chmod "$1" "$2"
    vtp_conn_log_reset
    out=$(vtp_mod vtp_p11 --module "$VTP_MODULE" -L 2>&1) || rc=$?
    [ "$rc" != 0 ] && grep -Eq 'C_Initialize.*(CKR_GENERAL_ERROR|0x5\))' <<<"$out" ||
        vtp_fail "$3 of mode $1: want C_Initialize to fail with CKR_GENERAL_ERROR: $out"
    grep -q "ERROR.*$2: holds $3 but group or others may write it (mode $1)" "$VTP_LOG" ||
        vtp_fail "$3 of mode $1: no error line naming $2 and its mode in the module log"
    vtp_say "ok: $3 of mode $1 is refused at C_Initialize"
}
refused 620 "$tf" "a Vault token"
refused 602 "$tf" "a Vault token"
chmod 604 "$tf"
vtp_conn_log_reset
vtp_conn_sign "sign with a token_file readable by others"
grep -q "WARN.*$tf: holds a Vault token and is readable by others (mode 604" "$VTP_LOG" ||
    vtp_fail "no warning that $tf is readable by others"
vtp_say "ok: a token_file readable by others works, with a warning"
chmod 600 "$tf"
# secret_id_file: checked at C_Initialize too (no login is tried: the role is made up).
printf 'not-a-secret-id\n' >"$VTP_TMP/secret-id"
vtp_conn_config "$VTP_TMP/approle.conf" "auth = approle" "role_id = none" \
    "secret_id_file = $VTP_TMP/secret-id"
VAULT_TRANSIT_PKCS11_CONFIG=$VTP_TMP/approle.conf refused 660 "$VTP_TMP/secret-id" \
    "an AppRole secret_id"

vtp_conn_log_reset
rm -f "$VTP_TMP/go"
vtp_mod "$LOOP" -n 3 -w "$VTP_TMP/go" >"$VTP_TMP/loop.out" 2>&1 &
loop_pid=$!
vtp_conn_wait_line "$VTP_TMP/loop.out" 'signature 1/3: ok'
sink "$tok2"
revoke "$tok1"
vtp_say "file rewritten with a new token, old token revoked; signing at once"
touch "$VTP_TMP/go"
vtp_conn_wait_line "$VTP_TMP/loop.out" 'signature 2/3'
sink "$tok3"
sleep 1.5
revoke "$tok2"
vtp_say "file rewritten again, 1.5 s later the old token revoked; signing"
touch "$VTP_TMP/go"
rc=0
wait "$loop_pid" || rc=$?
sed 's/^/  | /' "$VTP_TMP/loop.out"
[ "$rc" = 0 ] || vtp_fail "a signature failed after the token file was rewritten"
refused=$(grep -c 'Vault refused the token; logging in again' "$VTP_LOG" || true)
changes=$(grep -c "token_file $tf: new token in place" "$VTP_LOG" || true)
vtp_say "requests refused: $refused, new tokens read from the file: $changes"
[ "$refused" = 1 ] ||
    vtp_fail "want exactly one refusal (the immediate rewrite), the second change found by stat"
[ "$changes" -ge 3 ] || vtp_fail "want 3 reads of the file (start + 2 changes), got $changes"
vtp_say "ok: both rewrites were picked up: one on Vault's refusal, one by watching the file"

revoke "$tok3"
rc=0
out=$(vtp_mod vtp_p11 --module "$VTP_MODULE" -O --type privkey 2>&1) || rc=$?
[ "$rc" != 0 ] && grep -Eq 'C_FindObjectsInit.*(CKR_DEVICE_ERROR|0x30\))' <<<"$out" ||
    vtp_fail "with a revoked token in the file, want CKR_DEVICE_ERROR: $out"
vtp_say "ok: a revoked token in the file gives CKR_DEVICE_ERROR"

# Renewal of a renewable short token read from the file.
tok4=$(TTL=3s token)
secrets+=("$tok4")
sink "$tok4"
vtp_conn_log_reset
vtp_check "15 signatures over 6 s with a renewable 3 s token from the file" \
    vtp_mod "$LOOP" -n 15 -i 400
lookups=$(grep -c 'token: [0-9]* s left of 3 s, renewable' "$VTP_LOG" || true)
renewals=$(grep -c 'token renewed: lease 3 s' "$VTP_LOG" || true)
vtp_say "lookups: $lookups, renewals: $renewals"
[ "$lookups" = 1 ] && [ "$renewals" -ge 2 ] ||
    vtp_fail "want one lookup-self and at least two renewals"
vtp_say "ok: looked up once, renewed before expiry"

vtp_conn_no_secrets "${secrets[@]}"
vtp_say PASS
