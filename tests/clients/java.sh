#!/usr/bin/env bash
# Java's SunPKCS11 provider (Debian's OpenJDK 17: keytool, jarsigner, javac) against the module,
# under run-test. Every command is a fresh JVM, as a user's would be:
#   keytool -list; keytool -genkeypair of an EC key (P-256) and of an RSA-2048 key
#   (-providerName, so that the token makes it) with self-signed certificates; an RSA
#   -genkeypair without -providerName (the key is made in software and imported: refused, and
#   no Transit key may be left); -genkeypair with a config that lacks the CKA_TOKEN line (a
#   session key: refused with CKR_TEMPLATE_INCONSISTENT, no Transit key left); in a new JVM
#   keytool -list shows both entries with their certificate; keytool -certreq, a test CA's
#   answer imported with -importcert; tests/clients/java/VtpSign.java
#   (compiled here) loads the KeyStore, signs with SHA256withECDSA, SHA256withRSA, RSASSA-PSS
#   and SHA256withRSASSA-PSS and verifies with the certificate's key in SunEC/SunRsaSign;
#   OpenSSL verifies the same signatures; jarsigner signs a jar with each token key, jarsigner
#   -verify and OpenSSL's CMS check accept it and reject a changed entry; keytool -delete
#   leaves no Transit key and no certificate in KV.
# Two configurations of the module:
#   1. run-test's file (key_prefix, kv_mount = secret)
#   2. no file at all, only VAULT_ADDR/VAULT_TOKEN: IDs, labels and certificates must persist
#      through the KV v2 mount secret/ that such a server has (issue 10); runs when the test
#      mounts are transit/ and secret/, as the no-file mode uses
# The SunPKCS11 config asks for CKA_TOKEN=TRUE at generation (docs/java.md says why).

# shellcheck source=tests/lib/common.sh
. "$(dirname "$0")/../lib/common.sh"
# Every step runs and says what failed; the test fails at the end (no set -e).
set +e

vtp_require java javac keytool jarsigner jar openssl
[ -e "$VTP_MODULE" ] || vtp_fail "module $VTP_MODULE is not built"
[ -n "${VTP_TEST_PREFIX:-}" ] || vtp_fail "run me through tests/lib/run-test (no VTP_TEST_PREFIX)"
SRC=$(cd "$(dirname "$0")/java" && pwd)
cd "$VTP_TMP"
vtp_say "$(java -version 2>&1 | head -n 1), module $VTP_MODULE"

PIN=1234
TAG=j$(vtp_random_hex 3)
CERTS="$VTP_TEST_KV/metadata/vault-transit-pkcs11/certs/$VTP_TEST_MOUNT"
rc=0
T_START=$(date +%s%N)

# step DESC CMD...: run CMD; print ok, or FAIL with its output (the test goes on, and fails).
# The output is in $OUT, the exit status in $SRC_RC. Returns CMD's status.
step() {
    local desc=$1 t0
    shift
    t0=$(date +%s%N)
    SRC_RC=0
    OUT=$("$@" 2>&1) || SRC_RC=$?
    if [ "$SRC_RC" = 0 ]; then
        vtp_say "ok: $desc ($((($(date +%s%N) - t0) / 1000000)) ms)"
    else
        vtp_say "FAIL: $desc (exit $SRC_RC)"
        printf '%s\n' "$OUT" | sed 's/^/  | /'
        rc=1
    fi
    return "$SRC_RC"
}

# expect DESC REGEX: $OUT matches REGEX
expect() {
    if grep -Eq -- "$2" <<<"$OUT"; then
        vtp_say "ok: $1"
    else
        vtp_say "FAIL: $1: output does not match /$2/"
        printf '%s\n' "$OUT" | sed 's/^/  | /'
        rc=1
        return 1
    fi
}

