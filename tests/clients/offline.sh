#!/usr/bin/env bash
# The offline copy ([module] cache_dir): a module loaded while no Vault server answers still
# lists the keys, reads their attributes and verifies signatures; signing fails with
# CKR_DEVICE_ERROR within the configured deadline; with a server back, a new process signs.
# "No server answers" is a closed loopback port given as VAULT_ADDR, so the test runs unchanged
# against any real Vault. Runs under tests/lib/run-test.

# shellcheck source=tests/lib/common.sh
. "$(dirname "$0")/../lib/common.sh"

vtp_require pkcs11-tool openssl python3
[ -e "$VTP_MODULE" ] || vtp_fail "module $VTP_MODULE is not built"
for v in VAULT_ADDR VAULT_TOKEN VAULT_TRANSIT_PKCS11_CONFIG; do
    if [ -z "${!v:-}" ]; then
        vtp_say "ERROR: $v is not set; run this test under tests/lib/run-test"
        exit 99
    fi
done
cd "$VTP_TMP"

# The run's config plus a 2 s deadline and an offline copy.
conf="$VTP_TMP/offline.conf"
{
    cat "$VAULT_TRANSIT_PKCS11_CONFIG"
    printf '\n[vault]\ntimeout = 2s\n[module]\ncache_dir = %s/cache\n' "$VTP_TMP"
} >"$conf"
export VAULT_TRANSIT_PKCS11_CONFIG=$conf
P11=(vtp_p11 --module "$VTP_MODULE" --token-label vtp-test)
label="offline-$(vtp_random_hex 4)"
id=$(vtp_random_hex 4)
echo "offline test message" >msg

vtp_check "online: generate an EC key" \
    "${P11[@]}" --keypairgen --key-type EC:prime256v1 --label "$label" --id "$id"
vtp_check "online: list objects (writes the offline copy)" "${P11[@]}" -O
vtp_check "online: sign" "${P11[@]}" --sign -m ECDSA-SHA256 --id "$id" -i msg -o sig.raw
# vtp_p11_pubkey works around OpenSC 0.23's --read-object bugs (and sanitizer runs)
read_pub() { vtp_p11_pubkey "$1" "$id" "${P11[@]}"; }
vtp_check "online: read the public key" read_pub pub.der
ls "$VTP_TMP"/cache/slot-*.json >/dev/null 2>&1 || vtp_fail "no offline copy in $VTP_TMP/cache"
vtp_say "ok: offline copy written: $(ls "$VTP_TMP"/cache)"
if grep -q "$VAULT_TOKEN" "$VTP_TMP"/cache/*.json; then
    vtp_fail "the offline copy contains the Vault token"
fi

dead=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
online_addr=$VAULT_ADDR
export VAULT_ADDR="http://127.0.0.1:$dead"
vtp_say "no server: VAULT_ADDR=$VAULT_ADDR"
vtp_check "offline: the key is still listed" "${P11[@]}" -O --type pubkey
vtp_listing_has "$VTP_LAST_OUT" "Public Key" "$label" "$id" ||
    vtp_fail "offline listing lacks $label/$id: $VTP_LAST_OUT"
vtp_check "offline: read the public key" read_pub pub-offline.der
cmp -s pub.der pub-offline.der || vtp_fail "offline public key differs"
vtp_say "ok: same public key offline"
vtp_check "offline: verify the online signature locally" \
    "${P11[@]}" --verify -m ECDSA-SHA256 --id "$id" -i msg --signature-file sig.raw
start=$(date +%s%N)
vtp_check_fails "offline: signing fails" "${P11[@]}" --sign -m ECDSA-SHA256 --id "$id" -i msg -o x
elapsed=$((($(date +%s%N) - start) / 1000000))
grep -q CKR_DEVICE_ERROR <<<"$VTP_LAST_OUT" || vtp_fail "expected CKR_DEVICE_ERROR: $VTP_LAST_OUT"
vtp_say "ok: CKR_DEVICE_ERROR after $elapsed ms (deadline 2000 ms)"
[ "$elapsed" -lt 4000 ] || vtp_fail "signing took $elapsed ms: the 2 s deadline was not kept"

export VAULT_ADDR=$online_addr
vtp_check "server back: sign" "${P11[@]}" --sign -m ECDSA-SHA256 --id "$id" -i msg -o sig2.raw
vtp_check "server back: verify" \
    "${P11[@]}" --verify -m ECDSA-SHA256 --id "$id" -i msg --signature-file sig2.raw
vtp_say "PASS"
