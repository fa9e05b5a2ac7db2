#!/usr/bin/env bash
# auth = kubernetes against OpenBao's real kubernetes auth backend (mounted at
# kubernetes-<random>, removed after). No Kubernetes cluster is needed: the backend's one call
# to the Kubernetes API, TokenReview, is answered by tests/connect/fake-kube-api.py over TLS on
# loopback (CA made here; kubernetes_ca_cert, disable_local_ca_jwt). Service-account JWTs are
# RS256, made here with openssl; the backend verifies their signatures (pem_keys) and claims
# (bound service account name and namespace), then the TokenReview.
#  - jwt_file + role: pkcs11-tool signs (OpenSSL verifies);
#  - the kubelet "rotates" the projected token (new JWT in the file, the old one no longer
#    valid for the API) and the Vault token is revoked between two signatures of one process:
#    the module logs in again with the new JWT and signs;
#  - a JWT of a service account the role does not bind, and the pre-rotation JWT (TokenReview
#    says authenticated=false): the search finds no token to ask Vault with, which
#    C_FindObjectsInit (whose list has no CKR_USER_NOT_LOGGED_IN) says as CKR_DEVICE_ERROR;
#  - no JWT or token in the module's debug log.

# shellcheck source=tests/lib/common.sh
. "$(dirname "$0")/../lib/common.sh"
# shellcheck source=tests/connect/lib.sh
. "$(dirname "$0")/lib.sh"

vtp_require pkcs11-tool openssl jq python3
LOOP=$VTP_BUILDDIR/tests/connect/p11loop
[ -x "$LOOP" ] || vtp_fail "$LOOP is not built"
POL=$VTP_SRCDIR/conf/policies
u=$(vtp_conn_uniq)
d=$VTP_TMP/kube
mkdir -p "$d"
cd "$d"

# ---- keys and certificates for the fake API server and the service-account issuer
ossl() { vtp_ossl "$@" 2>/dev/null || vtp_fail "openssl $1 failed"; }
ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem \
    -days 2 -subj "/CN=vtp fake kube CA" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
ossl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout api.key -out api.csr \
    -subj "/CN=kubernetes"
printf 'subjectAltName=IP:127.0.0.1,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n' \
    >api.ext
ossl x509 -req -in api.csr -CA ca.pem -CAkey ca.key -set_serial "0x$(vtp_random_hex 8)" -days 2 \
    -out api.pem -extfile api.ext
ossl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa-signer.key
ossl pkey -in sa-signer.key -pubout -out sa-signer.pub

b64url() { vtp_ossl base64 -A | tr '+/' '-_' | tr -d '='; }
# jwt NAMESPACE NAME UID: an RS256 projected service-account token, valid for an hour.
jwt() {
    local now h p s
    now=$(date +%s)
    h=$(printf '{"alg":"RS256","kid":"vtp-test","typ":"JWT"}' | b64url)
    p=$(jq -cn --arg ns "$1" --arg n "$2" --arg uid "$3" --argjson now "$now" '{
        aud: ["https://kubernetes.default.svc"], exp: ($now + 3600), iat: $now, nbf: $now,
        iss: "https://kubernetes.default.svc", sub: "system:serviceaccount:\($ns):\($n)",
        "kubernetes.io": {namespace: $ns, serviceaccount: {name: $n, uid: $uid},
                          pod: {name: "signer-0", uid: "0b8c4ad5-pod"}}}' | b64url)
    s=$(printf '%s.%s' "$h" "$p" | vtp_ossl dgst -sha256 -sign sa-signer.key -binary | b64url)
    printf '%s.%s.%s' "$h" "$p" "$s"
}
uid1=$(cat /proc/sys/kernel/random/uuid)
jwt1=$(jwt vtp-ns signer "$uid1")
jwt2=$(jwt vtp-ns signer "$uid1")
while [ "$jwt2" = "$jwt1" ]; do sleep 1; jwt2=$(jwt vtp-ns signer "$uid1"); done
stranger=$(jwt vtp-ns intruder "$(cat /proc/sys/kernel/random/uuid)")
reviewer=$(jwt kube-system token-reviewer "$(cat /proc/sys/kernel/random/uuid)")
printf '%s\n' "$reviewer" >reviewer.jwt
chmod 600 reviewer.jwt

# registry: the tokens the fake API considers valid
registry() {
    jq -n "$@" >tokens.json.tmp && mv -f tokens.json.tmp tokens.json
}
registry --arg a "$jwt1" --arg c "$stranger" --arg uid "$uid1" \
    '{($a): {namespace: "vtp-ns", name: "signer", uid: $uid},
      ($c): {namespace: "vtp-ns", name: "intruder", uid: "x"}}'

python3 "$VTP_SRCDIR/tests/connect/fake-kube-api.py" --port-file port --tokens tokens.json \
    --reviewer-jwt reviewer.jwt --tls-cert api.pem --tls-key api.key --log api.log \
    >fake.out 2>&1 &
fake_pid=$!
vtp_conn_at_exit kill "$fake_pid"
for ((i = 0; i < 100; i++)); do
    [ -s port ] && break
    kill -0 "$fake_pid" 2>/dev/null || { cat fake.out; vtp_fail "fake-kube-api.py exited"; }
    sleep 0.1
done
[ -s port ] || vtp_fail "fake-kube-api.py did not start"
kube="https://127.0.0.1:$(cat port)"
vtp_say "fake Kubernetes API (TokenReview only) at $kube"