# sunpkcs11_cfg FILE NAME: a SunPKCS11 configuration for the module's first slot
sunpkcs11_cfg() {
    cat >"$1" <<EOF
# SunPKCS11 configuration (written by tests/clients/java.sh)
name = $2
library = $VTP_MODULE
slotListIndex = 0
# Java asks for no CKA_TOKEN at generation, which PKCS#11 reads as a session key: ask for
# token keys, the only kind the module makes.
attributes(generate, *, *) = {
  CKA_TOKEN = true
}
EOF
}

# keystore tools over the provider configured by $CFG
kt() {
    vtp_foreign keytool -keystore NONE -storetype PKCS11 \
        -providerClass sun.security.pkcs11.SunPKCS11 -providerArg "$CFG" -storepass "$PIN" "$@"
}
js() {
    vtp_foreign jarsigner -keystore NONE -storetype PKCS11 \
        -providerClass sun.security.pkcs11.SunPKCS11 -providerArg "$CFG" -storepass "$PIN" "$@"
}

transit_keys() { vtp_list "$VTP_TEST_MOUNT/keys" | sort; }
new_lines() { comm -13 <(printf '%s\n' "$1") <(printf '%s\n' "$2") | grep -v '^$' || true; }

# delete_new_keys BEFORE AFTER WHAT: delete the Transit keys (and their KV entries) in AFTER but
# not in BEFORE that have the name the module gives keys made without a label (key-XXXXXXXX):
# in the no-file mode they carry no test prefix, so run-test's cleanup cannot find them.
delete_new_keys() {
    local k
    for k in $(new_lines "$1" "$2"); do
        if [[ $k =~ ^key-[0-9a-f]{8}$ ]]; then
            vtp_say "deleting Transit key $k ($3)"
            vtp_cleanup_prefix "$k" || vtp_say "WARNING: could not delete Transit key $k"
        else
            vtp_say "WARNING: new Transit key $k is not one this test would make; left alone"
        fi
    done
}

# openssl_verify ALIAS: OpenSSL checks VtpSign's signatures with the certificate's public key
openssl_verify() {
    local alias=$1 f alg
    vtp_ossl x509 -in "out/$alias.pem" -pubkey -noout >"out/$alias.pub" ||
        { vtp_say "FAIL: openssl cannot read the certificate of $alias"; rc=1; return; }
    for f in out/"$alias".*.sig; do
        [ -e "$f" ] || { vtp_say "FAIL: no signature of $alias to check"; rc=1; return; }
        alg=${f#out/"$alias".}
        alg=${alg%.sig}
        local -a opts=()
        case $alg in
        *PSS*) opts=(-sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32
            -sigopt rsa_mgf1_md:sha256) ;;
        esac
        step "$alias: OpenSSL verifies the $alg signature" \
            vtp_ossl dgst -sha256 -verify "out/$alias.pub" -signature "$f" "${opts[@]}" \
            "out/$alias.data" && expect "$alias: $alg: Verified OK" '^Verified OK'
    done
}

