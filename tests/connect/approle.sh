#!/usr/bin/env bash
# auth = approle against a real AppRole backend (mounted at approle-<random>, removed after):
#  - role_id + secret_id in the config, then secret_id_file: pkcs11-tool signs, OpenSSL verifies;
#  - one process signing for ~10 s with a token of token_ttl=3s, token_max_ttl=6s: the module
#    renews it before it expires, logs in again when the max TTL stops renewals, and every
#    signature succeeds;
#  - after a pause longer than the max TTL the next signature logs in again;
#  - the token is revoked (auth/token/revoke-accessor) between two signatures of one process:
#    the next signature still works, through one re-login;
#  - 8 threads sign while the token is revoked: every signature succeeds, one re-login;
#  - no secret (secret ID, role ID, any token) is in the module's debug log.

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
mnt=$(vtp_conn_auth approle)
vtp_say "AppRole at $mnt/, policies vtp-sign-$u + vtp-kv-$u"

# role ROLE TTL MAX: create the role, set ROLE_ID and SECRET_ID.
role() {
    vtp_api POST "auth/$mnt/role/$1" "$(jq -n --arg t "$2" --arg m "$3" --arg p "vtp-sign-$u" \
        --arg k "vtp-kv-$u" '{token_policies: [$p, $k], token_ttl: $t, token_max_ttl: $m}')" \
        >/dev/null || vtp_fail "could not create role $1"
    ROLE_ID=$(vtp_api GET "auth/$mnt/role/$1/role-id" | jq -r .data.role_id)
    SECRET_ID=$(vtp_api POST "auth/$mnt/role/$1/secret-id" '{}' | jq -r .data.secret_id)
    [ -n "$ROLE_ID" ] && [ -n "$SECRET_ID" ] && [ "$SECRET_ID" != null ] ||
        vtp_fail "no role_id / secret_id for role $1"
}

role short 3s 6s
secrets=("$VAULT_TOKEN" "$ROLE_ID" "$SECRET_ID")
conf=$VTP_TMP/approle.conf
export VAULT_TRANSIT_PKCS11_CONFIG=$conf

vtp_conn_config "$conf" "auth = approle" "auth_mount = $mnt" "role_id = $ROLE_ID" \
    "secret_id = $SECRET_ID"
vtp_conn_sign "sign with auth = approle (role_id + secret_id in the config)"
grep -q "approle login at auth/$mnt/login: token with lease 3 s, renewable" "$VTP_LOG" ||
    vtp_fail "the module log shows no AppRole login with a 3 s lease"
vtp_say "ok: the module logged in at auth/$mnt/login (lease 3 s, renewable)"

printf '%s\n' "$SECRET_ID" >"$VTP_TMP/secret-id"
chmod 600 "$VTP_TMP/secret-id"
vtp_conn_config "$conf" "auth = approle" "auth_mount = $mnt" "role_id = $ROLE_ID" \
    "secret_id_file = $VTP_TMP/secret-id"
vtp_conn_sign "sign with auth = approle (secret_id_file)"

# One process for ~10 s, a signature every 0.4 s.
vtp_conn_log_reset
vtp_check "25 signatures over ~10 s with a 3 s token (max TTL 6 s) all succeed" \
    vtp_mod "$LOOP" -n 25 -i 400
vtp_say "$(tail -n 1 <<<"$VTP_LAST_OUT")"
vtp_say "what the module did about its token:"
grep -E 'do_renew|do_login|login:|lookup|due_locked|Vault refused' "$VTP_LOG" |
    sed -E 's/^[^ ]+T([0-9:.]+)Z .* (INFO|WARN|ERROR) [a-z_]+: /  \1 /'
renewals=$(grep -c 'token renewed: lease' "$VTP_LOG" || true)
logins=$(grep -c "approle login at auth/$mnt/login" "$VTP_LOG" || true)
capped=$(grep -c 'token renewal capped by its max TTL' "$VTP_LOG" || true)
refused=$(grep -c 'Vault refused the token' "$VTP_LOG" || true)
vtp_say "renewals: $renewals, logins: $logins, renewals capped by the max TTL: $capped," \
    "requests refused for an invalid token: $refused"
[ "$renewals" -ge 1 ] || vtp_fail "the token was never renewed"
[ "$logins" -ge 2 ] || vtp_fail "the module never logged in again when the max TTL was reached"
vtp_say "ok: renewed before expiry and logged in again at the max TTL"

