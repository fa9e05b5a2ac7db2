#!/usr/bin/env bash
# The README's first configuration: no config file, only VAULT_ADDR and VAULT_TOKEN. Every step
# is a new pkcs11-tool process.
#  1. With KV v2 at secret/ (dev servers, most setups) the module keeps IDs, labels and
#     certificates there without being told: --keypairgen --id, then --sign --id in a new
#     process; --write-object of a certificate that a new process reads back byte for byte.
#  2. With a token that may not use secret/, the ID and label given at generation are carried
#     in the Transit key name and survive; a label a name cannot carry and a certificate are
#     refused before anything is made in Vault, with a log line that says what to configure.
#  3. Generations with the same label at the same time never share a Transit key (with KV and
#     without).
# Runs under tests/lib/run-test; needs the Transit mount transit/ and KV v2 secret/ that the
# no-config mode uses (run-test sets them up unless VTP_TEST_MOUNT/VTP_TEST_KV say otherwise).

# shellcheck source=tests/lib/common.sh
. "$(dirname "$0")/../lib/common.sh"

vtp_require pkcs11-tool openssl curl jq
[ -e "$VTP_MODULE" ] || vtp_fail "module $VTP_MODULE is not built"
for v in VAULT_ADDR VAULT_TOKEN VTP_TEST_PREFIX; do
    [ -n "${!v:-}" ] || { vtp_say "ERROR: $v is not set; run this test under tests/lib/run-test"; exit 99; }
done
if [ "$VTP_TEST_MOUNT" != transit ] || [ "$VTP_TEST_KV" != secret ]; then
    vtp_say "SKIP: the no-config mode uses transit/ and secret/, this run $VTP_TEST_MOUNT/ and $VTP_TEST_KV/"
    exit 77