# jar_check ALIAS: jarsigner signs with the token key; jarsigner -verify and OpenSSL accept the
# jar; a changed entry is rejected
jar_check() {
    local alias=$1 ext
    step "jarsigner signs app.jar with $alias" js -signedjar "signed-$alias.jar" app.jar "$alias" ||
        return 0
    expect "jarsigner: jar signed" 'jar signed'
    step "jarsigner -verify accepts the jar signed by $alias" \
        vtp_foreign jarsigner -verify -verbose -certs "signed-$alias.jar" || return 0
    expect "jarsigner -verify: jar verified, signed by CN=$alias" 'jar verified' &&
        expect "jarsigner -verify names the signer" "Signed by \"CN=$alias\""
    # The signature block (.EC, .RSA) is CMS over the .SF file: OpenSSL checks it too.
    rm -rf "x-$alias" && mkdir "x-$alias"
    (cd "x-$alias" && jar xf "../signed-$alias.jar")
    local sf block n=0
    for sf in "x-$alias"/META-INF/*.SF; do
        for block in "${sf%.SF}".EC "${sf%.SF}".RSA; do
            [ -e "$block" ] || continue
            n=$((n + 1))
            step "OpenSSL verifies the jar's CMS signature ${block##*/} with its certificate" \
                vtp_ossl cms -verify -inform DER -in "$block" -binary -content "$sf" \
                -noverify -out /dev/null
        done
    done
    if [ "$n" = 0 ]; then
        vtp_say "FAIL: no signature block in signed-$alias.jar"
        rc=1
    fi
    # A changed entry: the digest in the manifest no longer matches
    cp "signed-$alias.jar" "tampered-$alias.jar"
    echo "changed" >hello.txt
    jar uf "tampered-$alias.jar" hello.txt
    echo "hello from $TAG" >hello.txt
    OUT=$(vtp_foreign jarsigner -verify "tampered-$alias.jar" 2>&1) || true
    if grep -q 'jar verified' <<<"$OUT"; then
        vtp_say "FAIL: jarsigner -verify accepts a jar changed after signing by $alias"
        printf '%s\n' "$OUT" | sed 's/^/  | /'
        rc=1
    else
        vtp_say "ok: jarsigner -verify rejects a jar changed after signing by $alias"
    fi
}

step "javac VtpSign.java" javac -d classes "$SRC/VtpSign.java" || exit 1
mkdir -p out
echo "hello from $TAG" >hello.txt
step "jar cf app.jar" jar cf app.jar hello.txt || exit 1

# ---------------------------------------------------------------------------------------------
vtp_say "--- 1. the module with run-test's config file (key_prefix $VTP_TEST_PREFIX, kv_mount)"
CFG=$VTP_TMP/sunpkcs11.cfg
sunpkcs11_cfg "$CFG" vtp
EC=$TAG-ec
RSA=$TAG-rsa
SOFT=$TAG-soft

step "keytool -list" kt -list && expect "keytool -list names the provider" 'SunPKCS11-vtp'
step "keytool -genkeypair EC P-256 ($EC) with a self-signed certificate" \
    kt -genkeypair -alias "$EC" -keyalg EC -groupname secp256r1 -sigalg SHA256withECDSA \
    -dname "CN=$EC" -validity 30
step "keytool -genkeypair RSA-2048 ($RSA) -providerName SunPKCS11-vtp" \
    kt -genkeypair -alias "$RSA" -keyalg RSA -keysize 2048 -sigalg SHA256withRSA \
    -dname "CN=$RSA" -validity 30 -providerName SunPKCS11-vtp

# Without -providerName keytool makes the RSA key in software and imports it (C_CreateObject of
# a private key): the module refuses key import, and nothing may be left in Transit.
before=$(transit_keys)
OUT=$(kt -genkeypair -alias "$SOFT" -keyalg RSA -keysize 2048 -sigalg SHA256withRSA \
    -dname "CN=$SOFT" -validity 30 2>&1) && soft=made || soft=refused
after=$(transit_keys)
if [ "$soft" = refused ]; then
    vtp_say "ok: RSA -genkeypair without -providerName (a software key to import) is refused:" \
        "$(grep -m1 -o 'CKR_[A-Z_]*' <<<"$OUT" || head -n 1 <<<"$OUT")"
else
    vtp_say "note: RSA -genkeypair without -providerName succeeded (the module imported a key?)"
    kt -delete -alias "$SOFT" >/dev/null 2>&1 || true
fi
made=$(new_lines "$before" "$after")
if [ "$soft" = refused ] && [ -n "$made" ]; then
    vtp_say "FAIL: the refused import left Transit keys: $(tr '\n' ' ' <<<"$made")"
    rc=1
else
    vtp_say "ok: the refused import left no Transit key"
fi