# Idle past the max TTL: the token has expired when the second signature comes.
vtp_conn_log_reset
vtp_check "a signature after 7 s idle (the token expired meanwhile) succeeds" \
    vtp_mod "$LOOP" -n 2 -i 7000
logins=$(grep -c "approle login at auth/$mnt/login" "$VTP_LOG" || true)
[ "$logins" -ge 2 ] || vtp_fail "no second login after the token expired ($logins logins)"
vtp_say "ok: logged in again after expiry ($logins logins)"

# Revocation between two signatures of one process (a long-lived token this time, so that only
# the revocation can make it invalid).
role long 10m 1h
secrets+=("$ROLE_ID" "$SECRET_ID")
vtp_conn_config "$conf" "auth = approle" "auth_mount = $mnt" "role_id = $ROLE_ID" \
    "secret_id = $SECRET_ID"
vtp_conn_log_reset
rm -f "$VTP_TMP/go"
vtp_mod "$LOOP" -n 3 -w "$VTP_TMP/go" >"$VTP_TMP/loop.out" 2>&1 &
loop_pid=$!
vtp_conn_wait_line "$VTP_TMP/loop.out" 'signature 1/3: ok'
# The module's token: the one AppRole issued at our mount.
accessors=$(vtp_api LIST auth/token/accessors | jq -r '.data.keys[]')
revoked=0
for a in $accessors; do
    path=$(vtp_api POST auth/token/lookup-accessor "{\"accessor\":\"$a\"}" | jq -r .data.path)
    if [ "$path" = "auth/$mnt/login" ]; then
        vtp_api POST auth/token/revoke-accessor "{\"accessor\":\"$a\"}" >/dev/null ||
            vtp_fail "could not revoke accessor $a"
        revoked=$((revoked + 1))
    fi
done
[ "$revoked" -ge 1 ] || vtp_fail "found no token issued by auth/$mnt/login to revoke"
vtp_say "revoked $revoked token(s) issued by auth/$mnt/login"
touch "$VTP_TMP/go"
vtp_conn_wait_line "$VTP_TMP/loop.out" 'signature 2/3' 30
touch "$VTP_TMP/go"
rc=0
wait "$loop_pid" || rc=$?
sed 's/^/  | /' "$VTP_TMP/loop.out"
[ "$rc" = 0 ] || vtp_fail "signing after the revocation failed"
grep -q 'Vault refused the token; logging in again' "$VTP_LOG" ||
    vtp_fail "the module log does not show the re-login after the revocation"
vtp_say "ok: the revoked token was refused, the module logged in again and signed"

# Eight threads signing when the token is revoked: one re-login, no failed signature.
revoke_all() {
    local a path n=0
    for a in $(vtp_api LIST auth/token/accessors | jq -r '.data.keys[]'); do
        path=$(vtp_api POST auth/token/lookup-accessor "{\"accessor\":\"$a\"}" | jq -r .data.path)
        if [ "$path" = "auth/$mnt/login" ]; then
            vtp_api POST auth/token/revoke-accessor "{\"accessor\":\"$a\"}" >/dev/null ||
                vtp_fail "could not revoke accessor $a"
            n=$((n + 1))
        fi
    done
    echo "$n"
}
revoke_all >/dev/null
vtp_conn_log_reset
vtp_mod "$LOOP" -t 8 -n 30 -i 100 >"$VTP_TMP/loop.out" 2>&1 &
loop_pid=$!
sleep 1.5
n=$(revoke_all)
vtp_say "revoked $n token(s) while 8 threads sign"
rc=0
wait "$loop_pid" || rc=$?
sed 's/^/  | /' "$VTP_TMP/loop.out"
[ "$rc" = 0 ] || vtp_fail "a signature failed while 8 threads signed across the revocation"
logins=$(grep -c "approle login at auth/$mnt/login" "$VTP_LOG" || true)
refused=$(grep -c 'Vault refused the token' "$VTP_LOG" || true)
vtp_say "logins: $logins, requests refused for the revoked token: $refused"
[ "$logins" = 2 ] || vtp_fail "want 2 logins (start, one after the revocation), got $logins"
vtp_say "ok: 240 signatures by 8 threads, one re-login after the revocation"

vtp_conn_no_secrets "${secrets[@]}"
vtp_say PASS
