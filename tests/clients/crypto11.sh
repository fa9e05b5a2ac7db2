#!/usr/bin/env bash
# Go crypto11 (ThalesIgnite/crypto11, a PKCS#11 binding that Go programs use):
#   crypto11.sh             against $VTP_MODULE (token vtp-test), under run-test
#   crypto11.sh --softhsm   the same against softhsm2, to check the test itself
# Builds tests/clients/crypto11/main.go offline in GOPATH mode from Debian's packaged sources
# (golang-go, golang-github-thalesignite-crypto11-dev in /usr/share/gocode; no module proxy,
# no download), then, each step in a fresh process: generate EC P-256, EC P-384, RSA-2048 and
# RSA-4096 with CKA_ID and label; find each by CKA_ID and sign SHA-256/SHA-384 digests with
# ECDSA, RSA PKCS#1 v1.5 and RSA-PSS (salt = hash length), verified by Go's crypto/ecdsa and
# crypto/rsa; regenerate one key under the same ID (destroy, then generate); destroy them all.

# shellcheck source=tests/lib/common.sh
. "$(dirname "$0")/../lib/common.sh"

GOPATH_DEB=/usr/share/gocode
# Debian's go first (what CI installs), else any go on PATH.
GO=
for g in /usr/lib/go/bin/go go; do
    if command -v "$g" >/dev/null 2>&1; then
        GO=$(command -v "$g")
        break
    fi
done
[ -n "$GO" ] || vtp_require go # skips, or errors under CI
vtp_require gcc "$GOPATH_DEB/src/github.com/ThalesIgnite/crypto11/crypto11.go" \
    "$GOPATH_DEB/src/github.com/miekg/pkcs11/pkcs11.go"

if [ "${1:-}" = --softhsm ]; then
    vtp_softhsm_setup
    MODULE=$VTP_SOFTHSM_MODULE
    TOKEN=t
else
    MODULE=$VTP_MODULE
    TOKEN=vtp-test
    [ -e "$MODULE" ] || vtp_fail "module $MODULE is not built"
fi
SRC=$(cd "$(dirname "$0")/crypto11" && pwd)
cd "$VTP_TMP"

# GOPATH mode: imports come from Debian's /usr/share/gocode only; nothing may be fetched.
GOENV=(env GO111MODULE=off GOPATH="$GOPATH_DEB" GOPROXY=off GOFLAGS= GOTOOLCHAIN=local
    GOWORK=off CGO_ENABLED=1)
if [ -z "$("${GOENV[@]}" "$GO" env GOCACHE 2>/dev/null)" ]; then
    GOENV+=(GOCACHE="$VTP_TMP/gocache")
fi
vtp_say "$("$GO" version) at $GO, module $MODULE, token $TOKEN"
t0=$(date +%s)
vtp_check "build the crypto11 program offline from Debian's sources" \
    "${GOENV[@]}" "$GO" build -o "$VTP_TMP/vtp-crypto11" "$SRC/main.go"
vtp_say "built in $(($(date +%s) - t0))s"

KEYS=(ec-p256 ec-p384 rsa-2048 rsa-4096)
C11=(vtp_foreign "$VTP_TMP/vtp-crypto11" -module "$MODULE" -token "$TOKEN" -pin 1234
    -state "$VTP_TMP/crypto11-state.json" -tag "$(vtp_random_hex 4)")

step() { # step DESC ARGS...: one fresh process; show its lines, fail on a non-zero status
    local desc=$1 rc=0 out
    shift
    out=$("${C11[@]}" "$@" 2>&1) || rc=$?
    printf '%s\n' "$out"
    [ "$rc" = 0 ] || vtp_fail "$desc (exit $rc)"
    vtp_say "ok: $desc"
}

step "generate ${KEYS[*]} with CKA_ID and label" gen "${KEYS[@]}"
step "a fresh process finds them by CKA_ID, signs and Go verifies" sign "${KEYS[@]}"
step "regeneration under the same CKA_ID (destroy, then generate)" regen ec-p256 rsa-2048
step "a fresh process signs with the regenerated keys" sign ec-p256 rsa-2048
step "destroy every key pair" destroy "${KEYS[@]}"

if [ "$MODULE" = "$VTP_MODULE" ] && [ -n "${VTP_TEST_PREFIX:-}" ]; then
    left=$(vtp_list "$VTP_TEST_MOUNT/keys" | grep "^${VTP_TEST_PREFIX}" || true)
    [ -z "$left" ] || vtp_fail "Transit keys left after Delete: $(tr '\n' ' ' <<<"$left")"
    vtp_say "ok: no Transit key of the test is left"
fi
vtp_say "PASS"
