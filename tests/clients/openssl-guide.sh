#!/usr/bin/env bash
# What docs/openssl.md shows, through the OpenSSL pkcs11 engine and, when it is installed,
# through pkcs11-provider (latchset):
#   openssl-guide.sh            against $VTP_MODULE (token vtp-test), under run-test
#   openssl-guide.sh --softhsm  the same against softhsm2, to check the test itself
# Keys come from pkcs11-tool (EC P-256, RSA-2048). For each way in, with pkcs11: URIs: the
# public key (-pubin), openssl req -x509 (EC; RSA-PSS), dgst -sign, a TLS 1.3 handshake of
# openssl s_server holding the token key with openssl s_client checking the chain and name,
# and cms -sign. Plain OpenSSL checks every result, and rejects tampered input.
# The provider is pkcs11.so in OpenSSL's MODULESDIR (Debian 13's pkcs11-provider package;
# Debian 12 has none) or the file named by VTP_PKCS11_PROVIDER; without it only the engine runs.

# shellcheck source=tests/lib/common.sh
. "$(dirname "$0")/../lib/common.sh"

vtp_require pkcs11-tool openssl timeout
vtp_engine_setup "$@"
vtp_say "engine $ENGINE, module $MODULE, token $TOKEN, $(openssl version)"

provider=${VTP_PKCS11_PROVIDER:-$(openssl version -m | sed -n 's/^MODULESDIR: "\(.*\)"$/\1/p')/pkcs11.so}
# The provider setup of docs/openssl.md: the default provider first, then pkcs11.
cat >provider.cnf <<EOF
openssl_conf = openssl_init

[openssl_init]
providers = providers_sect

[providers_sect]
default = default_sect
pkcs11 = pkcs11_sect

[default_sect]
activate = 1

[pkcs11_sect]
module = $provider
pkcs11-module-path = $MODULE
pkcs11-module-token-pin = $PIN
activate = 1
EOF

P11=(vtp_p11 --module "$MODULE" --token-label "$TOKEN")
TAG=$(vtp_random_hex 4)
printf 'openssl guide message %s\n' "$TAG" >data
{ cat data; printf 'x'; } >tampered

keygen() {
    vtp_check "generate $2 ($1) with pkcs11-tool" \
        "${P11[@]}" --login --pin "$PIN" --keypairgen --key-type "$2" --label "$1" \
        --id "$(vtp_random_hex 6)"
}
EC=guide-ec-$TAG
RSA=guide-rsa-$TAG
keygen "$EC" EC:prime256v1
keygen "$RSA" rsa:2048
# uri LABEL TYPE: the key's pkcs11: URI; the engine's carry the PIN (URI_EXTRA), since its
# section of openssl.cnf has none.
URI_EXTRA=
uri() { echo "pkcs11:token=$TOKEN;object=$1;type=$2$URI_EXTRA"; }

# tls NAME CERT KEYOPTS...: openssl s_server (with OPENSSL_CONF=$CNF) holding the token key
# (by URI) on a free port; openssl s_client, with no token, must finish a TLS 1.3 handshake and
# verify the chain and the name.
tls() {
    local name=$1 cert=$2 port pid i out rc=1
    shift 2
    port=$(vtp_free_port)
    (
        export OPENSSL_CONF=$CNF
        [ -z "$VTP_PRELOAD" ] || export LD_PRELOAD=$VTP_PRELOAD ASAN_OPTIONS=$VTP_ASAN_OPTIONS
        exec openssl s_server -accept "127.0.0.1:$port" -cert "$cert" "$@" \
            -key "$(uri "$EC" private)" -www >"s_server-$name.log" 2>&1 </dev/null
    ) &
    pid=$!
    for ((i = 0; i < 100; i++)); do
        out=$(echo Q | timeout 20 openssl s_client -connect "127.0.0.1:$port" \
            -servername localhost -verify_hostname localhost -CAfile "$cert" \
            -verify_return_error -brief 2>&1) && { rc=0; break; }
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    VTP_LAST_OUT="$out
--- s_server:
$(cat "s_server-$name.log")"
    if [ "$rc" != 0 ]; then
        printf '%s\n' "$VTP_LAST_OUT" | sed 's/^/  | /'
        vtp_fail "$name: the TLS handshake with the token key failed"
    fi
    vtp_say "ok: $name: s_client finished a TLS handshake with s_server's token key"
    vtp_expect "$name: TLS 1.3, the chain and the name verified" 'Verification: OK'
    vtp_expect "$name: the server signed with ECDSA" 'Signature type: ECDSA'
}

