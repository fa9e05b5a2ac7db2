#!/usr/bin/env bash
# The pkcs11-tool flow (pkcs11-tool-flow.sh) against our module, under tests/lib/run-test
# (an OpenBao dev server or $VAULT_ADDR, a per-test slot config whose token is "vtp-test").
# The module accepts any PIN with auth = token.

# shellcheck source=tests/lib/common.sh
. "$(dirname "$0")/../lib/common.sh"

vtp_require pkcs11-tool openssl
[ -e "$VTP_MODULE" ] || vtp_fail "module $VTP_MODULE is not built"

vtp_say "running the pkcs11-tool flow against $VTP_MODULE"
rc=0
VTP_TEST_TMP=$VTP_TMP bash "$(dirname "$0")/pkcs11-tool-flow.sh" "$VTP_MODULE" 1234 vtp-test ||
    rc=$?
exit "$rc"
