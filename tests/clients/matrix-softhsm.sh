#!/usr/bin/env bash
# The mechanism matrix (matrix.sh) unchanged against softhsm2: the reference our results are
# compared with in docs/comparison-softhsm2.md. Mechanisms softhsm2 does not list show as
# "n/a" and its refusals are reported, not failed (--lenient); a signature OpenSSL rejects
# still fails. Needs no Vault. $VTP_MATRIX_OUT keeps the table.

# shellcheck source=tests/lib/common.sh
. "$(dirname "$0")/../lib/common.sh"

vtp_require pkcs11-tool openssl
vtp_softhsm_setup
rc=0
VTP_TEST_TMP=$VTP_TMP bash "$(dirname "$0")/matrix.sh" --lenient "$VTP_SOFTHSM_MODULE" 1234 t ||
    rc=$?
exit "$rc"
