#!/usr/bin/env bash
# The mechanism matrix: every key type x mechanism that applies, signed (or decrypted) with
# pkcs11-tool and checked with plain OpenSSL against the public key the token exposes.
#   matrix.sh [--lenient] [--out FILE] [MODULE [PIN [TOKEN]]]
#       run it; defaults: $VTP_MODULE, PIN 1234, token vtp-test (under run-test)
#   matrix.sh --join OURS SOFTHSM
#       print the comparison table of two --out files (docs/comparison-softhsm2.md)
# Results: "ok" (OpenSSL verifies the signature, and rejects it over tampered input; for OAEP,
# the token decrypts what OpenSSL encrypted), "n/a" (the token does not list the mechanism or
# the key pair generation), "refused CKR_..." (listed, but the token refused), "BAD" (a
# signature OpenSSL rejects, or one that also verifies over tampered input). BAD always fails
# the run; a refusal fails it unless --lenient (matrix-softhsm.sh runs softhsm2 so), or unless
# the row allows that refusal ("refused CKR_... (allowed)": PSS with an empty salt, which
# Transit cannot make, may be refused with CKR_MECHANISM_PARAM_INVALID).
# --out FILE (or $VTP_MATRIX_OUT) keeps the table as tab-separated lines "key mech result".

# shellcheck source=tests/lib/common.sh
. "$(dirname "$0")/../lib/common.sh"

if [ "${1:-}" = --join ]; then
    ours=${2:?usage: matrix.sh --join OURS SOFTHSM}
    theirs=${3:?usage: matrix.sh --join OURS SOFTHSM}
    # Per mechanism: one result when every key type agrees, else "key: result" for each.
    printf '| Mechanism | Key types | vault-transit-pkcs11 | SoftHSM2 |\n|---|---|---|---|\n'
    awk -F '\t' 'NR == FNR { s[$1 FS $2] = $3; next }
        !($2 in seen) { seen[$2] = 1; order[++n] = $2 }
        { r = ($1 FS $2) in s ? s[$1 FS $2] : "n/a"
          keys[$2] = keys[$2] (keys[$2] == "" ? "" : ", ") $1
          o[$2] = o[$2] SUBSEP $1 ": " $3; t[$2] = t[$2] SUBSEP $1 ": " r
          if (!($2 in o1)) { o1[$2] = $3; t1[$2] = r }
          if (o1[$2] != $3) od[$2] = 1
          if (t1[$2] != r) td[$2] = 1 }
        function show(all, first, differ) {
            if (!differ) return first
            gsub(SUBSEP, "; ", all); return substr(all, 3) }
        END { for (i = 1; i <= n; i++) { m = order[i]
            printf "| %s | %s | %s | %s |\n", m, keys[m], show(o[m], o1[m], od[m]),
                show(t[m], t1[m], td[m]) } }' "$theirs" "$ours"
    printf '\n<details><summary>Every key type and mechanism</summary>\n\n'
    printf '| Key | Mechanism | vault-transit-pkcs11 | SoftHSM2 |\n|---|---|---|---|\n'
    awk -F '\t' 'NR == FNR { s[$1 FS $2] = $3; next }
        { k = $1 FS $2; r = (k in s) ? s[k] : "n/a"
          printf "| %s | %s | %s | %s |\n", $1, $2, $3, r }' "$theirs" "$ours"
    printf '\n</details>\n'
    exit 0
fi

LENIENT=no
OUT=${VTP_MATRIX_OUT:-}
while [ $# -gt 0 ]; do
    case $1 in
    --lenient) LENIENT=yes ;;
    --out)
        OUT=$2
        shift
        ;;
    *) break ;;
    esac
    shift
done
MODULE=${1:-$VTP_MODULE}
PIN=${2:-1234}
TOKEN=${3:-vtp-test}

