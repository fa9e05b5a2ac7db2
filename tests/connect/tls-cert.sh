#!/usr/bin/env bash
# TLS and auth = cert against a real (non-dev) OpenBao with a TLS listener, started by this
# test (in-memory storage; initialised and unsealed through the HTTP API), or against the
# server VAULT_ADDR names when it is https and VAULT_CACERT is set (then the checks that need
# our own server certificate are left out; an http VAULT_ADDR skips the test). A
# CA, the server certificate (DNS names localhost and vault.test, no IP) and a client CA and
# certificate are made here with openssl.
#  - ca_cert = file: signs (OpenSSL verifies);
#  - ca_path = directory (openssl rehash): signs;
#  - a CA that did not sign the server certificate: CKR_DEVICE_ERROR;
#  - https://127.0.0.1 (not a name in the certificate): CKR_DEVICE_ERROR; with
#    tls_server_name = vault.test: signs;
#  - VAULT_SKIP_VERIFY=true without any CA: signs, and the log carries the warning;
#  - auth = cert (client_cert/client_key, a cert role trusting the client CA): logs in, signs;
#    a client certificate of another CA is refused (C_FindObjectsInit: CKR_DEVICE_ERROR, its
#    list has no CKR_USER_NOT_LOGGED_IN);
#    the token is revoked between two signatures of one process: it logs in again, signs;
#  - no token or key material in the module's debug log.

# shellcheck source=tests/lib/common.sh
. "$(dirname "$0")/../lib/common.sh"
# shellcheck source=tests/connect/lib.sh
. "$(dirname "$0")/lib.sh"

vtp_require pkcs11-tool openssl jq curl
LOOP=$VTP_BUILDDIR/tests/connect/p11loop
[ -x "$LOOP" ] || vtp_fail "$LOOP is not built"
vtp_bao_find || vtp_fail "no bao binary"
POL=$VTP_SRCDIR/conf/policies
u=$(vtp_conn_uniq)
d=$VTP_TMP/tls
mkdir -p "$d/capath"
cd "$d"

# ---- certificates
ossl() { vtp_ossl "$@" 2>/dev/null || vtp_fail "openssl $1 failed"; }
ca() { # ca NAME CN
    ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" \
        -out "$1.pem" -days 2 -subj "/CN=$2" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
}
leaf() { # leaf NAME CA CN EXTENSIONS
    ossl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" -out "$1.csr" \
        -subj "/CN=$3"
    printf '%b' "$4" >"$1.ext"
    ossl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -set_serial "0x$(vtp_random_hex 8)" \
        -days 2 -out "$1.pem" -extfile "$1.ext"
    chmod 600 "$1.key"
}
ca ca "vtp test server CA"
ca other "vtp unrelated CA"
ca clientca "vtp test client CA"
leaf server ca vault.test \
    'subjectAltName=DNS:localhost,DNS:vault.test\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n'
leaf client clientca vtp-client \
    'extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n'
leaf stranger other vtp-client \
    'extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n'
cp ca.pem capath/
ossl rehash capath
vtp_say "made a server CA, a server certificate for localhost + vault.test, a client CA + cert"

# ---- the server: our own, unless VAULT_ADDR names one (then it must be https with VAULT_CACERT)
external=no
if [ "${VTP_OWN_SERVER:-}" != yes ] && [ -n "${VAULT_ADDR:-}" ]; then
    case $VAULT_ADDR in
    https://*) [ -n "${VAULT_CACERT:-}" ] && external=yes ;;
    esac
    if [ "$external" != yes ]; then
        vtp_say "SKIP: VAULT_ADDR=$VAULT_ADDR is not https with VAULT_CACERT: no TLS to test there"
        exit 77
    fi
