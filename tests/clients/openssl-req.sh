#!/usr/bin/env bash
# CSRs and certificates signed through libengine-pkcs11-openssl with a pkcs11: URI key:
#   openssl-req.sh            against $VTP_MODULE (token vtp-test), under run-test
#   openssl-req.sh --softhsm  the same against softhsm2, to check the test itself
# Keys come from pkcs11-tool (EC P-256, EC P-384, RSA-2048). For each key and signature kind
# (ECDSA; RSA PKCS#1 v1.5; RSA-PSS with -sigopt rsa_padding_mode:pss, salt = digest and salt =
# max) `openssl req -engine pkcs11 -keyform engine` makes a CSR and a self-signed CA
# certificate, and `openssl x509 -req -CAkeyform engine` issues a leaf certificate with the
# token key. Plain OpenSSL checks them: `openssl req -verify`, `openssl verify -check_ss_sig`
# (a self-signed anchor's signature is checked only with that flag), the public key in each
# is the token's, the signature algorithm is the one asked for, and a flipped signature bit is
# rejected. The EC CA certificate is written to the token with pkcs11-tool, read back and
# deleted.

# shellcheck source=tests/lib/common.sh
. "$(dirname "$0")/../lib/common.sh"

vtp_require pkcs11-tool openssl python3
vtp_engine_setup "$@"
vtp_say "engine $ENGINE, module $MODULE, token $TOKEN, $(openssl version)"
# Only the commands that use the token see it; every check runs in plain OpenSSL.
eng() { OPENSSL_CONF="$VTP_TMP/openssl.cnf" vtp_ossl "$@"; }

P11=(vtp_p11 --module "$MODULE" --token-label "$TOKEN")
TAG=$(vtp_random_hex 4)

vtp_check "openssl loads the pkcs11 engine" eng engine -t pkcs11
vtp_expect "the engine is available" '\[ available \]'

# A software key and its CSR for the leaf certificates.
vtp_check "a software leaf key" openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
    -out leaf.key
vtp_check "a CSR for the leaf" openssl req -new -key leaf.key -subj "/CN=leaf $TAG" -out leaf.csr

# flip_sig IN OUT FORM: OUT is IN (PEM x509 or req) with the last bit of its signature flipped.
flip_sig() {
    openssl "$3" -in "$1" -outform DER -out flip.der
    python3 -c 'import sys
b = bytearray(open(sys.argv[1], "rb").read()); b[-1] ^= 1
open(sys.argv[1], "wb").write(b)' flip.der
    openssl "$3" -inform DER -in flip.der -out "$2"
}

# same_key PEM_OBJECT KIND PUB: the public key inside the CSR/certificate is the token's.
same_key() {
    local obj=$1 kind=$2 pub=$3
    case $kind in
    req) openssl req -in "$obj" -noout -pubkey >obj-pub.pem ;;
    x509) openssl x509 -in "$obj" -noout -pubkey >obj-pub.pem ;;
    esac
    openssl pkey -pubin -in obj-pub.pem -outform DER -out obj-pub.der
    openssl pkey -pubin -in "$pub" -outform DER -out tok-pub.der
    cmp -s obj-pub.der tok-pub.der || vtp_fail "$obj does not carry the token's public key"
    vtp_say "ok: $obj carries the token's public key"
}

# run_case NAME URI PUB HASH EXPECT SIGOPTS...: CSR, self-signed CA, leaf; EXPECT is a regex
# for openssl's "Signature Algorithm" text.
run_case() {
    local name=$1 uri=$2 pub=$3 hash=$4 expect=$5 out
    shift 5
    local sigopts=("$@")
    vtp_say "--- $name: -$hash ${sigopts[*]}"

    vtp_check "$name: openssl req -new (CSR) with the pkcs11: key" \
        eng req -new -engine pkcs11 -keyform engine -key "$uri" "-$hash" "${sigopts[@]}" \
        -subj "/O=vault-transit-pkcs11 tests/CN=$name $TAG" -out "$name.csr"
    vtp_check "$name: openssl req -verify accepts the CSR" \
        openssl req -in "$name.csr" -verify -noout
    vtp_expect "openssl says verify OK" 'verify OK'
    vtp_check "$name: describe the CSR" openssl req -in "$name.csr" -noout -text
    vtp_expect "$name: the CSR is signed with $expect" "Signature Algorithm: $expect"
    same_key "$name.csr" req "$pub"
    flip_sig "$name.csr" "$name-bad.csr" req
    # openssl 3.0 req -verify exits 0 on a bad signature: look at what it says.
    out=$(openssl req -in "$name-bad.csr" -verify -noout 2>&1) || true
    if grep -q 'verify OK' <<<"$out" || ! grep -q 'verify failure' <<<"$out"; then
        printf '%s\n' "$out" | sed 's/^/  | /'
        vtp_fail "$name: openssl req -verify accepts the CSR with a flipped signature bit"
    fi
    vtp_say "ok: $name: openssl req -verify rejects the CSR with a flipped signature bit"

    vtp_check "$name: openssl req -x509 (self-signed CA) with the pkcs11: key" \
        eng req -new -x509 -engine pkcs11 -keyform engine -key "$uri" "-$hash" \
        "${sigopts[@]}" -days 2 -subj "/O=vault-transit-pkcs11 tests/CN=$name CA $TAG" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" -out "$name-ca.pem"
    vtp_check "$name: openssl verify -check_ss_sig accepts the self-signed certificate" \
        openssl verify -check_ss_sig -CAfile "$name-ca.pem" "$name-ca.pem"
    vtp_expect "openssl says OK" ': OK$'
    vtp_check "$name: describe the certificate" openssl x509 -in "$name-ca.pem" -noout -text
    vtp_expect "$name: the certificate is signed with $expect" "Signature Algorithm: $expect"
    same_key "$name-ca.pem" x509 "$pub"
    flip_sig "$name-ca.pem" "$name-ca-bad.pem" x509
    vtp_check_fails "$name: openssl verify rejects the certificate with a flipped signature bit" \
        openssl verify -check_ss_sig -CAfile "$name-ca-bad.pem" "$name-ca-bad.pem"

    vtp_check "$name: openssl x509 -req issues a leaf with the pkcs11: CA key" \
        eng x509 -req -engine pkcs11 -in leaf.csr -CA "$name-ca.pem" -CAkey "$uri" \
        -CAkeyform engine "-$hash" "${sigopts[@]}" -days 1 -set_serial "0x$(vtp_random_hex 8)" \
        -out "$name-leaf.pem"
    vtp_check "$name: openssl verify accepts the leaf under the CA" \
        openssl verify -check_ss_sig -CAfile "$name-ca.pem" "$name-leaf.pem"
    vtp_expect "openssl says OK" ': OK$'
    vtp_check "$name: describe the leaf" openssl x509 -in "$name-leaf.pem" -noout -text
    vtp_expect "$name: the leaf is signed with $expect" "Signature Algorithm: $expect"
}

