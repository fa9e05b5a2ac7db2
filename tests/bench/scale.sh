#!/usr/bin/env bash
# Scale measurement for docs/performance.md: tests/module/test-scale with 10,000 keys (or
# VTP_SCALE_KEYS) against a private OpenBao dev server (or VAULT_ADDR/VAULT_TOKEN).
#   tests/bench/scale.sh [BUILDDIR]
# Prints the requests each search costs and the memory per loaded key.
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:-$src}" && pwd)
export VTP_SRCDIR=$src VTP_BUILDDIR=$build VTP_MODULE=$build/src/.libs/vault-transit-pkcs11.so
export VTP_SCALE_KEYS=${VTP_SCALE_KEYS:-10000}
make -C "$build" tests/module/test-scale >/dev/null
exec bash "$src/tests/lib/run-test" "$build/tests/module/test-scale"
