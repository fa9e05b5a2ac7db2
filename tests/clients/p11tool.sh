#!/usr/bin/env bash
# GnuTLS against the module, loaded directly with --provider (no p11-kit configuration):
#   p11tool.sh             against $VTP_MODULE (token vtp-test), under run-test
#   p11tool.sh --softhsm   the same against softhsm2, to check the test itself
# p11tool lists the token and its objects, generates EC P-256, EC P-384 and RSA-2048 key pairs
# (Ed25519 with pkcs11-tool: GnuTLS 3.7 asks for it with CKM_EDDSA as the generation
# mechanism), exports the public keys and runs --test-sign on pkcs11: URLs; certtool makes
# self-signed certificates (ECDSA, RSA PKCS#1 v1.5, RSA-PSS, Ed25519) and a CSR with the
# pkcs11: URL of the private key; OpenSSL verifies every one of them against the public key
# p11tool exported. A certificate is written to the token, read back and deleted with
# p11tool; finally p11tool --delete removes a key pair.

# shellcheck source=tests/lib/common.sh
. "$(dirname "$0")/../lib/common.sh"

vtp_require p11tool certtool pkcs11-tool openssl

SOFTHSM=no
if [ "${1:-}" = --softhsm ]; then
    SOFTHSM=yes
    vtp_softhsm_setup
    MODULE=$VTP_SOFTHSM_MODULE
    TOKEN=t
else
    MODULE=$VTP_MODULE
    TOKEN=vtp-test
    [ -e "$MODULE" ] || vtp_fail "module $MODULE is not built"
fi
PIN=1234
export GNUTLS_PIN=$PIN
cd "$VTP_TMP"
vtp_say "module $MODULE, token $TOKEN, $(p11tool --version | head -n 1)"

P11TOOL=(vtp_foreign p11tool --provider "$MODULE")
CERTTOOL=(vtp_foreign certtool --provider "$MODULE")
TOKURL="pkcs11:token=$TOKEN"

vtp_check "p11tool --list-tokens" "${P11TOOL[@]}" --list-tokens
vtp_expect "the token is listed by label" "^[[:space:]]+Label: $TOKEN\$"
vtp_expect "the token has a pkcs11: URL with its label" "URL: pkcs11:.*token=$TOKEN"
vtp_expect "the token URL has a serial" "URL: pkcs11:.*serial=[^;]+"

vtp_check "p11tool --list-mechanisms" "${P11TOOL[@]}" --list-mechanisms "$TOKURL"
vtp_expect "CKM_ECDSA is listed" 'CKM_ECDSA[^_]'
vtp_expect "CKM_RSA_PKCS_PSS is listed" 'CKM_RSA_PKCS_PSS'

cat >cert.tmpl <<'EOF'
cn = "vault-transit-pkcs11 p11tool test"
organization = "vtp tests"
serial = 7
expiration_days = 2
ca
cert_signing_key
signing_key
EOF

TAG=$(vtp_random_hex 3)
declare -A KID

# gen_gnutls NAME ARGS...: p11tool --generate-privkey with label p11tool-NAME-TAG and a fresh ID.
gen_gnutls() {
    local name=$1 label id
    shift
    label="p11tool-$name-$TAG"
    id=$(vtp_random_hex 6)
    KID[$name]=$id
    vtp_check "p11tool generates the $name key pair ($*)" \
        "${P11TOOL[@]}" --login --generate-privkey "$@" --label "$label" --id "$id" \
        --outfile "gen-$name.pem" "$TOKURL"
    vtp_check "p11tool printed the new public key" openssl pkey -pubin -in "gen-$name.pem" -noout
}

gen_gnutls ec256 ecdsa --curve secp256r1
gen_gnutls ec384 ecdsa --curve secp384r1
gen_gnutls rsa2048 rsa --bits 2048

HAVE_ED=no
# GnuTLS 3.7 asks for Ed25519 with CKM_EDDSA as the generation mechanism; a token that follows
# the spec refuses that, so the key comes from pkcs11-tool and GnuTLS uses it.
if [ "$SOFTHSM" = no ] ||
    vtp_p11 --module "$MODULE" -M 2>/dev/null | grep 'EC-EDWARDS-KEY-PAIR-GEN' >/dev/null; then
    KID[ed25519]=$(vtp_random_hex 6)
    vtp_check "pkcs11-tool generates an Ed25519 key pair" \
        vtp_p11 --module "$MODULE" --token-label "$TOKEN" --login --pin "$PIN" --keypairgen \
        --key-type EC:edwards25519 --label "p11tool-ed25519-$TAG" --id "${KID[ed25519]}"
    HAVE_ED=yes
else
    vtp_say "this softhsm2 lists no EC-EDWARDS-KEY-PAIR-GEN: no Ed25519 key"
fi
NAMES=(ec256 ec384 rsa2048)
[ "$HAVE_ED" = no ] || NAMES+=(ed25519)

