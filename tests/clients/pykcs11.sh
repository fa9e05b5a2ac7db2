#!/usr/bin/env bash
# Python PyKCS11 (python3-pykcs11) against the module; the checks live in pykcs11_test.py:
#   pykcs11.sh             against $VTP_MODULE (token vtp-test), under run-test, --strict
#   pykcs11.sh --softhsm   the same script against softhsm2, to check the test itself
# Key generation from standard templates (EC P-256/P-384/P-521, RSA-2048/3072, Ed25519), find
# by CKA_ID in a new session, every signature mechanism (single- and multi-part) verified by
# python3-cryptography and C_Verify, C_GetMechanismInfo, refusals, RSA-OAEP, digests,
# C_GenerateRandom, certificate objects, C_SetAttributeValue, C_DestroyObject. Against Vault,
# afterwards no Transit key and no KV entry of the test is left.

# shellcheck source=tests/lib/common.sh
. "$(dirname "$0")/../lib/common.sh"

# python3 first on PATH may be another Python than Debian's (pyenv, a venv): take the first
# one that has PyKCS11 and cryptography.
PY=
for p in python3 /usr/bin/python3; do
    if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import PyKCS11, cryptography' 2>/dev/null; then
        PY=$(command -v "$p")
        break
    fi
done
if [ -z "$PY" ]; then
    vtp_require python3-pykcs11-and-python3-cryptography # skips, or errors under CI
fi

if [ "${1:-}" = --softhsm ]; then
    vtp_softhsm_setup
    vtp_say "python $PY, module $VTP_SOFTHSM_MODULE (softhsm2)"
    exec "$PY" "$(dirname "$0")/pykcs11_test.py" "$VTP_SOFTHSM_MODULE" --token t --pin 1234
fi

[ -e "$VTP_MODULE" ] || vtp_fail "module $VTP_MODULE is not built"
vtp_say "python $PY, module $VTP_MODULE"
rc=0
vtp_foreign "$PY" "$(dirname "$0")/pykcs11_test.py" "$VTP_MODULE" --token vtp-test --pin 1234 --strict ||
    rc=$?

# C_DestroyObject deleted the Transit keys and their KV metadata.
if [ -n "${VTP_TEST_PREFIX:-}" ]; then
    left=$(vtp_list "$VTP_TEST_MOUNT/keys" | grep "^${VTP_TEST_PREFIX}pykcs11-" || true)
    if [ -n "$left" ]; then
        vtp_say "FAIL: Transit keys left after C_DestroyObject: $(tr '\n' ' ' <<<"$left")"
        rc=1
    else
        vtp_say "ok: no Transit key of the test is left"
    fi
    left=$(vtp_list "$VTP_TEST_KV/metadata/vault-transit-pkcs11/$VTP_TEST_MOUNT" |
        grep "^${VTP_TEST_PREFIX}pykcs11-" || true)
    if [ -n "$left" ]; then
        vtp_say "FAIL: KV entries left after C_DestroyObject: $(tr '\n' ' ' <<<"$left")"
        rc=1
    else
        vtp_say "ok: no KV entry of the test is left"
    fi
fi
[ "$rc" = 0 ] && vtp_say "PASS"
exit "$rc"