# ---- the backend
vtp_conn_key ec1
vtp_conn_policy "vtp-sign-$u" "$POL/sign-only.hcl"
vtp_conn_policy "vtp-kv-$u" "$POL/kv-certs.hcl"
mnt=$(vtp_conn_auth kubernetes)
vtp_api POST "auth/$mnt/config" "$(jq -n --arg h "$kube" --rawfile ca ca.pem \
    --rawfile pk sa-signer.pub --arg r "$reviewer" \
    '{kubernetes_host: $h, kubernetes_ca_cert: $ca, pem_keys: [$pk], token_reviewer_jwt: $r,
      disable_local_ca_jwt: true}')" >/dev/null || vtp_fail "could not configure $mnt"
vtp_api POST "auth/$mnt/role/signer" "$(jq -n --arg a "vtp-sign-$u" --arg b "vtp-kv-$u" \
    '{bound_service_account_names: ["signer"], bound_service_account_namespaces: ["vtp-ns"],
      token_policies: [$a, $b], token_ttl: "10m"}')" >/dev/null ||
    vtp_fail "could not create the kubernetes role"
vtp_say "kubernetes auth at $mnt/: role signer binds vtp-ns/signer"
secrets=("$VAULT_TOKEN" "$jwt1" "$jwt2" "$stranger" "$reviewer")

sa=$d/serviceaccount-token
printf '%s' "$jwt1" >"$sa"
chmod 600 "$sa"
conf=$VTP_TMP/kube.conf
export VAULT_TRANSIT_PKCS11_CONFIG=$conf
vtp_conn_config "$conf" "auth = kubernetes" "auth_mount = $mnt" "role = signer" "jwt_file = $sa"

vtp_conn_sign "sign with auth = kubernetes (service-account JWT + role)"
grep -q "kubernetes login at auth/$mnt/login: token with lease 600 s" "$VTP_LOG" ||
    vtp_fail "the log shows no kubernetes login"
grep -q 'authenticated=true vtp-ns/signer' api.log ||
    vtp_fail "OpenBao did not ask the fake API for a TokenReview"
vtp_say "ok: logged in; OpenBao checked the JWT with a TokenReview"

# token rotation by the kubelet + Vault token revoked, between two signatures
vtp_conn_log_reset
rm -f "$VTP_TMP/go"
vtp_mod "$LOOP" -n 2 -w "$VTP_TMP/go" >"$VTP_TMP/loop.out" 2>&1 &
loop_pid=$!
vtp_conn_wait_line "$VTP_TMP/loop.out" 'signature 1/2: ok'
printf '%s' "$jwt2" >"$sa.tmp" && chmod 600 "$sa.tmp" && mv -f "$sa.tmp" "$sa"
registry --arg b "$jwt2" --arg c "$stranger" --arg uid "$uid1" \
    '{($b): {namespace: "vtp-ns", name: "signer", uid: $uid},
      ($c): {namespace: "vtp-ns", name: "intruder", uid: "x"}}'
vtp_api POST "sys/leases/revoke-prefix/auth/$mnt/login" '{}' >/dev/null ||
    vtp_fail "could not revoke the kubernetes login tokens"
vtp_say "rotated the service-account JWT (old one invalid now) and revoked the Vault token"
touch "$VTP_TMP/go"
rc=0
wait "$loop_pid" || rc=$?
sed 's/^/  | /' "$VTP_TMP/loop.out"
[ "$rc" = 0 ] || vtp_fail "no signature after the rotation and revocation"
[ "$(grep -c "kubernetes login at auth/$mnt/login" "$VTP_LOG")" = 2 ] ||
    vtp_fail "want two kubernetes logins (start, after the revocation)"
vtp_say "ok: logged in again with the rotated JWT and signed"

# a service account the role does not bind
printf '%s' "$stranger" >"$d/stranger-token"
chmod 600 "$d/stranger-token"
vtp_conn_config "$conf" "auth = kubernetes" "auth_mount = $mnt" "role = signer" \
    "jwt_file = $d/stranger-token"
vtp_check_fails "auth = kubernetes with an unbound service account" \
    vtp_mod vtp_p11 --module "$VTP_MODULE" -O --type privkey
vtp_expect "refused: CKR_DEVICE_ERROR" 'C_FindObjectsInit.*(CKR_DEVICE_ERROR|0x30\))'

# the pre-rotation JWT: well signed and bound, but the API no longer knows it
printf '%s' "$jwt1" >"$d/stale-token"
chmod 600 "$d/stale-token"
vtp_conn_config "$conf" "auth = kubernetes" "auth_mount = $mnt" "role = signer" \
    "jwt_file = $d/stale-token"
vtp_check_fails "auth = kubernetes with a JWT the API no longer accepts" \
    vtp_mod vtp_p11 --module "$VTP_MODULE" -O --type privkey
vtp_expect "refused: CKR_DEVICE_ERROR" 'C_FindObjectsInit.*(CKR_DEVICE_ERROR|0x30\))'
grep -q 'authenticated=false' api.log || vtp_fail "no TokenReview said authenticated=false"
vtp_say "ok: OpenBao asked the API, which said the old JWT is invalid"

vtp_say "fake API requests: $(wc -l <api.log) ($(grep -c 'authenticated=true' api.log) authenticated)"
vtp_conn_no_secrets "${secrets[@]}"
vtp_say PASS