vtp_check "p11tool --list-all" "${P11TOOL[@]}" --login --list-all "$TOKURL"
ALL=$VTP_LAST_OUT
url_of() { # url_of NAME private|public: the URL p11tool listed for it
    local idu
    idu=$(sed 's/../%&/g' <<<"${KID[$1]}")
    awk -v want="object=p11tool-$1-$TAG;type=$2" -v idu="$idu" '
        $1 == "URL:" && index(tolower($2), tolower("id=" idu ";")) && index($2, want) {
            print $2; exit }' <<<"$ALL"
}
for n in "${NAMES[@]}"; do
    for kind in private public; do
        u=$(url_of "$n" "$kind")
        [ -n "$u" ] || {
            printf '%s\n' "$ALL" | sed 's/^/  | /'
            vtp_fail "--list-all does not show the $kind $n key with its label and ID"
        }
        vtp_say "ok: --list-all shows $kind $n: $u"
    done
done
case $ALL in
*"Private key (EC/ECDSA-SECP256R1)"*) vtp_say "ok: listing names the P-256 curve" ;;
*)
    printf '%s\n' "$ALL" | sed 's/^/  | /'
    vtp_fail "listing does not say EC/ECDSA-SECP256R1"
    ;;
esac
case $ALL in
*"Private key (EC/ECDSA-SECP384R1)"*) vtp_say "ok: listing names the P-384 curve" ;;
*) vtp_fail "listing does not say EC/ECDSA-SECP384R1" ;;
esac
case $ALL in
*"Private key (RSA-2048)"*) vtp_say "ok: listing shows RSA-2048" ;;
*) vtp_fail "listing does not say RSA-2048" ;;
esac
vtp_expect "private keys are sensitive and never extractable" \
    'Flags: .*CKA_NEVER_EXTRACTABLE.*CKA_SENSITIVE'