vtp_require pkcs11-tool openssl
[ -e "$MODULE" ] || vtp_fail "module $MODULE does not exist"
cd "$VTP_TMP"
vtp_say "module $MODULE, token $TOKEN${OUT:+, table to $OUT}"

P11=(vtp_p11 --module "$MODULE" --token-label "$TOKEN")
P11L=("${P11[@]}" --login --pin "$PIN")
vtp_check "pkcs11-tool -M" "${P11[@]}" -M
MECHS=$VTP_LAST_OUT
listed() { grep -Eq "^ +$1," <<<"$MECHS"; }

TAG=$(vtp_random_hex 3)
RESULTS=()
BAD=0
REFUSED=0
START=$(date +%s)

record() { # record KEY MECH RESULT
    RESULTS+=("$1"$'\t'"$2"$'\t'"$3")
    printf '%s: %-9s %-32s %s\n' "$VTP_NAME" "$1" "$2" "$3"
    case $3 in
    BAD*) BAD=$((BAD + 1)) ;;
    *"(allowed)") ;;
    refused*) REFUSED=$((REFUSED + 1)) ;;
    esac
}

printf 'matrix test message %s\n' "$(vtp_random_hex 16)" >data
{ cat data; printf 'x'; } >tampered
declare -A DI=(
    [sha1]=3021300906052b0e03021a05000414
    [sha224]=302d300d06096086480165030402040500041c
    [sha256]=3031300d060960864801650304020105000420
    [sha384]=3041300d060960864801650304020205000430
    [sha512]=3051300d060960864801650304020305000440
)
declare -A HLEN=([sha1]=20 [sha224]=28 [sha256]=32 [sha384]=48 [sha512]=64)
# pkcs11-tool's names for --hash-algorithm and --mgf.
declare -A P11H=([sha1]=SHA-1 [sha224]=SHA224 [sha256]=SHA256 [sha384]=SHA384 [sha512]=SHA512)
HASHES=(sha1 sha224 sha256 sha384 sha512)
for h in "${HASHES[@]}"; do
    for f in data tampered; do
        openssl dgst "-$h" -binary -out "$f.$h" "$f"
        # shellcheck disable=SC2059 # the format is the DigestInfo prefix as \xNN escapes
        { printf "$(sed 's/../\\x&/g' <<<"${DI[$h]}")"; cat "$f.$h"; } >"$f.di.$h"
    done
done

# rv_of: the CKR_ name in pkcs11-tool's last output, else "error".
rv_of() { grep -Eo 'CKR_[A-Z_]+' <<<"$VTP_LAST_OUT" | head -n 1 || echo error; }

try() { # try CMD...: run it, keep output; status
    local rc=0
    VTP_LAST_OUT=$("$@" 2>&1) || rc=$?
    return "$rc"
}