fi
default_conf=/etc/vault-transit-pkcs11/vault-transit-pkcs11.conf
[ ! -e "$default_conf" ] || vtp_fail "$default_conf exists: the no-config mode cannot be tried here"
unset VAULT_TRANSIT_PKCS11_CONFIG
log=${VAULT_TRANSIT_PKCS11_DEBUG#*file:}
cd "$VTP_TMP"

P11=(vtp_p11 --module "$VTP_MODULE")
P11L=("${P11[@]}" --login --pin 1234)
meta="secret/metadata/vault-transit-pkcs11/transit"

# read_pub OUT ID P11-SELECTORS...: the EC public key of that ID a new process lists with the
# selectors, as DER SPKI. OpenSC 0.23's --read-object of an EC public key reads freed memory (ASan stops it
# in pkcs11-tool), so the key is rebuilt from the -O listing instead.
read_pub() {
    local out=$1 id=$2
    shift 2
    VTP_LAST_OUT=$("${P11[@]}" -O --type pubkey "$@" 2>&1) || return 1
    vtp_ec_spki_from_listing "$VTP_LAST_OUT" "$out" "$id"
}

# transit_keys: the Transit keys of this test, one a line.
transit_keys() { vtp_list transit/keys | grep -E "^$VTP_TEST_PREFIX" || true; }

# sign_verify ID: a new process signs with the key of that ID; OpenSSL verifies it against the
# public key a new process reads.
sign_verify() {
    local id=$1
    head -c 1000 /dev/urandom >data
    vtp_check "new process: read the public key of ID $id" read_pub pub.der "$id" --id "$id"
    vtp_check "new process: ECDSA-SHA256 signature with the key of ID $id" \
        "${P11L[@]}" --sign -m ECDSA-SHA256 --id "$id" -i data -o data.sig \
        --signature-format openssl
    vtp_check "OpenSSL verifies it against that public key" \
        vtp_ossl dgst -sha256 -verify <(vtp_ossl pkey -pubin -inform DER -in pub.der) \
        -signature data.sig data
}

# --- 1. KV v2 at secret/, found without a config file ---
label="${VTP_TEST_PREFIX}nc-$(vtp_random_hex 3)"
vtp_say "1. no config file, KV v2 at secret/: label $label, id 0a0b"
vtp_check "generate with --id 0a0b and a label" \
    "${P11L[@]}" --keypairgen --key-type EC:prime256v1 --label "$label" --id 0a0b
vtp_check "new process: list objects" "${P11[@]}" -O --type pubkey
vtp_listing_has "$VTP_LAST_OUT" "Public Key" "$label" 0a0b ||
    vtp_fail "no public key with label $label and ID 0a0b in: $VTP_LAST_OUT"
vtp_say "ok: a new process shows label $label and ID 0a0b"
sign_verify 0a0b
[ "$(transit_keys | grep -c .)" = 1 ] || vtp_fail "want one Transit key, have: $(transit_keys)"
vtp_check "its KV v2 entry exists" vtp_api GET "secret/data/vault-transit-pkcs11/transit/$(transit_keys)"
[ "$(jq -r .data.data.id <<<"$VTP_LAST_OUT")" = 0a0b ] || vtp_fail "KV entry: $VTP_LAST_OUT"
grep -q "kv_mount = auto: IDs, labels and certificates are kept in KV v2 secret" "$log" ||
    vtp_fail "the log does not say that secret/ is used"
vtp_say "ok: the module logged that it keeps them in secret/"

# a certificate for that key, stored and read back by new processes
vtp_check "a self-signed certificate" vtp_ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
    -nodes -keyout /dev/null -subj "/CN=$label" -days 2 -outform DER -out cert.der
vtp_check "new process: --write-object cert.der --type cert" \
    "${P11L[@]}" --write-object cert.der --type cert --id 0a0b --label "$label"
vtp_check "new process: read the certificate back" \
    "${P11[@]}" --read-object --type cert --id 0a0b -o back.der
cmp -s cert.der back.der || vtp_fail "the certificate read back differs from the one written"
vtp_say "ok: the certificate reads back byte for byte"
vtp_check "new process: delete the certificate" \
    "${P11L[@]}" --delete-object --type cert --id 0a0b

# --- 2. a token that may not use secret/ ---
vtp_say "2. no usable KV: a token limited to transit/"
vtp_check "policy without secret/" vtp_api PUT "sys/policies/acl/${VTP_TEST_PREFIX}nokv" \
    "$(jq -n --arg p 'path "transit/*" { capabilities = ["create","read","update","delete","list"] }' '{policy:$p}')"
vtp_check "a token with only that policy" vtp_api POST auth/token/create \
    "$(jq -n --arg p "${VTP_TEST_PREFIX}nokv" '{policies:[$p], no_default_policy:false, ttl:"1h"}')"
nokv_token=$(jq -r .auth.client_token <<<"$VTP_LAST_OUT")
label2="${VTP_TEST_PREFIX}nokv-$(vtp_random_hex 3)"
before=$(transit_keys | grep -c . || true)
VAULT_TOKEN=$nokv_token vtp_check "generate with --id 0c0d and a label" \
    "${P11L[@]}" --keypairgen --key-type EC:prime256v1 --label "$label2" --id 0c0d
grep -q "kv_mount = auto: secret/ is not a KV v2 mount this token may use" "$log" ||
    vtp_fail "the log does not say that secret/ cannot be used"
VAULT_TOKEN=$nokv_token vtp_check "new process: list objects" "${P11[@]}" -O --type pubkey
vtp_listing_has "$VTP_LAST_OUT" "Public Key" "$label2" 0c0d ||
    vtp_fail "no public key with label $label2 and ID 0c0d in: $VTP_LAST_OUT"
vtp_say "ok: without KV a new process still shows label $label2 and ID 0c0d"
VAULT_TOKEN=$nokv_token sign_verify 0c0d
VAULT_TOKEN=$nokv_token vtp_check "new process: find it by label" \
    read_pub pub2.der 0c0d --label "$label2"
cmp -s pub.der pub2.der || vtp_fail "the key found by label is not the key found by ID"
[ "$(transit_keys | grep -c .)" = $((before + 1)) ] || vtp_fail "want one more Transit key"

before=$(transit_keys | grep -c . || true)
VAULT_TOKEN=$nokv_token vtp_check_fails "a label with a space cannot be kept without KV" \
    "${P11L[@]}" --keypairgen --key-type EC:prime256v1 --label "${VTP_TEST_PREFIX}has space" --id 0e
[ "$(transit_keys | grep -c . || true)" = "$before" ] ||
    vtp_fail "a refused generation left a Transit key: $(transit_keys)"
grep -q "cannot be kept.*set kv_mount" "$log" || vtp_fail "no log line saying to set kv_mount"
vtp_say "ok: refused before any Transit key was made, and the log says to set kv_mount"
VAULT_TOKEN=$nokv_token vtp_check_fails "a certificate cannot be stored without KV" \
    "${P11L[@]}" --write-object cert.der --type cert --id 0e
grep -q "certificates cannot be stored (set kv_mount" "$log" ||
    vtp_fail "no log line saying why the certificate was refused"
vtp_say "ok: the certificate is refused with a log line that says what to configure"

# --- 2b. a token with the project's KV policy (conf/policies/kv-certs.hcl) uses KV ---
vtp_say "2b. a token limited to transit/ and conf/policies/kv-certs.hcl"
vtp_check "policy kv-certs.hcl" vtp_api PUT "sys/policies/acl/${VTP_TEST_PREFIX}kvcerts" \
    "$(jq -n --rawfile p "$VTP_SRCDIR/conf/policies/kv-certs.hcl" '{policy:$p}')"
vtp_check "a token with both policies" vtp_api POST auth/token/create \
    "$(jq -n --arg a "${VTP_TEST_PREFIX}nokv" --arg b "${VTP_TEST_PREFIX}kvcerts" \
        '{policies:[$a, $b], ttl:"1h"}')"
kv_token=$(jq -r .auth.client_token <<<"$VTP_LAST_OUT")
: >"$log"
label4="${VTP_TEST_PREFIX}kvpol-$(vtp_random_hex 3)"
VAULT_TOKEN=$kv_token vtp_check "generate with --id 0f0f and a label" \
    "${P11L[@]}" --keypairgen --key-type EC:prime256v1 --label "$label4" --id 0f0f
grep -q "kv_mount = auto: IDs, labels and certificates are kept in KV v2 secret" "$log" ||
    vtp_fail "with kv-certs.hcl the module did not use secret/: $(grep -i kv "$log" | tail -n 5)"
vtp_check "its KV v2 entry exists" vtp_api GET "secret/data/vault-transit-pkcs11/transit/$label4"
[ "$(jq -r .data.data.id <<<"$VTP_LAST_OUT")" = 0f0f ] || vtp_fail "KV entry: $VTP_LAST_OUT"
vtp_say "ok: a token with kv-certs.hcl keeps IDs in secret/ with no config file"
vtp_api DELETE "sys/policies/acl/${VTP_TEST_PREFIX}kvcerts" >/dev/null || true

# --- 3. generations with the same label at the same time ---
for mode in kv nokv; do
    tok=$VAULT_TOKEN m=1
    [ $mode = nokv ] && tok=$nokv_token m=2
    label3="${VTP_TEST_PREFIX}race$mode"
    before=$(transit_keys | grep -c . || true)
    pids=()
    for i in 1 2 3 4; do
        VAULT_TOKEN=$tok vtp_p11 --module "$VTP_MODULE" --login --pin 1234 --keypairgen \
            --key-type EC:prime256v1 --label "$label3" --id "$m$i" >"gen$mode$i.out" 2>&1 &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || vtp_fail "a concurrent generation failed ($mode)"; done
    after=$(transit_keys | grep -c . || true)
    [ "$after" = $((before + 4)) ] ||
        vtp_fail "$mode: 4 generations with label $label3 made $((after - before)) Transit keys"
    for i in 1 2 3 4; do
        VAULT_TOKEN=$tok vtp_check "$mode: new process reads the key of ID $m$i" \
            read_pub "p$mode$i.der" "$m$i" --label "$label3"
    done
    [ "$(sha256sum p"$mode"?.der | awk '{print $1}' | sort -u | wc -l)" = 4 ] ||
        vtp_fail "$mode: two generations share a public key"
    vtp_say "ok: $mode: 4 concurrent generations with one label made 4 distinct Transit keys"
done
vtp_api DELETE "sys/policies/acl/${VTP_TEST_PREFIX}nokv" >/dev/null || true
vtp_say "all checks passed"