for n in "${NAMES[@]}"; do
    priv="pkcs11:token=$TOKEN;object=p11tool-$n-$TAG;type=private"
    pub="pkcs11:token=$TOKEN;object=p11tool-$n-$TAG;type=public"
    vtp_say "--- $n"
    vtp_check "p11tool --export the $n public key" "${P11TOOL[@]}" --export "$pub" \
        --outfile "pub-$n.pem"
    vtp_check "OpenSSL reads the exported $n public key" \
        openssl pkey -pubin -in "pub-$n.pem" -outform DER -out "pub-$n.der"
    vtp_check "p11tool --export-pubkey of the private $n key" \
        "${P11TOOL[@]}" --login --export-pubkey "$priv" --outfile "pub2-$n.pem"
    openssl pkey -pubin -in "pub2-$n.pem" -outform DER -out "pub2-$n.der"
    cmp -s "pub-$n.der" "pub2-$n.der" ||
        vtp_fail "the $n public key differs between the private and the public object"
    vtp_say "ok: both objects give the same $n public key"
    if [ -e "gen-$n.pem" ]; then
        openssl pkey -pubin -in "gen-$n.pem" -outform DER -out "gen-$n.der"
        cmp -s "pub-$n.der" "gen-$n.der" ||
            vtp_fail "the exported $n public key is not the one key generation returned"
        vtp_say "ok: the exported $n public key is the generated one"
    fi

    # GnuTLS signs, then checks the signature with the key parameters and the token's
    # public object.
    hashes=(sha256)
    case $n in
    ec384) hashes=(sha384) ;;
    rsa*) hashes=(sha256 sha384 sha512) ;;
    ed25519) hashes=(sha512) ;;
    esac
    for h in "${hashes[@]}"; do
        vtp_check "p11tool --test-sign $n ($h)" \
            "${P11TOOL[@]}" --login --test-sign --hash "$h" "$priv"
        vtp_expect "the token's public key verifies it" \
            'Verifying against public key in the token\.\.\. ok'
    done
    case $n in
    rsa*)
        vtp_check "p11tool --test-sign $n with RSA-PSS" \
            "${P11TOOL[@]}" --login --test-sign --sign-params rsa-pss "$priv"
        vtp_expect "GnuTLS signed with RSA-PSS" 'Signing using RSA-PSS'
        vtp_expect "the token's public key verifies it" \
            'Verifying against public key in the token\.\.\. ok'
        ;;
    esac

    # certtool signs certificates and a CSR with the pkcs11: URL; OpenSSL checks them.
    variants=(plain)
    case $n in rsa*) variants+=(pss) ;; esac
    for v in "${variants[@]}"; do
        extra=()
        [ "$v" = plain ] || extra=(--sign-params rsa-pss --hash sha384)
        crt="self-$n-$v.pem"
        vtp_check "certtool --generate-self-signed with $priv ${extra[*]}" \
            "${CERTTOOL[@]}" --generate-self-signed --load-privkey "$priv" \
            --template cert.tmpl "${extra[@]}" --outfile "$crt"
        vtp_check "OpenSSL verifies the self-signed $n certificate ($v)" \
            openssl verify -check_ss_sig -CAfile "$crt" "$crt"
        vtp_expect "openssl says OK" ": OK\$"
        openssl x509 -in "$crt" -noout -pubkey | openssl pkey -pubin -outform DER -out crt.der
        cmp -s crt.der "pub-$n.der" ||
            vtp_fail "the $n certificate does not carry the exported public key"
        vtp_say "ok: the certificate carries the exported public key"
        vtp_check "describe the certificate" openssl x509 -in "$crt" -noout -text
        case $n/$v in
        ec256/*) vtp_expect "signed with ecdsa-with-SHA256" 'Signature Algorithm: ecdsa-with-SHA256' ;;
        ec384/*) vtp_expect "signed with ecdsa-with-SHA384" 'Signature Algorithm: ecdsa-with-SHA384' ;;
        rsa*/plain) vtp_expect "signed with sha256WithRSAEncryption" 'Signature Algorithm: sha256WithRSAEncryption' ;;
        rsa*/pss)
            vtp_expect "signed with rsassaPss" 'Signature Algorithm: rsassaPss'
            vtp_expect "PSS with SHA-384 and a 48-byte salt" 'Salt Length: 0x30'
            ;;
        ed25519/*) vtp_expect "signed with ED25519" 'Signature Algorithm: ED25519' ;;
        esac
        # -check_ss_sig makes OpenSSL check the signature of a self-signed trust anchor too.
        # Flip one bit of the signature: OpenSSL must reject the certificate.
        openssl x509 -in "$crt" -outform DER -out bad.der
        python3 -c 'import sys
b = bytearray(open(sys.argv[1], "rb").read()); b[-1] ^= 1
open(sys.argv[1], "wb").write(b)' bad.der
        openssl x509 -inform DER -in bad.der -out bad.pem
        vtp_check_fails "OpenSSL rejects the certificate with a flipped signature bit" \
            openssl verify -check_ss_sig -CAfile bad.pem bad.pem
    done
    vtp_check "certtool --generate-request with $priv" \
        "${CERTTOOL[@]}" --generate-request --load-privkey "$priv" --template cert.tmpl \
        --outfile "req-$n.pem"
    vtp_check "OpenSSL verifies the $n CSR" openssl req -in "req-$n.pem" -verify -noout
    vtp_expect "openssl says verify OK" 'verify OK'
done

# The P-256 self-signed certificate goes onto the token with the key's ID; GnuTLS lists it,
# exports it unchanged and finds it paired with the key.
cid=${KID[ec256]}
vtp_check "p11tool --write --load-certificate (the key's ID)" \
    "${P11TOOL[@]}" --login --write --load-certificate self-ec256-plain.pem \
    --label "p11tool-cert-$TAG" --id "$cid" "$TOKURL"
vtp_check "p11tool --list-all-certs" "${P11TOOL[@]}" --login --list-all-certs "$TOKURL"
vtp_expect "the certificate is listed with its label" "object=p11tool-cert-$TAG;type=cert"
vtp_check "p11tool --export the certificate" "${P11TOOL[@]}" --login --export \
    "pkcs11:token=$TOKEN;object=p11tool-cert-$TAG;type=cert" --outfile cert-read.pem
openssl x509 -in self-ec256-plain.pem -outform DER -out cert-w.der
openssl x509 -in cert-read.pem -outform DER -out cert-r.der
cmp -s cert-w.der cert-r.der || vtp_fail "the certificate read back differs from the one written"
vtp_say "ok: the certificate reads back byte for byte"
vtp_check "p11tool --delete the certificate" "${P11TOOL[@]}" --login --batch --delete \
    "pkcs11:token=$TOKEN;object=p11tool-cert-$TAG;type=cert"
# (p11tool exits 2 with "No matching objects found" when there is no certificate at all.)
out=$("${P11TOOL[@]}" --login --list-all-certs "$TOKURL" 2>&1) || true
if grep -q "object=p11tool-cert-$TAG" <<<"$out"; then
    printf '%s\n' "$out" | sed 's/^/  | /'
    vtp_fail "the deleted certificate is still listed"
fi
vtp_say "ok: the certificate is gone"

# p11tool --delete removes both halves of a key pair.
del="pkcs11:token=$TOKEN;object=p11tool-ec256-$TAG"
vtp_check "p11tool --delete the P-256 key pair" "${P11TOOL[@]}" --login --batch --delete "$del"
vtp_check "p11tool --list-all after the delete" "${P11TOOL[@]}" --login --list-all "$TOKURL"
if grep -q "object=p11tool-ec256-$TAG" <<<"$VTP_LAST_OUT"; then
    printf '%s\n' "$VTP_LAST_OUT" | sed 's/^/  | /'
    vtp_fail "the deleted P-256 key is still listed"
fi
vtp_say "ok: the deleted key is gone"
vtp_expect "the other keys are still there" "object=p11tool-rsa2048-$TAG;type=private"

vtp_say "PASS"
