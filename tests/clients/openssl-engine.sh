#!/usr/bin/env bash
# OpenSSL signing through libengine-pkcs11-openssl with a pkcs11: URI key:
#   openssl-engine.sh            against $VTP_MODULE (token vtp-test), under run-test
#   openssl-engine.sh --softhsm  the same against softhsm2, to check the test itself
# Keys are generated with pkcs11-tool (EC P-256 and P-384, label + id); openssl pkeyutl signs
# a digest and openssl dgst signs a message through the engine; plain OpenSSL verifies both
# against the public key read back, and rejects them over tampered input.

# shellcheck source=tests/lib/common.sh
. "$(dirname "$0")/../lib/common.sh"

vtp_require pkcs11-tool openssl
vtp_engine_setup "$@"
vtp_say "engine $ENGINE, module $MODULE, token $TOKEN"
# The engine config applies to the openssl commands that use the engine (see the end for a
# process that has it and loads the module directly as well).
eossl() { OPENSSL_CONF="$VTP_TMP/openssl.cnf" vtp_ossl "$@"; }

P11=(vtp_p11 --module "$MODULE" --token-label "$TOKEN")

vtp_check "openssl loads the pkcs11 engine" eossl engine -t pkcs11
vtp_expect "the engine is available" '\[ available \]'

printf 'engine test message %s\n' "$(vtp_random_hex 16)" >data
{ cat data; printf 'x'; } >tampered

run_curve() {
    local curve=$1 hash=$2 ocurve=$3 tag id label uri
    tag=$(vtp_random_hex 4)
    id=$(vtp_random_hex 6)
    label="engine-$curve-$tag"
    uri="pkcs11:token=$TOKEN;object=$label;type=private;pin-value=$PIN"
    vtp_say "--- $curve: label $label, id $id"

    vtp_check "generate an EC:$curve key pair with pkcs11-tool" \
        "${P11[@]}" --login --pin "$PIN" --keypairgen --key-type "EC:$curve" \
        --label "$label" --id "$id"

    # The public key through the engine (by URI), and from pkcs11-tool's listing.
    vtp_check "openssl reads the public key through the engine" \
        eossl pkey -engine pkcs11 -inform engine -pubin \
        -in "pkcs11:token=$TOKEN;object=$label;type=public" -pubout -out "pub-$id.pem"
    vtp_check "describe the public key" openssl pkey -pubin -in "pub-$id.pem" -text -noout
    vtp_expect "the public key is on $curve" "ASN1 OID: $ocurve"

    openssl dgst "-$hash" -binary -out "data.$hash" data
    openssl dgst "-$hash" -binary -out "tampered.$hash" tampered

    vtp_check "openssl pkeyutl -sign with the pkcs11: URI key" \
        eossl pkeyutl -engine pkcs11 -keyform engine -inkey "$uri" -sign \
        -in "data.$hash" -out "sig-$id.der"
    vtp_check "the signature is DER" openssl asn1parse -inform DER -in "sig-$id.der"
    vtp_check "openssl pkeyutl -verify accepts it" \
        openssl pkeyutl -verify -pubin -inkey "pub-$id.pem" -in "data.$hash" \
        -sigfile "sig-$id.der"
    vtp_expect "openssl says Signature Verified Successfully" 'Signature Verified Successfully'
    vtp_check "openssl dgst -verify accepts it over the message" \
        openssl dgst "-$hash" -verify "pub-$id.pem" -signature "sig-$id.der" data
    vtp_expect "openssl says Verified OK" '^Verified OK'
    vtp_check_fails "openssl pkeyutl -verify rejects it over a tampered digest" \
        openssl pkeyutl -verify -pubin -inkey "pub-$id.pem" -in "tampered.$hash" \
        -sigfile "sig-$id.der"

    vtp_check "openssl dgst -$hash -sign with the pkcs11: URI key" \
        eossl dgst "-$hash" -engine pkcs11 -keyform engine -sign "$uri" \
        -out "sig-$id-dgst.der" data
    vtp_check "openssl dgst -verify accepts the message signature" \
        openssl dgst "-$hash" -verify "pub-$id.pem" -signature "sig-$id-dgst.der" data
    vtp_expect "openssl says Verified OK" '^Verified OK'
    vtp_check_fails "openssl dgst -verify rejects it over a tampered message" \
        openssl dgst "-$hash" -verify "pub-$id.pem" -signature "sig-$id-dgst.der" tampered
}

run_curve prime256v1 sha256 prime256v1
run_curve secp384r1 sha384 secp384r1

# A system-wide openssl.cnf that loads the pkcs11 engine (init = 0) is common: every process
# using OpenSSL then has the engine loaded, pkcs11-tool included, and the module must still
# work there (it parses Transit's public keys with the same OpenSSL).
vtp_say "--- pkcs11-tool in a process whose OpenSSL config loads the pkcs11 engine"
label="engine-conf-$(vtp_random_hex 4)"
id=$(vtp_random_hex 6)
confp11() { OPENSSL_CONF="$VTP_TMP/openssl.cnf" "${P11[@]}" "$@"; }
vtp_check "generate an EC:prime256v1 key pair with OPENSSL_CONF loading the engine" \
    confp11 --login --pin "$PIN" --keypairgen --key-type EC:prime256v1 --label "$label" --id "$id"
printf 'x' | openssl dgst -sha256 -binary -out conf.sha256
vtp_check "sign with it with OPENSSL_CONF loading the engine" \
    confp11 --login --pin "$PIN" --sign -m ECDSA --id "$id" -i conf.sha256 -o conf.sig

vtp_say "PASS"