# sign_check KEY ID MECHNAME INPUT TAMPERED_INPUT [pkcs11-tool args] -- VERIFY-CMD...
# VERIFY-CMD is run with %IN% replaced by the (tampered) signed input and %SIG% by the file.
sign_check() {
    local key=$1 id=$2 mech=$3 in=$4 bad=$5 sig rv
    shift 5
    local p11args=() vcmd=()
    while [ $# -gt 0 ] && [ "$1" != -- ]; do
        p11args+=("$1")
        shift
    done
    shift
    vcmd=("$@")
    local label=${ROWNAME:-$mech}
    if ! listed "$mech"; then
        record "$key" "$label" "n/a"
        return
    fi
    sig="sig-$key-$label"
    sig=${sig//\//_}
    if ! try "${P11L[@]}" --sign -m "$mech" --id "$id" -i "$in" -o "$sig" "${p11args[@]}"; then
        rv=$(rv_of)
        if [ -n "${MAY_REFUSE:-}" ] && [ "$rv" = "$MAY_REFUSE" ]; then
            record "$key" "$label" "refused $rv (allowed)"
            return
        fi
        record "$key" "$label" "refused $rv"
        printf '%s\n' "$VTP_LAST_OUT" | tail -n 3 | sed 's/^/  | /'
        return
    fi
    local good=("${vcmd[@]//%IN%/$in}") badc=("${vcmd[@]//%IN%/$bad}")
    good=("${good[@]//%SIG%/$sig}")
    badc=("${badc[@]//%SIG%/$sig}")
    if ! try "${good[@]}"; then
        record "$key" "$label" "BAD (OpenSSL rejects it)"
        printf '%s\n' "$VTP_LAST_OUT" | tail -n 3 | sed 's/^/  | /'
        return
    fi
    if try "${badc[@]}"; then
        record "$key" "$label" "BAD (verifies over tampered input)"
        return
    fi
    record "$key" "$label" "ok"
}

# pubkey KEY ID LABEL: PEM public key into pub-KEY.pem (p11tool --export, else pkcs11-tool).
pubkey() {
    local key=$1 id=$2 label=$3
    # (not in sanitizer runs: GnuTLS tools can deadlock at exit with libasan preloaded)
    if [ -z "${VTP_PRELOAD:-}" ] && command -v p11tool >/dev/null 2>&1 &&
        try vtp_foreign p11tool --provider "$MODULE" --export \
            "pkcs11:token=$TOKEN;object=$label;type=public" --outfile "pub-$key.pem" &&
        openssl pkey -pubin -in "pub-$key.pem" -noout 2>/dev/null; then
        return 0
    fi
    # pkcs11-tool 0.23 cannot read P-384 public keys ("cannot create EVP_PKEY"): see
    # vtp_p11_pubkey in tests/lib/common.sh
    try vtp_p11_pubkey "pub-$key.der" "$id" "${P11[@]}" &&
        openssl pkey -pubin -inform DER -in "pub-$key.der" -out "pub-$key.pem" 2>/dev/null
}

# keygen KEY GENMECH KEYTYPE: sets ID; returns 1 (row n/a) when not listed or it fails.
keygen() {
    local key=$1 gen=$2 type=$3 label="matrix-$1-$TAG"
    ID=$(vtp_random_hex 6)
    if ! listed "$gen"; then
        vtp_say "$key: $gen is not listed"
        return 1
    fi
    if ! try "${P11L[@]}" --keypairgen --key-type "$type" --label "$label" --id "$ID"; then
        vtp_say "$key: key generation ($type) refused: $(rv_of)"
        printf '%s\n' "$VTP_LAST_OUT" | tail -n 3 | sed 's/^/  | /'
        return 2
    fi
    if ! pubkey "$key" "$ID" "$label"; then
        printf '%s\n' "$VTP_LAST_OUT" | tail -n 3 | sed 's/^/  | /'
        vtp_fail "$key: cannot read the public key back"
    fi
    return 0
}

row_na() { # row_na KEY RC MECH...: every mechanism of a key type without a key pair
    local key=$1 rc=$2 m
    shift 2
    for m in "$@"; do
        if [ "$rc" = 1 ]; then record "$key" "$m" "n/a"; else record "$key" "$m" "refused keygen"; fi
    done
}

EC_ROWS=()
for h in "${HASHES[@]}"; do EC_ROWS+=("ECDSA/$h-digest"); done
for h in "${HASHES[@]}"; do EC_ROWS+=("ECDSA-${h^^}"); done
RSA_ROWS=()
for h in "${HASHES[@]}"; do RSA_ROWS+=("RSA-PKCS/$h-DigestInfo"); done
for h in "${HASHES[@]}"; do RSA_ROWS+=("${h^^}-RSA-PKCS"); done
for h in "${HASHES[@]}"; do RSA_ROWS+=("RSA-PKCS-PSS/$h"); done
RSA_ROWS+=("RSA-PKCS-PSS/sha256 salt 0" "RSA-PKCS-PSS/sha256 salt max")
for h in "${HASHES[@]}"; do RSA_ROWS+=("${h^^}-RSA-PKCS-PSS"); done
RSA_ROWS+=("RSA-PKCS-OAEP/sha256 decrypt")

run_ec() {
    local key=$1 curve=$2 rc=0 h H pub
    keygen "$key" ECDSA-KEY-PAIR-GEN "EC:$curve" || rc=$?
    if [ "$rc" != 0 ]; then
        row_na "$key" "$rc" "${EC_ROWS[@]}"
        return
    fi
    pub="pub-$key.pem"
    for h in "${HASHES[@]}"; do
        ROWNAME="ECDSA/$h-digest" sign_check "$key" "$ID" ECDSA "data.$h" "tampered.$h" \
            --signature-format openssl -- \
            openssl pkeyutl -verify -pubin -inkey "$pub" -in %IN% -sigfile %SIG%
    done
    for h in "${HASHES[@]}"; do
        H=${h^^}
        ROWNAME="ECDSA-$H" sign_check "$key" "$ID" "ECDSA-$H" data tampered \
            --signature-format openssl -- \
            openssl dgst "-$h" -verify "$pub" -signature %SIG% %IN%
    done
}

# di_verify PUB IN SIG: SIG is the PKCS#1 v1.5 signature of the DigestInfo IN (OpenSSL's
# pkeyutl -verify wants a bare digest, so recover the signed block and compare).
di_verify() {
    openssl pkeyutl -verifyrecover -pubin -inkey "$1" -pkeyopt rsa_padding_mode:pkcs1 \
        -in "$3" -out "$3.rec" && cmp -s "$3.rec" "$2"
}

run_rsa() {
    local key=$1 bits=$2 rc=0 h H pub
    keygen "$key" RSA-PKCS-KEY-PAIR-GEN "rsa:$bits" || rc=$?
    if [ "$rc" != 0 ]; then
        row_na "$key" "$rc" "${RSA_ROWS[@]}"
        return
    fi
    pub="pub-$key.pem"
    for h in "${HASHES[@]}"; do
        ROWNAME="RSA-PKCS/$h-DigestInfo" sign_check "$key" "$ID" RSA-PKCS \
            "data.di.$h" "tampered.di.$h" -- di_verify "$pub" %IN% %SIG%
    done
    for h in "${HASHES[@]}"; do
        H=${h^^}
        ROWNAME="$H-RSA-PKCS" sign_check "$key" "$ID" "$H-RSA-PKCS" data tampered -- \
            openssl dgst "-$h" -verify "$pub" -signature %SIG% %IN%
    done
    for h in "${HASHES[@]}"; do
        H=${h^^}
        ROWNAME="RSA-PKCS-PSS/$h" sign_check "$key" "$ID" RSA-PKCS-PSS "data.$h" "tampered.$h" \
            --hash-algorithm "${P11H[$h]}" --mgf "MGF1-$H" --salt-len "${HLEN[$h]}" -- \
            openssl pkeyutl -verify -pubin -inkey "$pub" -pkeyopt rsa_padding_mode:pss \
            -pkeyopt "digest:$h" -pkeyopt "rsa_mgf1_md:$h" -pkeyopt "rsa_pss_saltlen:${HLEN[$h]}" \
            -in %IN% -sigfile %SIG%
    done
    # PSS salt lengths other than the digest length: none, and the most the key allows. An
    # empty salt may be refused (Transit hands salt_length 0 to Go, where 0 means "auto"),
    # but a signature with another salt than the one asked for is BAD.
    local max=$((bits / 8 - 32 - 2)) s
    for s in 0 "$max"; do
        ROWNAME="RSA-PKCS-PSS/sha256 salt $([ "$s" = 0 ] && echo 0 || echo max)" \
            MAY_REFUSE=$([ "$s" = 0 ] && echo CKR_MECHANISM_PARAM_INVALID) \
            sign_check "$key" "$ID" RSA-PKCS-PSS data.sha256 tampered.sha256 \
            --hash-algorithm SHA256 --mgf MGF1-SHA256 --salt-len "$s" -- \
            openssl pkeyutl -verify -pubin -inkey "$pub" -pkeyopt rsa_padding_mode:pss \
            -pkeyopt digest:sha256 -pkeyopt rsa_mgf1_md:sha256 -pkeyopt "rsa_pss_saltlen:$s" \
            -in %IN% -sigfile %SIG%
    done
    for h in "${HASHES[@]}"; do
        H=${h^^}
        # pkcs11-tool takes the hash and MGF1 from the mechanism; salt = digest length.
        ROWNAME="$H-RSA-PKCS-PSS" sign_check "$key" "$ID" "$H-RSA-PKCS-PSS" data tampered \
            --salt-len "${HLEN[$h]}" -- \
            openssl dgst "-$h" -sigopt rsa_padding_mode:pss -sigopt "rsa_mgf1_md:$h" \
            -sigopt "rsa_pss_saltlen:${HLEN[$h]}" -verify "$pub" -signature %SIG% %IN%
    done
    # OAEP: OpenSSL encrypts with the public key, the token decrypts.
    local row="RSA-PKCS-OAEP/sha256 decrypt"
    if ! listed RSA-PKCS-OAEP; then
        record "$key" "$row" "n/a"
        return
    fi
    head -c 48 /dev/urandom >"secret-$key"
    openssl pkeyutl -encrypt -pubin -inkey "$pub" -pkeyopt rsa_padding_mode:oaep \
        -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256 -in "secret-$key" \
        -out "ct-$key" || vtp_fail "openssl cannot OAEP-encrypt to $key"
    if ! try "${P11L[@]}" --decrypt -m RSA-PKCS-OAEP --hash-algorithm SHA256 --mgf MGF1-SHA256 \
        --id "$ID" -i "ct-$key" -o "pt-$key"; then
        record "$key" "$row" "refused $(rv_of)"
        printf '%s\n' "$VTP_LAST_OUT" | tail -n 3 | sed 's/^/  | /'
    elif cmp -s "secret-$key" "pt-$key"; then
        record "$key" "$row" "ok"
    else
        record "$key" "$row" "BAD (wrong plaintext)"
    fi
}

run_ed() {
    local key=$1 rc=0 pub
    keygen "$key" EC-EDWARDS-KEY-PAIR-GEN EC:edwards25519 || rc=$?
    if [ "$rc" != 0 ]; then
        row_na "$key" "$rc" EDDSA
        return
    fi
    pub="pub-$key.pem"
    ROWNAME=EDDSA sign_check "$key" "$ID" EDDSA data tampered -- \
        openssl pkeyutl -verify -pubin -inkey "$pub" -rawin -in %IN% -sigfile %SIG%
}

run_ec ec-p256 prime256v1
run_ec ec-p384 secp384r1
run_ec ec-p521 secp521r1
run_rsa rsa-2048 2048
run_rsa rsa-3072 3072
run_rsa rsa-4096 4096
run_ed ed25519

if [ -n "$OUT" ]; then
    printf '%s\n' "${RESULTS[@]}" >"$OUT"
    vtp_say "table written to $OUT"
fi
ok=$(printf '%s\n' "${RESULTS[@]}" | awk -F '\t' '$3 == "ok"' | wc -l)
na=$(printf '%s\n' "${RESULTS[@]}" | awk -F '\t' '$3 == "n/a"' | wc -l)
vtp_say "${#RESULTS[@]} cases in $(($(date +%s) - START))s: $ok ok, $na n/a, $REFUSED refused, $BAD bad"
[ "$BAD" = 0 ] || vtp_fail "$BAD signature(s) OpenSSL does not accept"
if [ "$REFUSED" != 0 ] && [ "$LENIENT" = no ]; then
    vtp_fail "$REFUSED listed mechanism(s) refused"
fi
vtp_say "PASS"