# Without the attributes line Java sends no CKA_TOKEN, which asks for a session key: the module
# refuses session keys (CKR_TEMPLATE_INCONSISTENT), and nothing may be left in Transit.
NOATTR=$TAG-noattr
sed '/^attributes(generate/,/^}/d' "$CFG" >"$VTP_TMP/sunpkcs11-noattr.cfg"
before=$(transit_keys)
OUT=$(CFG=$VTP_TMP/sunpkcs11-noattr.cfg kt -genkeypair -alias "$NOATTR" -keyalg EC \
    -groupname secp256r1 -dname "CN=$NOATTR" -validity 30 2>&1) && noattr=made || noattr=refused
after=$(transit_keys)
if [ "$noattr" = refused ] && grep -q CKR_TEMPLATE_INCONSISTENT <<<"$OUT"; then
    vtp_say "ok: without CKA_TOKEN = true in the config, -genkeypair is refused" \
        "(CKR_TEMPLATE_INCONSISTENT: no session keys)"
else
    vtp_say "FAIL: without CKA_TOKEN = true in the config (no CKA_TOKEN in the template)," \
        "-genkeypair must be refused with CKR_TEMPLATE_INCONSISTENT; it was $noattr"
    printf '%s\n' "$OUT" | sed 's/^/  | /'
    rc=1
    [ "$noattr" = made ] && kt -delete -alias "$NOATTR" >/dev/null 2>&1
fi
made=$(new_lines "$before" "$(transit_keys)")
if [ -n "$made" ]; then
    vtp_say "FAIL: -genkeypair without CKA_TOKEN left Transit keys: $(tr '\n' ' ' <<<"$made")"
    rc=1
else
    vtp_say "ok: -genkeypair without CKA_TOKEN left no Transit key"
fi

step "keytool -list in a new JVM" kt -list &&
    expect "the list shows $EC as a key entry" "^$EC, PrivateKeyEntry" &&
    expect "the list shows $RSA as a key entry" "^$RSA, PrivateKeyEntry"
for a in "$EC" "$RSA"; do
    step "keytool -list -v -alias $a" kt -list -v -alias "$a" &&
        expect "$a has its certificate (chain length 1, CN=$a)" \
            "Certificate chain length: 1" && expect "$a: Owner: CN=$a" "^Owner: CN=$a"
    step "keytool -exportcert -rfc -alias $a" kt -exportcert -rfc -alias "$a" -file "$a.crt" &&
        step "OpenSSL reads the certificate of $a" vtp_ossl x509 -in "$a.crt" -noout -subject
done

# A CA's answer: keytool -certreq with the token key, OpenSSL's CA signs it, keytool
# -importcert replaces the self-signed certificate with the chain (C_DestroyObject and
# C_CreateObject of certificates).
step "OpenSSL makes a test CA" vtp_ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
    -nodes -keyout ca.key -out ca.pem -subj "/CN=$TAG test CA" -days 2 &&
    step "keytool -certreq -alias $EC (signed by the token)" \
        kt -certreq -alias "$EC" -file ec.csr &&
    step "OpenSSL verifies the request's signature" vtp_ossl req -in ec.csr -verify -noout &&
    step "the test CA signs the request" vtp_ossl x509 -req -in ec.csr -CA ca.pem -CAkey ca.key \
        -CAcreateserial -out ec-ca.pem -days 1 &&
    cat ec-ca.pem ca.pem >ec-chain.pem &&
    step "keytool -importcert of the CA's answer for $EC" \
        kt -importcert -alias "$EC" -file ec-chain.pem -noprompt &&
    step "keytool -list -v -alias $EC in a new JVM" kt -list -v -alias "$EC" &&
    expect "$EC now has the chain (length 2) from the test CA" "Certificate chain length: 2" &&
    expect "$EC: Issuer: the test CA" "^Issuer: CN=$TAG test CA"
step "VtpSign (a new JVM): KeyStore, sign with the token, verify in software" \
    vtp_foreign java -cp classes VtpSign "$CFG" "$PIN" out "$EC" "$RSA" &&
    printf '%s\n' "$OUT" | sed 's/^/  > /'