# run NAME KEYOPTS -- PUBOPTS: everything once, with OPENSSL_CONF=$CNF for the commands that
# use the token; KEYOPTS come before a private key's URI and PUBOPTS before a public key's.
ossl() { OPENSSL_CONF=$CNF vtp_ossl "$@"; }
run() {
    local name=$1 keyopts=() pubopts=()
    shift
    while [ "$1" != -- ]; do keyopts+=("$1"); shift; done
    shift
    pubopts=("$@")
    vtp_say "--- $name"

    vtp_check "$name: openssl pkey -pubin reads the EC public key" \
        ossl pkey "${pubopts[@]}" -pubin -in "$(uri "$EC" public)" -out "$name-ec.pub"
    vtp_check "$name: it is a P-256 key" openssl pkey -pubin -in "$name-ec.pub" -noout -text
    vtp_expect "$name: ASN1 OID prime256v1" 'ASN1 OID: prime256v1'
    vtp_check "$name: openssl pkey -pubin reads the RSA public key" \
        ossl pkey "${pubopts[@]}" -pubin -in "$(uri "$RSA" public)" -out "$name-rsa.pub"

    vtp_check "$name: openssl req -x509 with the EC token key" \
        ossl req -new -x509 "${keyopts[@]}" -key "$(uri "$EC" private)" -sha256 -days 2 \
        -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost" -out "$name-ec.pem"
    vtp_check "$name: openssl verify -check_ss_sig accepts it" \
        openssl verify -check_ss_sig -CAfile "$name-ec.pem" "$name-ec.pem"
    openssl x509 -in "$name-ec.pem" -noout -pubkey | cmp -s - "$name-ec.pub" ||
        vtp_fail "$name: the certificate does not hold the token's public key"
    vtp_say "ok: $name: the certificate holds the token's public key"
    vtp_check "$name: openssl req -x509 with the RSA token key, RSA-PSS" \
        ossl req -new -x509 "${keyopts[@]}" -key "$(uri "$RSA" private)" -sha256 \
        -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest -days 2 -subj "/CN=rsa" \
        -out "$name-rsa.pem"
    vtp_check "$name: openssl verify -check_ss_sig accepts it" \
        openssl verify -check_ss_sig -CAfile "$name-rsa.pem" "$name-rsa.pem"
    vtp_check "$name: describe it" openssl x509 -in "$name-rsa.pem" -noout -text
    vtp_expect "$name: RSA-PSS, salt 32" 'Salt Length: 0x20'

    local k
    for k in ec rsa; do
        local label=$EC
        [ "$k" = rsa ] && label=$RSA
        vtp_check "$name: openssl dgst -sha256 -sign with the $k token key" \
            ossl dgst -sha256 "${keyopts[@]}" -sign "$(uri "$label" private)" \
            -out "$name-$k.sig" data
        vtp_check "$name: openssl dgst -verify accepts the $k signature" \
            openssl dgst -sha256 -verify "$name-$k.pub" -signature "$name-$k.sig" data
        vtp_check_fails "$name: and rejects it over tampered data" \
            openssl dgst -sha256 -verify "$name-$k.pub" -signature "$name-$k.sig" tampered
    done

    tls "$name" "$name-ec.pem" "${keyopts[@]}"

    vtp_check "$name: openssl cms -sign with the EC token key" \
        ossl cms -sign -binary -in data -signer "$name-ec.pem" "${keyopts[@]}" \
        -inkey "$(uri "$EC" private)" -outform DER -out "$name.p7s"
    vtp_check "$name: openssl cms -verify accepts it" \
        openssl cms -verify -binary -inform DER -in "$name.p7s" -content data \
        -CAfile "$name-ec.pem" -out /dev/null
    vtp_check_fails "$name: and rejects it over tampered data" \
        openssl cms -verify -binary -inform DER -in "$name.p7s" -content tampered \
        -CAfile "$name-ec.pem" -out /dev/null
}


if [ -e "$provider" ]; then
    CNF=$VTP_TMP/provider.cnf
    vtp_check "openssl lists the pkcs11 provider" ossl list -providers
    vtp_expect "the pkcs11 provider is active" 'status: active'
    run provider --
else
    vtp_say "no pkcs11-provider at $provider (Debian 12 has no package for it; set" \
        "VTP_PKCS11_PROVIDER to one): the provider part is not run"
fi

CNF=$VTP_TMP/openssl.cnf
URI_EXTRA=";pin-value=$PIN"
run engine -engine pkcs11 -keyform engine -- -engine pkcs11 -inform engine
if [ -e "$provider" ]; then
    cmp -s provider-ec.pub engine-ec.pub ||
        vtp_fail "the engine and the provider read different EC public keys"
    vtp_say "ok: the engine and the provider read the same public keys"
fi

vtp_say "PASS"