fi
if [ "$external" = yes ]; then
    # The server's own certificate: its CA is VAULT_CACERT, its names are not ours to know.
    cp "$VAULT_CACERT" ca.pem
    rm -f capath/*
    cp ca.pem capath/
    ossl rehash capath
    vtp_say "using the server at $VAULT_ADDR (VAULT_CACERT $VAULT_CACERT): no server started"
    secrets=("$VAULT_TOKEN" "$(sed -n '2p' client.key)")
    srv_addr=$VAULT_ADDR
else
    port=$(vtp_free_port)
    cat >server.hcl <<EOF
storage "inmem" {}
listener "tcp" {
  address = "127.0.0.1:$port"
  tls_cert_file = "$d/server.pem"
  tls_key_file = "$d/server.key"
  tls_client_ca_file = "$d/clientca.pem"
  tls_require_and_verify_client_cert = false
}
api_addr = "https://localhost:$port"
# HashiCorp Vault >= 1.20 refuses to start without it; OpenBao warns that it is unknown and goes on
disable_mlock = true
EOF
    env -u LD_PRELOAD -u ASAN_OPTIONS -u VAULT_ADDR -u VAULT_TOKEN -u BAO_ADDR -u BAO_TOKEN HOME="$d" \
        "$VTP_BAO" server -config="$d/server.hcl" >"$d/bao.log" 2>&1 </dev/null &
    bao_pid=$!
    vtp_conn_at_exit kill "$bao_pid"

    export VAULT_ADDR="https://localhost:$port" VAULT_CACERT="$d/ca.pem"
    unset VAULT_TOKEN VAULT_NAMESPACE
    for ((i = 0; i < 200; i++)); do
        code=$(vtp_curl -s -o /dev/null -w '%{http_code}' --cacert ca.pem "$VAULT_ADDR/v1/sys/health") || true
        [ "$code" = 501 ] && break
        kill -0 "$bao_pid" 2>/dev/null || { cat "$d/bao.log"; vtp_fail "bao server exited"; }
        sleep 0.1
    done
    [ "$code" = 501 ] || { tail -n 20 "$d/bao.log"; vtp_fail "the TLS server did not come up ($code)"; }
    init=$(vtp_api PUT sys/init '{"secret_shares":1,"secret_threshold":1}') || vtp_fail "init failed"
    unseal_key=$(jq -r '.keys_base64[0]' <<<"$init")
    VAULT_TOKEN=$(jq -r .root_token <<<"$init")
    export VAULT_TOKEN
    vtp_api PUT sys/unseal "{\"key\":\"$unseal_key\"}" >/dev/null || vtp_fail "unseal failed"
    for ((i = 0; i < 200; i++)); do
        code=$(vtp_curl -s -o /dev/null -w '%{http_code}' --cacert ca.pem "$VAULT_ADDR/v1/sys/health") || true
        [ "$code" = 200 ] && break
        sleep 0.1
    done
    [ "$code" = 200 ] || vtp_fail "the server is not active after unseal ($code)"
    vtp_say "OpenBao with a TLS listener at $VAULT_ADDR: initialised and unsealed through the API"
    secrets=("$VAULT_TOKEN" "$unseal_key" "$(sed -n '2p' client.key)")

    srv_addr="https://localhost:$port"
fi
vtp_setup_mounts || vtp_fail "could not enable Transit and KV"
vtp_conn_key ec1
vtp_conn_policy "vtp-sign-$u" "$POL/sign-only.hcl"
vtp_conn_policy "vtp-kv-$u" "$POL/kv-certs.hcl"
tok=$(vtp_conn_token 10m "vtp-sign-$u" "vtp-kv-$u")
secrets+=("$tok")

conf=$VTP_TMP/tls.conf
export VAULT_TRANSIT_PKCS11_CONFIG=$conf
P11=(vtp_mod vtp_p11 --module "$VTP_MODULE")
# fails_with DESC RV: listing must fail with that CK_RV.
fails_with() {
    vtp_check_fails "$1" "${P11[@]}" -O --type privkey
    grep -Eq "$2" <<<"$VTP_LAST_OUT" || vtp_fail "$1: want $2: $VTP_LAST_OUT"
    vtp_say "ok: $1: $2"
}

VTP_CONN_ADDR=$srv_addr
vtp_conn_config "$conf" "auth = token" "token = $tok" "ca_cert = $d/ca.pem"
vtp_conn_sign "TLS with ca_cert = file"

vtp_conn_config "$conf" "auth = token" "token = $tok" "ca_path = $d/capath"
vtp_conn_sign "TLS with ca_path = directory (openssl rehash)"

vtp_conn_config "$conf" "auth = token" "token = $tok" "ca_cert = $d/other.pem"
fails_with "TLS with a CA that did not sign the server certificate" 'CKR_DEVICE_ERROR|0x30\)'

if [ "$external" != yes ]; then
    VTP_CONN_ADDR="https://127.0.0.1:$port"
    vtp_conn_config "$conf" "auth = token" "token = $tok" "ca_cert = $d/ca.pem"
    fails_with "TLS to 127.0.0.1, a name not in the certificate" 'CKR_DEVICE_ERROR|0x30\)'
    vtp_conn_config "$conf" "auth = token" "token = $tok" "ca_cert = $d/ca.pem" \
        "tls_server_name = vault.test"
    vtp_conn_sign "TLS to 127.0.0.1 with tls_server_name = vault.test"
fi

vtp_conn_log_reset
VTP_CONN_ADDR=$srv_addr
vtp_conn_config "$conf" "auth = token" "token = $tok"
if [ "$external" != yes ]; then # another server's CA may be in the system store
    fails_with "TLS without any CA (the system store does not know ours)" 'CKR_DEVICE_ERROR|0x30\)'
fi
VTP_MOD_ENV=(VAULT_SKIP_VERIFY=true)
vtp_conn_sign "VAULT_SKIP_VERIFY=true without any CA"
VTP_MOD_ENV=()
grep -q 'WARN.*TLS verification is DISABLED' "$VTP_LOG" ||
    vtp_fail "no warning about VAULT_SKIP_VERIFY in the log"
vtp_say "ok: the log warns that TLS verification is disabled"

# ---- auth = cert
cmnt=$(vtp_conn_auth cert)
vtp_api POST "auth/$cmnt/certs/vtp-client" "$(jq -n --rawfile c clientca.pem \
    --arg a "vtp-sign-$u" --arg b "vtp-kv-$u" \
    '{certificate: $c, token_policies: [$a, $b], token_ttl: "10m", allowed_common_names: ["vtp-client"]}')" \
    >/dev/null || vtp_fail "could not create the cert role"
vtp_conn_config "$conf" "auth = cert" "auth_mount = $cmnt" "role = vtp-client" \
    "ca_cert = $d/ca.pem" "client_cert = $d/client.pem" "client_key = $d/client.key"
vtp_conn_log_reset
vtp_conn_sign "auth = cert (TLS client certificate)"
grep -q "cert login at auth/$cmnt/login: token with lease 600 s" "$VTP_LOG" ||
    vtp_fail "the log shows no cert login"
vtp_say "ok: logged in with the client certificate at auth/$cmnt/login"

vtp_conn_config "$conf" "auth = cert" "auth_mount = $cmnt" "ca_cert = $d/ca.pem" \
    "client_cert = $d/stranger.pem" "client_key = $d/stranger.key"
vtp_check_fails "auth = cert with a client certificate of another CA" "${P11[@]}" -O --type privkey
vtp_expect "the login is refused: CKR_DEVICE_ERROR" 'C_FindObjectsInit.*(CKR_DEVICE_ERROR|0x30\))'

vtp_conn_config "$conf" "auth = cert" "auth_mount = $cmnt" "role = vtp-client" \
    "ca_cert = $d/ca.pem" "client_cert = $d/client.pem" "client_key = $d/client.key"
vtp_conn_log_reset
rm -f "$VTP_TMP/go"
vtp_mod "$LOOP" -n 2 -w "$VTP_TMP/go" >"$VTP_TMP/loop.out" 2>&1 &
loop_pid=$!
vtp_conn_wait_line "$VTP_TMP/loop.out" 'signature 1/2: ok'
vtp_api POST "sys/leases/revoke-prefix/auth/$cmnt/login" '{}' >/dev/null ||
    vtp_fail "could not revoke the cert login tokens"
touch "$VTP_TMP/go"
rc=0
wait "$loop_pid" || rc=$?
sed 's/^/  | /' "$VTP_TMP/loop.out"
[ "$rc" = 0 ] || vtp_fail "no signature after the cert token was revoked"
[ "$(grep -c "cert login at auth/$cmnt/login" "$VTP_LOG")" = 2 ] ||
    vtp_fail "want two cert logins (start, after the revocation)"
vtp_say "ok: the revoked cert token was replaced by a new cert login"

vtp_conn_no_secrets "${secrets[@]}"
vtp_say PASS