# keygen NAME KEYTYPE: a token key pair; sets URI, PUB, KEYID and KEYLABEL.
keygen() {
    local name=$1 type=$2 label="req-$1-$TAG"
    KEYID=$(vtp_random_hex 6)
    KEYLABEL=$label
    vtp_check "generate $type ($label) with pkcs11-tool" \
        "${P11[@]}" --login --pin "$PIN" --keypairgen --key-type "$type" --label "$label" \
        --id "$KEYID"
    URI="pkcs11:token=$TOKEN;object=$label;type=private;pin-value=$PIN"
    PUB="$VTP_TMP/$name-pub.pem"
    vtp_check "the engine reads the $name public key" \
        eng pkey -engine pkcs11 -inform engine -pubin \
        -in "pkcs11:token=$TOKEN;object=$label;type=public" -pubout -out "$PUB"
}

keygen ec256 EC:prime256v1
run_case ec256-sha256 "$URI" "$PUB" sha256 'ecdsa-with-SHA256'

# The self-signed certificate goes onto the token next to its key (same CKA_ID), as a CA
# keeps it: pkcs11-tool writes it, reads it back and deletes it again.
openssl x509 -in ec256-sha256-ca.pem -outform DER -out ca.der
vtp_check "pkcs11-tool --write-object the certificate (--type cert, key's ID)" \
    "${P11[@]}" --login --pin "$PIN" --write-object ca.der --type cert --id "$KEYID" \
    --label "$KEYLABEL"
vtp_check "pkcs11-tool lists the certificate" "${P11[@]}" --login --pin "$PIN" -O --type cert
vtp_expect "a certificate object with the key's label" "label: +$KEYLABEL\$"
vtp_check "pkcs11-tool --read-object --type cert" \
    "${P11[@]}" --login --pin "$PIN" --read-object --type cert --id "$KEYID" -o ca-read.der
cmp -s ca.der ca-read.der || vtp_fail "the certificate read back differs from the one written"
vtp_say "ok: the certificate reads back byte for byte"
vtp_check "pkcs11-tool --delete-object --type cert" \
    "${P11[@]}" --login --pin "$PIN" --delete-object --type cert --id "$KEYID"
vtp_check "pkcs11-tool lists certificates after the delete" \
    "${P11[@]}" --login --pin "$PIN" -O --type cert
if grep -q "label: *$KEYLABEL\$" <<<"$VTP_LAST_OUT"; then
    vtp_fail "the deleted certificate is still listed"
fi
vtp_say "ok: the certificate is gone"
vtp_check "the key pair is still there" "${P11[@]}" --login --pin "$PIN" -O --id "$KEYID"
vtp_expect "the private key is listed" 'Private Key Object'

keygen ec384 EC:secp384r1
run_case ec384-sha384 "$URI" "$PUB" sha384 'ecdsa-with-SHA384'

keygen rsa2048 rsa:2048
run_case rsa-pkcs1-sha256 "$URI" "$PUB" sha256 'sha256WithRSAEncryption'
run_case rsa-pss-sha256 "$URI" "$PUB" sha256 'rsassaPss' \
    -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest
vtp_check "describe the PSS certificate" openssl x509 -in rsa-pss-sha256-ca.pem -noout -text
vtp_expect "PSS with SHA-256, MGF1-SHA256, salt = 32 (the digest length)" \
    'Hash Algorithm: sha256.*'
vtp_expect "the PSS salt is 32 bytes" 'Salt Length: 0x20'
run_case rsa-pss-sha384-max "$URI" "$PUB" sha384 'rsassaPss' \
    -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:max
vtp_check "describe the PSS (max salt) certificate" \
    openssl x509 -in rsa-pss-sha384-max-ca.pem -noout -text
vtp_expect "PSS with SHA-384" 'Hash Algorithm: sha384'
vtp_expect "the salt is the maximum for RSA-2048 and SHA-384 (206 bytes)" 'Salt Length: 0xCE'

vtp_say "PASS"
