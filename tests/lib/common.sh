# shellcheck shell=bash
# Shared helpers for the client tests in tests/clients/. Sourced, never run.
#
#   vtp_say MSG...              print a step
#   vtp_check DESC CMD...       run CMD; print "ok: DESC" or print its output and exit 1
#   vtp_check_fails DESC CMD... the same, but CMD must fail
#   vtp_require TOOL...         exit 77 (skip) when a tool is missing; exit 99 under CI=true
#   vtp_p11 ARGS...             pkcs11-tool, with the sanitizer runtime preloaded if needed
#   vtp_ossl ARGS...            openssl, likewise
#   vtp_engine_path             print the path of libengine-pkcs11-openssl's pkcs11.so
#   vtp_random_hex N            N random bytes as hex
#   vtp_listing_has TEXT KIND LABEL ID   an object listing shows that object
#   vtp_softhsm_setup           a fresh softhsm2 token "t" (PIN 1234)
#   vtp_p11_pubkey OUT ID CMD...  DER public key by id, working around OpenSC 0.23's
#                               --read-object use-after-free (EC keys, sanitizer runs)
#   vtp_ec_spki_from_listing TEXT OUT [ID]  DER EC public key from a pkcs11-tool listing
#   VTP_TMP                     a scratch dir (the run-test one, else a private one)

set -euo pipefail

: "${VTP_SRCDIR:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
: "${VTP_BUILDDIR:=$VTP_SRCDIR}"
: "${VTP_MODULE:=$VTP_BUILDDIR/src/.libs/vault-transit-pkcs11.so}"
export VTP_SRCDIR VTP_BUILDDIR VTP_MODULE

# shellcheck source=tests/lib/bao.sh
. "$(dirname "${BASH_SOURCE[0]}")/bao.sh"

# Under a sanitizer build run-test hands us LD_PRELOAD/ASAN_OPTIONS so that foreign binaries
# (pkcs11-tool, openssl) can load the ASan-built module. Keep them for those binaries only.
VTP_PRELOAD=${VTP_PRELOAD:-${LD_PRELOAD:-}}
VTP_ASAN_OPTIONS=${VTP_ASAN_OPTIONS:-${ASAN_OPTIONS:-}}
export VTP_PRELOAD VTP_ASAN_OPTIONS
unset LD_PRELOAD

vtp_foreign() {
    if [ -n "$VTP_PRELOAD" ]; then
        LD_PRELOAD="$VTP_PRELOAD" ASAN_OPTIONS="$VTP_ASAN_OPTIONS" "$@"
    else
        "$@"
    fi
}
vtp_p11() { vtp_foreign pkcs11-tool "$@"; }
vtp_ossl() { vtp_foreign openssl "$@"; }

VTP_NAME=$(basename "$0" .sh)

vtp_say() { printf '%s: %s\n' "$VTP_NAME" "$*"; }

VTP_LAST_OUT=
vtp_check() {
    local desc=$1 rc=0
    shift
    VTP_LAST_OUT=$("$@" 2>&1) || rc=$?
    if [ "$rc" = 0 ]; then
        printf '%s: ok: %s\n' "$VTP_NAME" "$desc"
    else
        printf '%s: FAIL: %s (exit %s)\n  command: %s\n' "$VTP_NAME" "$desc" "$rc" "$*"
        printf '%s\n' "$VTP_LAST_OUT" | sed 's/^/  | /'
        exit 1
    fi
}

vtp_check_fails() {
    local desc=$1 rc=0
    shift
    VTP_LAST_OUT=$("$@" 2>&1) || rc=$?
    if [ "$rc" != 0 ]; then
        printf '%s: ok: %s (exit %s as expected)\n' "$VTP_NAME" "$desc" "$rc"
    else
        printf '%s: FAIL: %s: command succeeded but must fail\n  command: %s\n' \
            "$VTP_NAME" "$desc" "$*"
        printf '%s\n' "$VTP_LAST_OUT" | sed 's/^/  | /'
        exit 1
    fi
}

# vtp_expect DESC PATTERN: the output of the last vtp_check must match the extended regex.
vtp_expect() {
    if grep -Eq -- "$2" <<<"$VTP_LAST_OUT"; then
        printf '%s: ok: %s\n' "$VTP_NAME" "$1"
    else
        printf '%s: FAIL: %s: output does not match /%s/\n' "$VTP_NAME" "$1" "$2"
        printf '%s\n' "$VTP_LAST_OUT" | sed 's/^/  | /'
        exit 1
    fi
}

