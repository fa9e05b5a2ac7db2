#!/usr/bin/env bash
# Namespaces (X-Vault-Namespace): OpenBao supports them (POST sys/namespaces/<name>); Vault CE
# does not, and there the test skips.
#  - a namespace vtp-<random> with its own Transit mount and key; a key of another name in the
#    root namespace's Transit;
#  - one config, two slots over the same mount name: [slot test] (no namespace) and [slot ns]
#    (namespace = vtp-<random>): each lists only its own key; the namespace slot signs;
#  - [vault] namespace = the namespace and a token created inside it: the module looks the
#    token up and signs there;
#  - no token in the module's debug log.

# shellcheck source=tests/lib/common.sh
. "$(dirname "$0")/../lib/common.sh"
# shellcheck source=tests/connect/lib.sh
. "$(dirname "$0")/lib.sh"

vtp_require pkcs11-tool openssl jq
u=$(vtp_conn_uniq)
ns="vtp-$u"
P11=(vtp_mod vtp_p11 --module "$VTP_MODULE")

if ! out=$(vtp_api POST "sys/namespaces/$ns" '{}' 2>&1); then
    # OpenBao has namespaces: only an external server (Vault CE) may lack them, never CI
    if [ "${VTP_OWN_SERVER:-no}" = yes ] || [ "${CI:-}" = true ]; then
        vtp_fail "could not create namespace $ns: $out"
    fi
    vtp_say "SKIP: this server has no namespaces ($out)"
    exit 77
fi
ns_api() { VAULT_NAMESPACE=$ns vtp_api "$@"; }
vtp_conn_at_exit vtp_api DELETE "sys/namespaces/$ns"
vtp_conn_at_exit ns_api DELETE "sys/mounts/$VTP_TEST_MOUNT"
ns_api POST "sys/mounts/$VTP_TEST_MOUNT" '{"type":"transit"}' >/dev/null ||
    vtp_fail "could not enable Transit in namespace $ns"
ns_api POST "$VTP_TEST_MOUNT/keys/${VTP_TEST_PREFIX}in-ns" '{"type":"ecdsa-p256"}' >/dev/null ||
    vtp_fail "could not create a key in namespace $ns"
vtp_conn_key in-root
vtp_say "namespace $ns: Transit at $VTP_TEST_MOUNT/ with key ${VTP_TEST_PREFIX}in-ns;" \
    "root namespace: key ${VTP_TEST_PREFIX}in-root"

conf=$VTP_TMP/ns.conf
export VAULT_TRANSIT_PKCS11_CONFIG=$conf
VTP_CONN_SLOT_EXTRA="
[slot ns]
mount = $VTP_TEST_MOUNT
key_prefix = $VTP_TEST_PREFIX
label = vtp-ns
namespace = $ns"
vtp_conn_config "$conf" "auth = token" "token = $VAULT_TOKEN"

vtp_check "list the root-namespace slot" "${P11[@]}" --token-label vtp-test -O --type privkey
vtp_expect "it shows the root key" "label: +in-root\$"
grep -q "in-ns" <<<"$VTP_LAST_OUT" && vtp_fail "the namespace key is visible without the namespace"
vtp_say "ok: the namespace's key is invisible to the slot without the namespace"
vtp_check "list the namespace slot" "${P11[@]}" --token-label vtp-ns -O --type privkey
vtp_expect "it shows the namespace key" "label: +in-ns\$"
grep -q "in-root" <<<"$VTP_LAST_OUT" && vtp_fail "the root key is visible in the namespace slot"
vtp_say "ok: the root namespace's key is invisible to the namespace slot"

vtp_conn_sign "sign in the namespace slot" --token-label vtp-ns

# A token that lives in the namespace (sign-only policy written there), with
# [vault] namespace = it.
VAULT_NAMESPACE=$ns vtp_conn_policy vtp-sign "$VTP_SRCDIR/conf/policies/sign-only.hcl"
body=$(ns_api POST auth/token/create '{"ttl":"10m","policies":["vtp-sign"]}') ||
    vtp_fail "could not create a token in namespace $ns"
nstok=$(jq -r .auth.client_token <<<"$body")
VTP_CONN_SLOT_EXTRA=
vtp_conn_config "$conf" "auth = token" "token = $nstok" "namespace = $ns"
sed -i '/^kv_mount/d' "$conf"
vtp_conn_log_reset
vtp_conn_sign "sign with [vault] namespace and a token of that namespace"
grep -q 'token: [0-9]* s left of 600 s' "$VTP_LOG" ||
    vtp_fail "the module did not look up its namespace token"
vtp_say "ok: the namespace token was looked up in its namespace"

vtp_conn_no_secrets "$VAULT_TOKEN" "$nstok"
vtp_say PASS