openssl_verify "$EC"
openssl_verify "$RSA"
jar_check "$EC"
jar_check "$RSA"

for a in "$EC" "$RSA"; do
    step "keytool -delete -alias $a" kt -delete -alias "$a"
done
step "keytool -list after -delete" kt -list
if grep -Eq "^($EC|$RSA), " <<<"$OUT"; then
    vtp_say "FAIL: keytool -list still shows a deleted entry"
    printf '%s\n' "$OUT" | sed 's/^/  | /'
    rc=1
fi
left=$(transit_keys | grep -F -- "$VTP_TEST_PREFIX" || true)
certs=$(vtp_list "$CERTS" | grep -F -- "$VTP_TEST_PREFIX" || true)
if [ -n "$left$certs" ]; then
    vtp_say "FAIL: keytool -delete left Transit keys [$(tr '\n' ' ' <<<"$left")] and" \
        "certificates in KV [$(tr '\n' ' ' <<<"$certs")]"
    rc=1
else
    vtp_say "ok: keytool -delete left no Transit key and no certificate of the test"
fi
for c in $certs; do vtp_api DELETE "$CERTS/$c" >/dev/null || true; done

# ---------------------------------------------------------------------------------------------
if [ "$VTP_TEST_MOUNT" != transit ] || [ "$VTP_TEST_KV" != secret ]; then
    vtp_say "--- 2. no config file: not run (the test mounts are $VTP_TEST_MOUNT/ and" \
        "$VTP_TEST_KV/, the no-file mode uses transit/ and secret/)"
else
    vtp_say "--- 2. no config file, only VAULT_ADDR/VAULT_TOKEN (KV v2 at secret/ exists)"
    CFG=$VTP_TMP/sunpkcs11-nofile.cfg
    sunpkcs11_cfg "$CFG" vtpnofile
    NC=$TAG-nofile
    keys_before=$(transit_keys)
    certs_before=$(vtp_list "$CERTS" | sort)
    # The module sees no file from here on (nothing below needs one).
    unset VAULT_TRANSIT_PKCS11_CONFIG
    step "no file: keytool -list" kt -list
    if step "no file: keytool -genkeypair EC P-256 ($NC) with a self-signed certificate" \
        kt -genkeypair -alias "$NC" -keyalg EC -groupname secp256r1 -sigalg SHA256withECDSA \
        -dname "CN=$NC" -validity 30; then
        step "no file: keytool -list in a new JVM" kt -list &&
            expect "no file: the list shows $NC as a key entry (its certificate was stored)" \
                "^$NC, PrivateKeyEntry"
        step "no file: VtpSign signs with $NC and verifies with its certificate" \
            vtp_foreign java -cp classes VtpSign "$CFG" "$PIN" out "$NC" &&
            printf '%s\n' "$OUT" | sed 's/^/  > /' && openssl_verify "$NC"
        step "no file: keytool -delete -alias $NC" kt -delete -alias "$NC"
    fi
    keys_after=$(transit_keys)
    certs_after=$(vtp_list "$CERTS" | sort)
    made=$(new_lines "$keys_before" "$keys_after")
    newcerts=$(new_lines "$certs_before" "$certs_after")
    if [ -n "$made$newcerts" ]; then
        vtp_say "FAIL: no file: Transit keys [$(tr '\n' ' ' <<<"$made")] and KV certificates" \
            "[$(tr '\n' ' ' <<<"$newcerts")] are left (an orphan of a failed -genkeypair, or" \
            "-delete did not remove them)"
        rc=1
        delete_new_keys "$keys_before" "$keys_after" "left by the no-file round"
        for c in $newcerts; do vtp_api DELETE "$CERTS/$c" >/dev/null || true; done
    else
        vtp_say "ok: no file: nothing of the round is left in Transit or KV"
    fi
fi

vtp_say "took $((($(date +%s%N) - T_START) / 1000000)) ms"
[ "$rc" = 0 ] && vtp_say "PASS"
exit "$rc"
