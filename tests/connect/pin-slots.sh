#!/usr/bin/env bash
# auth = pin with two slots in one process (tests/connect/p11slots.c): each slot's login is its
# own Vault identity. Slot A's token may sign only with A's keys and slot B's only with B's
# (policies confined to each slot's key prefix), so a slot that used the other's token would be
# refused by Vault. A wrong PIN on B leaves A logged in and signing; B's login does not switch
# A to B's token; closing A's sessions logs A out and drops its token (C_GenerateRandom on A
# then uses none) while B goes on. Neither token appears in the module's debug log.

# shellcheck source=tests/lib/common.sh
. "$(dirname "$0")/../lib/common.sh"
# shellcheck source=tests/connect/lib.sh
. "$(dirname "$0")/lib.sh"

vtp_require jq
PROG=$VTP_BUILDDIR/tests/connect/p11slots
[ -x "$PROG" ] || vtp_fail "$PROG is not built"
u=$(vtp_conn_uniq)
m=$VTP_TEST_MOUNT

vtp_conn_key a-ec
vtp_conn_key b-ec
for x in a b; do
    vtp_conn_policy_hcl "vtp-slot-$x-$u" "
path \"$m/keys\" { capabilities = [\"list\"] }
path \"$m/keys/$VTP_TEST_PREFIX$x-*\" { capabilities = [\"read\"] }
path \"$m/sign/$VTP_TEST_PREFIX$x-*\" { capabilities = [\"update\"] }
path \"$m/random\" { capabilities = [\"update\"] }
path \"auth/token/lookup-self\" { capabilities = [\"read\"] }
path \"auth/token/renew-self\" { capabilities = [\"update\"] }"
done
pin_a=$(vtp_conn_token 10m "vtp-slot-a-$u")
pin_b=$(vtp_conn_token 10m "vtp-slot-b-$u")
# the other slot's key is out of each token's reach: check the premise of the test
if VAULT_TOKEN=$pin_b vtp_api POST "$m/sign/${VTP_TEST_PREFIX}a-ec" \
    '{"input":"aGVsbG8="}' >/dev/null 2>&1; then
    vtp_fail "B's token can sign with A's key: the policies do not separate the slots"
fi
vtp_say "ok: B's token is refused for A's key (and A's for B's by the same policy)"

conf=$VTP_TMP/pin-slots.conf
cat >"$conf" <<CONF
[vault]
address = $VAULT_ADDR
auth = pin
[slot a]
mount = $m
key_prefix = ${VTP_TEST_PREFIX}a-
label = slot-a
[slot b]
mount = $m
key_prefix = ${VTP_TEST_PREFIX}b-
label = slot-b
CONF
chmod 600 "$conf"
log=$VTP_TMP/pin-slots.log
vtp_check "two slots, two PIN tokens, one process (p11slots)" \
    vtp_mod env VAULT_TRANSIT_PKCS11_CONFIG="$conf" VTP_MODULE="$VTP_MODULE" PIN_A="$pin_a" \
    PIN_B="$pin_b" VAULT_TRANSIT_PKCS11_DEBUG="level:4,file:$log" "$PROG"
printf '%s\n' "$VTP_LAST_OUT" | sed 's/^/  /'
for t in "$pin_a" "$pin_b"; do
    if grep -qF -- "$t" "$log"; then
        vtp_fail "a PIN token is in the module's debug log"
    fi
done
vtp_say "ok: no PIN token in the module's debug log"
