#!/usr/bin/env bash
# python-pkcs11 (the PyPI package, in the project's .venv) against the module, under run-test.
# The checks live in python_pkcs11_test.py; each step is a fresh process:
#   generate  EC P-256, RSA-2048, Ed25519 with store=True, a label and a CKA_ID
#   use       get_key by label and by ID returns exactly one object (no MultipleObjectsReturned);
#             ECDSA-SHA256, SHA256_RSA_PKCS, RSA-PSS and EdDSA signatures verified by the
#             openssl CLI against the public key the module shows; RSA-OAEP decryption
#   destroy   C_DestroyObject of every object; afterwards no Transit key of the round is left
#   templates usage attributes (python-pkcs11's default CKA_DERIVE/CKA_WRAP/CKA_UNWRAP, an
#             encrypt-only RSA pair) are honoured or refused, never silently changed
#   session   store=False / CKA_TOKEN absent must be refused with CKR_TEMPLATE_INCONSISTENT,
#             and no Transit key may be made (checked here through Vault's API)
# Three rounds of generate/use/destroy: with run-test's slot (key_prefix and kv_mount); with a
# slot that has no key_prefix, where each label is the Transit key's name (a search by label then
# finds the key by its name and through the KV index: it must still show one object); and with
# no config file at all (IDs and labels must persist through KV v2 at secret/).

# shellcheck source=tests/lib/common.sh
. "$(dirname "$0")/../lib/common.sh"

if ! PY=$(vtp_venv_python pkcs11 python-pkcs11); then
    vtp_require python-pkcs11-in-the-project-venv # skips, or errors under CI
fi
vtp_require openssl
[ -e "$VTP_MODULE" ] || vtp_fail "module $VTP_MODULE is not built"
[ -n "${VTP_TEST_PREFIX:-}" ] || vtp_fail "run me through tests/lib/run-test (no VTP_TEST_PREFIX)"
TEST=$(dirname "$0")/python_pkcs11_test.py
vtp_say "$("$PY" -c 'import sys, importlib.metadata as m
print(sys.executable, "python", sys.version.split()[0],
      "python-pkcs11", m.version("python-pkcs11"))')"
vtp_say "module $VTP_MODULE"

rc=0
keys_with() { # keys_with TEXT: the Transit keys whose name contains TEXT
    vtp_list "$VTP_TEST_MOUNT/keys" | grep -F -- "$1" || true
}

# py CONF TOKEN TAG STEP: one step of python_pkcs11_test.py in a fresh process
py() {
    local conf=$1 token=$2 tag=$3 step=$4 t0 src=0
    t0=$(date +%s%N)
    (
        # CONF "none": the module sees no config file, only VAULT_ADDR/VAULT_TOKEN
        if [ "$conf" = none ]; then unset VAULT_TRANSIT_PKCS11_CONFIG; else
            export VAULT_TRANSIT_PKCS11_CONFIG=$conf; fi
        vtp_foreign "$PY" "$TEST" "$VTP_MODULE" --token "$token" --pin 1234 \
            --state "$VTP_TMP/state-$tag.json" --tag "$tag" "$step"
    ) || src=$?
    vtp_say "step $step ($tag) took $((($(date +%s%N) - t0) / 1000000)) ms"
    if [ "$src" != 0 ]; then
        vtp_say "FAIL: step $step ($tag) exited $src"
        rc=1
    fi
    return 0
}

# round NAME CONF TOKEN TAG: generate, use and destroy in three processes; no key is left
round() {
    local name=$1 conf=$2 token=$3 tag=$4 left
    vtp_say "--- round $name: token $token, labels $tag*"
    py "$conf" "$token" "$tag" generate
    py "$conf" "$token" "$tag" use
    py "$conf" "$token" "$tag" destroy
    left=$(keys_with "$tag")
    if [ -n "$left" ]; then
        vtp_say "FAIL: $name: Transit keys left after C_DestroyObject: $(tr '\n' ' ' <<<"$left")"
        rc=1
    else
        vtp_say "ok: $name: no Transit key of the round is left"
    fi
}

# 1. run-test's slot: Transit names are $VTP_TEST_PREFIX + label, CKA_ID/CKA_LABEL in KV.
round "key_prefix and kv_mount" "$VAULT_TRANSIT_PKCS11_CONFIG" vtp-test py-

# 2. No key_prefix: the label is the Transit key's name. Labels start with the test prefix so
# run-test's cleanup finds whatever a failure leaves.
conf2=$VTP_TMP/noprefix.conf
cat >"$conf2" <<EOF
[slot noprefix]
mount = $VTP_TEST_MOUNT
kv_mount = $VTP_TEST_KV
label = vtp-noprefix
EOF
chmod 600 "$conf2"
round "no key_prefix, label = Transit name" "$conf2" vtp-noprefix "${VTP_TEST_PREFIX}pyn-"

# 3. No config file, only VAULT_ADDR/VAULT_TOKEN (the README's first setup): the slot is the
# mount transit/ without a key prefix, and IDs and labels must persist through KV v2 at secret/.
if [ "$VTP_TEST_MOUNT" = transit ] && [ "$VTP_TEST_KV" = secret ]; then
    round "no config file" none "Vault Transit transit" "${VTP_TEST_PREFIX}pynf-"
else
    vtp_say "--- round no config file: not run (test mounts $VTP_TEST_MOUNT/ and $VTP_TEST_KV/;" \
        "the no-file mode uses transit/ and secret/)"
fi

# 4. Usage attributes: honoured or refused, never silently changed.
vtp_say "--- usage attributes in the template (CKA_SIGN, CKA_DERIVE, CKA_WRAP, ...)"
py "$VAULT_TRANSIT_PKCS11_CONFIG" vtp-test pyt- templates
left=$(keys_with "${VTP_TEST_PREFIX}pyt-")
if [ -n "$left" ]; then
    vtp_say "FAIL: the template checks left Transit keys: $(tr '\n' ' ' <<<"$left")"
    rc=1
fi

# 5. Session keys: refused, and Transit has no key more than before.
vtp_say "--- session keys (CKA_TOKEN FALSE or absent)"
before=$(vtp_list "$VTP_TEST_MOUNT/keys" | sort)
py "$VAULT_TRANSIT_PKCS11_CONFIG" vtp-test pys- session
after=$(vtp_list "$VTP_TEST_MOUNT/keys" | sort)
made=$(comm -13 <(printf '%s\n' "$before") <(printf '%s\n' "$after") | grep -v '^$' || true)
if [ -n "$made" ]; then
    vtp_say "FAIL: C_GenerateKeyPair of session keys left Transit keys: $(tr '\n' ' ' <<<"$made")"
    rc=1
else
    vtp_say "ok: C_GenerateKeyPair of session keys left no Transit key"
fi

# Nothing of the test is left, in Transit or in KV.
left=$(keys_with "$VTP_TEST_PREFIX")
kvleft=$(vtp_list "$VTP_TEST_KV/metadata/vault-transit-pkcs11/$VTP_TEST_MOUNT" |
    grep -F -- "$VTP_TEST_PREFIX" || true)
if [ -n "$left$kvleft" ]; then
    vtp_say "FAIL: left behind: Transit $(tr '\n' ' ' <<<"$left"), KV $(tr '\n' ' ' <<<"$kvleft")"
    rc=1
else
    vtp_say "ok: no Transit key and no KV entry of the test is left"
fi
[ "$rc" = 0 ] && vtp_say "PASS"
exit "$rc"
