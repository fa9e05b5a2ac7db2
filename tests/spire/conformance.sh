#!/usr/bin/env bash
# SPIRE's own KeyManager conformance suites (pkg/server/plugin/keymanager/test and
# pkg/agent/plugin/keymanager/test of github.com/spiffe/spire v1.13.3, from the Go module proxy)
# against the plugin's server and agent interfaces, loaded through SPIRE's catalog and v1
# facades as spire-server and spire-agent load them: over SoftHSM2 and over this module with the
# test's OpenBao. Every subtest must pass; none may be skipped.

# shellcheck source=tests/lib/common.sh
. "$(dirname "$0")/../lib/common.sh"
# shellcheck source=tests/spire/lib.sh
. "$(dirname "$0")/lib.sh"

vtp_spire_go_test_setup spire/conformance
vtp_check "SPIRE v1.13.3 server and agent keymanagertest over SoftHSM2 and this module" \
    vtp_go test -count=1 -v ./...
out=$VTP_LAST_OUT
for suite in TestKeyManagerConformance TestAgentKeyManagerConformance; do
    for b in softhsm2 vault-transit-pkcs11; do
        n=$(grep -Ec -- "--- PASS: $suite/$b/" <<<"$out" || true)
        bad=$(grep -Ec -- "--- (FAIL|SKIP): $suite/$b" <<<"$out" || true)
        [ "$bad" = 0 ] || vtp_fail "$suite/$b: $bad subtests failed or were skipped"
        # 95 or 96 subtests: the suite iterates over a map of key types
        [ "$n" -ge 90 ] || vtp_fail "$suite/$b: only $n subtests passed (the suite has about 96)"
        vtp_say "ok: $suite/$b: $n subtests passed, none skipped"
    done
done