# vtp_listing_has TEXT KIND LABEL ID: pkcs11-tool's object listing TEXT has an object of KIND
# ("Private Key", "Public Key") with both that label and that ID (hex).
vtp_listing_has() {
    awk -v kind="$2" -v label="$3" -v id="$4" '
        /^[A-Z].*Object;/ { if (k && l && i) found = 1; k = index($0, kind " Object;") == 1; l = i = 0 }
        $1 == "label:" { sub(/^ *label: */, ""); l = ($0 == label) }
        $1 == "ID:" { i = (tolower($2) == tolower(id)) }
        END { if (k && l && i) found = 1; exit !found }' <<<"$1"
}

vtp_fail() {
    printf '%s: FAIL: %s\n' "$VTP_NAME" "$*"
    exit 1
}

vtp_require() {
    local t
    for t in "$@"; do
        if ! command -v "$t" >/dev/null 2>&1 && [ ! -e "$t" ]; then
            if [ "${CI:-}" = true ]; then
                printf '%s: ERROR: %s is missing, and CI must skip nothing\n' "$VTP_NAME" "$t"
                exit 99
            fi
            printf '%s: SKIP: %s is missing (tests/lib/install-deps.sh installs it)\n' \
                "$VTP_NAME" "$t"
            exit 77
        fi
    done
}

