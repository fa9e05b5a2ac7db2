#!/usr/bin/env bash
# The pkcs11-tool flow (pkcs11-tool-flow.sh) against softhsm2, a known-good software token,
# to show the test itself is sound. Needs no Vault.

# shellcheck source=tests/lib/common.sh
. "$(dirname "$0")/../lib/common.sh"

vtp_require pkcs11-tool openssl
vtp_softhsm_setup

vtp_say "running the pkcs11-tool flow against $VTP_SOFTHSM_MODULE"
rc=0
VTP_TEST_TMP=$VTP_TMP bash "$(dirname "$0")/pkcs11-tool-flow.sh" "$VTP_SOFTHSM_MODULE" 1234 t ||
    rc=$?
exit "$rc"