vtp_engine_path() {
    local dir
    dir=$(openssl version -e 2>/dev/null | sed -n 's/^ENGINESDIR: "\(.*\)"$/\1/p')
    if [ -n "$dir" ] && [ -e "$dir/pkcs11.so" ]; then
        echo "$dir/pkcs11.so"
        return 0
    fi
    for dir in /usr/lib/*/engines-3 /usr/lib/engines-3 /usr/lib64/engines-3; do
        if [ -e "$dir/pkcs11.so" ]; then
            echo "$dir/pkcs11.so"
            return 0
        fi
    done
    return 1
}

# vtp_ec_spki_from_listing TEXT OUT [ID]: from pkcs11-tool's listing TEXT (keygen or -O
# output), take the EC public key object (with CKA_ID ID, else the first one): its EC_POINT
# (CKA_EC_POINT, a DER OCTET STRING) and EC_PARAMS (the curve OID), and write the DER
# SubjectPublicKeyInfo they describe to OUT.
vtp_ec_spki_from_listing() {
    local point params
    read -r point params < <(awk -v id="${3:-}" '
        /^[A-Z].*Object;/ {
            if (pub && pt != "" && (id == "" || tolower(oid) == tolower(id))) { print pt, pa; done = 1; exit }
            pub = /^Public Key Object; EC/; pt = pa = oid = ""
        }
        pub && $1 == "EC_POINT:" { pt = $2 }
        pub && $1 == "EC_PARAMS:" { pa = $2 }
        pub && $1 == "ID:" { oid = $2 }
        END { if (!done && pub && pt != "" && (id == "" || tolower(oid) == tolower(id))) print pt, pa }
    ' <<<"$1") || true
    [ -n "${point:-}" ] && [ -n "${params:-}" ] || return 1
    python3 - "$point" "$params" "$2" <<'PY'
import sys
point, params, out = bytes.fromhex(sys.argv[1]), bytes.fromhex(sys.argv[2]), sys.argv[3]
def tlv(tag, body):
    n = len(body)
    if n < 0x80:
        ln = bytes([n])
    else:
        b = n.to_bytes((n.bit_length() + 7) // 8, "big")
        ln = bytes([0x80 | len(b)]) + b
    return bytes([tag]) + ln + body
# CKA_EC_POINT is DER OCTET STRING { 04 || X || Y }; accept the raw point too.
if point[0] == 0x04 and len(point) > 2:
    n, off = point[1], 2
    if n & 0x80:
        k = n & 0x7F
        n, off = int.from_bytes(point[2:2 + k], "big"), 2 + k
    if off + n == len(point) and n % 2 == 1 and point[off] == 0x04:
        point = point[off:]
ed25519 = params in (bytes.fromhex("06032b6570"), b"\x13\x0cedwards25519")
if ed25519:
    # Edwards: CKA_EC_POINT is OCTET STRING { 32 bytes }; the SPKI names id-Ed25519 alone
    if len(point) == 34 and point[:2] == b"\x04\x20":
        point = point[2:]
    alg = tlv(0x30, bytes.fromhex("06032b6570"))
else:
    alg = tlv(0x30, bytes.fromhex("06072a8648ce3d0201") + params)
open(out, "wb").write(tlv(0x30, alg + tlv(0x03, b"\x00" + point)))
PY
}

# vtp_p11_pubkey OUT ID P11ARGS...: the DER public key with CKA_ID ID, through
# `pkcs11-tool P11ARGS --read-object --type pubkey --id ID`. OpenSC 0.23.0 (Debian 12) frees the
# curve name before using it when it exports an EC key: P-384 exports fail ("cannot create
# EVP_PKEY") and ASan stops every EC export in pkcs11-tool. For EC keys hit by that (always
# under the sanitizer) the key is built from the object's CKA_EC_POINT/CKA_EC_PARAMS instead.
# P11ARGS is a command, e.g. vtp_p11 --module M --token-label T.
vtp_p11_pubkey() {
    local out=$1 id=$2 listing rc=0
    shift 2
    if [ -z "$VTP_PRELOAD" ]; then
        VTP_LAST_OUT=$("$@" --read-object --type pubkey --id "$id" -o "$out" 2>&1) || rc=$?
        if [ "$rc" = 0 ] || ! grep -q 'cannot create EVP_PKEY' <<<"$VTP_LAST_OUT"; then
            return "$rc"
        fi
    fi
    listing=$("$@" -O --type pubkey 2>&1) || { VTP_LAST_OUT=$listing; return 1; }
    vtp_ec_spki_from_listing "$listing" "$out" "$id" && return 0
    if [ -n "$VTP_PRELOAD" ]; then
        # not an EC key: RSA and Ed25519 exports do not reach OpenSC's EC bug
        VTP_LAST_OUT=$("$@" --read-object --type pubkey --id "$id" -o "$out" 2>&1) && return 0
    fi
    VTP_LAST_OUT="no EC public key with ID $id in: $listing"
    return 1
}

# vtp_softhsm_setup: a softhsm2 token labelled "t" (user PIN 1234, SO PIN 5678) in a scratch
# token dir; sets SOFTHSM2_CONF and VTP_SOFTHSM_MODULE.
vtp_softhsm_setup() {
    VTP_SOFTHSM_MODULE=${VTP_SOFTHSM_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
    vtp_require softhsm2-util "$VTP_SOFTHSM_MODULE"
    mkdir -p "$VTP_TMP/softhsm-tokens"
    cat >"$VTP_TMP/softhsm2.conf" <<CONF
directories.tokendir = $VTP_TMP/softhsm-tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
CONF
    SOFTHSM2_CONF="$VTP_TMP/softhsm2.conf"
    export SOFTHSM2_CONF VTP_SOFTHSM_MODULE
    vtp_check "initialize a softhsm2 token" \
        vtp_foreign softhsm2-util --init-token --free --label t --pin 1234 --so-pin 5678
}

# A private scratch dir inside the run-test one (or a fresh one when run by hand).
if [ -n "${VTP_TEST_TMP:-}" ] && [ -d "$VTP_TEST_TMP" ]; then
    VTP_TMP=$(mktemp -d "$VTP_TEST_TMP/$VTP_NAME.XXXXXX")
else
    VTP_TMP=$(mktemp -d "${TMPDIR:-/tmp}/vtp-$VTP_NAME.XXXXXX")
    trap 'rm -rf "$VTP_TMP"' EXIT
fi
export VTP_TMP

# vtp_engine_setup [--softhsm]: for the OpenSSL pkcs11 engine tests. Sets ENGINE (the engine's
# pkcs11.so), MODULE and TOKEN (this module and its test token, or a fresh softhsm2 token with
# --softhsm), PIN, writes $VTP_TMP/openssl.cnf loading the engine with that module, and cd's to
# $VTP_TMP. Only commands given OPENSSL_CONF=$VTP_TMP/openssl.cnf see the engine.
vtp_engine_setup() {
    if ! ENGINE=$(vtp_engine_path); then
        vtp_require /usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so # skips, or errors under CI
    fi
    if [ "${1:-}" = --softhsm ]; then
        vtp_softhsm_setup
        MODULE=$VTP_SOFTHSM_MODULE
        TOKEN=t
    else
        MODULE=$VTP_MODULE
        TOKEN=vtp-test
        [ -e "$MODULE" ] || vtp_fail "module $MODULE is not built"
    fi
    PIN=1234
    cd "$VTP_TMP" || vtp_fail "no scratch directory"
    cat >openssl.cnf <<EOF
openssl_conf = openssl_init

[openssl_init]
engines = engine_section

[engine_section]
pkcs11 = pkcs11_section

[pkcs11_section]
engine_id = pkcs11
dynamic_path = $ENGINE
MODULE_PATH = $MODULE
init = 0
EOF
}
