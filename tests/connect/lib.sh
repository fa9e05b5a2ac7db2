# shellcheck shell=bash
# Helpers for the connectivity tests in tests/connect/ (auth methods, TLS, namespaces,
# policies). Sourced after tests/lib/common.sh, under tests/lib/run-test. Everything in Vault is
# set up through the HTTP API at unique paths (approle-<random>, policy vtp-<random>) and
# removed on exit, so the tests run unchanged against a real Vault named by VAULT_ADDR and
# VAULT_TOKEN.
#
#   vtp_conn_at_exit CMD...     run CMD when the test exits (last registered runs first)
#   vtp_conn_uniq               print a short random suffix
#   vtp_conn_policy NAME FILE   write policy NAME from an HCL file of conf/policies/ (mount
#                               and KV names adapted to the test's); removed at exit
#   vtp_conn_policy_hcl NAME HCL  the same from a string
#   vtp_conn_auth TYPE          enable auth method TYPE at TYPE-<random>/; prints the path;
#                               disabled at exit
#   vtp_conn_key NAME [TYPE]    create Transit key $VTP_TEST_PREFIX$NAME (ecdsa-p256)
#   vtp_conn_token TTL POLICY...  print a new child token with these policies (and
#                               "default"); revoked at exit
#   vtp_conn_config FILE LINE...  write a module config: [vault] with address = $VAULT_ADDR and
#                               the given lines, then the run-test slot; chmod 600
#   vtp_mod CMD...              run CMD with the module seeing only its config file (no
#                               VAULT_ADDR, VAULT_TOKEN, ... in its environment) and the
#                               NAME=VALUE words of the array VTP_MOD_ENV
#   vtp_conn_sign DESC [ARGS]   pkcs11-tool --sign with the first EC key, verified with OpenSSL
#   vtp_conn_log_reset          empty the module log for the next step (kept for the check below)
#   vtp_conn_no_secrets S...    fail if any S, or anything token-shaped, appears in anything the
#                               module logged during the test
#   VTP_LOG                     the module's debug log (level 4)

VTP_LOG=${VTP_TEST_TMP:-$VTP_TMP}/module.log
VTP_LOG_ALL=$VTP_TMP/module-all.log
VTP_CONN_EXIT=()

# vtp_conn_log_reset: start the module log afresh for the next step (what it held is kept in
# VTP_LOG_ALL for the final secrets check).
vtp_conn_log_reset() {
    cat "$VTP_LOG" >>"$VTP_LOG_ALL" 2>/dev/null || true
    : >"$VTP_LOG"
}

vtp_conn_run_exit() {
    local rc=$? i
    for ((i = ${#VTP_CONN_EXIT[@]} - 1; i >= 0; i--)); do
        eval "${VTP_CONN_EXIT[$i]}" >/dev/null 2>&1 || true
    done
    exit "$rc"
}
trap vtp_conn_run_exit EXIT

vtp_conn_at_exit() {
    local q
    printf -v q '%q ' "$@"
    VTP_CONN_EXIT+=("$q")
}

vtp_conn_uniq() {
    vtp_random_hex 4
}

vtp_conn_policy_hcl() {
    local name=$1 hcl=$2
    vtp_api PUT "sys/policies/acl/$name" "$(jq -n --arg p "$hcl" '{policy: $p}')" >/dev/null ||
        vtp_fail "could not write policy $name"
    vtp_conn_at_exit vtp_api DELETE "sys/policies/acl/$name"
}

# The policies in conf/policies/ name mount "transit" and KV "secret": adapt them to the
# test's mounts exactly as an operator would.
vtp_conn_policy() {
    local name=$1 file=$2 hcl
    hcl=$(sed -e "s|\"transit/|\"$VTP_TEST_MOUNT/|" -e "s|\"secret/|\"$VTP_TEST_KV/|" \
        -e "s|/vault-transit-pkcs11/transit|/vault-transit-pkcs11/$VTP_TEST_MOUNT|" \
        -e "s|/vault-transit-pkcs11/certs/transit|/vault-transit-pkcs11/certs/$VTP_TEST_MOUNT|" \
        "$file") ||
        vtp_fail "cannot read $file"
    vtp_conn_policy_hcl "$name" "$hcl"
}

vtp_conn_auth() {
    local type=$1 path
    path="$type-$(vtp_conn_uniq)"
    vtp_api POST "sys/auth/$path" "{\"type\":\"$type\"}" >/dev/null ||
        vtp_fail "could not enable auth method $type at $path/"
    vtp_conn_at_exit vtp_api DELETE "sys/auth/$path"
    echo "$path"
}

vtp_conn_key() {
    vtp_api POST "$VTP_TEST_MOUNT/keys/$VTP_TEST_PREFIX$1" "{\"type\":\"${2:-ecdsa-p256}\"}" \
        >/dev/null || vtp_fail "could not create Transit key $VTP_TEST_PREFIX$1"
}

vtp_conn_token() {
    local ttl=$1 body acc
    shift
    body=$(vtp_api POST auth/token/create "$(printf '%s\n' "$@" | jq -R . |
        jq -s --arg t "$ttl" '{policies: ., ttl: $t}')") ||
        vtp_fail "could not create a token with policies $*"
    acc=$(jq -r .auth.accessor <<<"$body")
    vtp_conn_at_exit vtp_api POST auth/token/revoke-accessor "{\"accessor\":\"$acc\"}"
    jq -r .auth.client_token <<<"$body"
}

# vtp_conn_accessor TOKEN: print the accessor of TOKEN.
vtp_conn_accessor() {
    VAULT_TOKEN=$1 vtp_api GET auth/token/lookup-self | jq -r .data.accessor
}

vtp_conn_config() {
    local file=$1
    shift
    {
        echo "; written by tests/connect/$VTP_NAME"
        echo "[vault]"
        echo "address = ${VTP_CONN_ADDR:-$VAULT_ADDR}"
        printf '%s\n' "$@"
        echo
        echo "[slot test]"
        echo "mount = $VTP_TEST_MOUNT"
        echo "key_prefix = $VTP_TEST_PREFIX"
        echo "kv_mount = $VTP_TEST_KV"
        echo "label = vtp-test"
        [ -z "${VTP_CONN_SLOT_EXTRA:-}" ] || printf '%s\n' "$VTP_CONN_SLOT_EXTRA"
    } >"$file"
    chmod 600 "$file"
}

VTP_MOD_ENV=()
vtp_mod() (
    unset VAULT_ADDR VAULT_TOKEN VAULT_NAMESPACE VAULT_CACERT VAULT_CAPATH VAULT_CLIENT_CERT \
        VAULT_CLIENT_KEY VAULT_SKIP_VERIFY VAULT_TLS_SERVER_NAME
    for kv in "${VTP_MOD_ENV[@]}"; do
        export "${kv?}"
    done
    "$@"
)

# vtp_conn_sign DESC [PKCS11-TOOL ARGS]: sign a SHA-256 digest with the first EC private key
# (CKM_ECDSA) and verify the signature with OpenSSL against the token's public key.
vtp_conn_sign() {
    local desc=$1 r s id
    shift
    printf 'message %s\n' "$(vtp_random_hex 8)" >"$VTP_TMP/msg"
    vtp_ossl dgst -sha256 -binary "$VTP_TMP/msg" >"$VTP_TMP/msg.sha256"
    rm -f "$VTP_TMP/sig.bin" "$VTP_TMP/pub.der"
    vtp_check "$desc: list the private keys" vtp_mod vtp_p11 --module "$VTP_MODULE" "$@" \
        -O --type privkey
    id=$(awk '$1 == "ID:" { print $2; exit }' <<<"$VTP_LAST_OUT")
    [ -n "$id" ] || vtp_fail "no private key listed: $VTP_LAST_OUT"
    vtp_check "$desc" vtp_mod vtp_p11 --module "$VTP_MODULE" "$@" --sign -m ECDSA \
        --id "$id" -i "$VTP_TMP/msg.sha256" -o "$VTP_TMP/sig.bin"
    vtp_check "read the public key" vtp_p11_pubkey "$VTP_TMP/pub.der" "$id" \
        vtp_mod vtp_p11 --module "$VTP_MODULE" "$@"
    vtp_ossl pkey -pubin -inform DER -in "$VTP_TMP/pub.der" -out "$VTP_TMP/pub.pem" 2>/dev/null ||
        vtp_fail "the public key is not DER SubjectPublicKeyInfo"
    r=$(od -An -v -tx1 -N32 "$VTP_TMP/sig.bin" | tr -d ' \n')
    s=$(od -An -v -tx1 -j32 -N32 "$VTP_TMP/sig.bin" | tr -d ' \n')
    printf 'asn1=SEQUENCE:sig\n[sig]\nr=INTEGER:0x%s\ns=INTEGER:0x%s\n' "$r" "$s" >"$VTP_TMP/sig.cnf"
    vtp_ossl asn1parse -genconf "$VTP_TMP/sig.cnf" -out "$VTP_TMP/sig.der" >/dev/null ||
        vtp_fail "cannot encode the signature"
    vtp_check "OpenSSL verifies that signature" vtp_ossl dgst -sha256 -verify "$VTP_TMP/pub.pem" \
        -signature "$VTP_TMP/sig.der" "$VTP_TMP/msg"
}

vtp_conn_no_secrets() {
    local s n=0 all
    vtp_conn_log_reset
    all=$VTP_LOG_ALL
    [ -s "$all" ] || vtp_fail "the module log is empty: nothing to check"
    for s in "$@"; do
        [ -n "$s" ] || continue
        if grep -qF -- "$s" "$all"; then
            vtp_fail "a secret (${#s} chars, starting ${s:0:4}...) is in the module log"
        fi
        n=$((n + 1))
    done
    # and no token-shaped string at all (tokens the module got by itself are unknown here)
    if grep -Eq '(^|[^A-Za-z0-9])(hv[sb]|[sb])\.[A-Za-z0-9_-]{20,}' "$all"; then
        vtp_fail "a token-shaped string is in the module log"
    fi
    vtp_say "ok: none of the $n secrets used, nor anything token-shaped, is in the module log" \
        "($(wc -l <"$all") lines at level 4)"
}

# vtp_conn_wait_line FILE REGEX [SECONDS]: wait until FILE has a line matching REGEX.
vtp_conn_wait_line() {
    local i
    for ((i = 0; i < ${3:-30} * 20; i++)); do
        grep -Eq -- "$2" "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    vtp_fail "no line /$2/ in $1 within ${3:-30}s: $(tail -n 5 "$1" 2>/dev/null)"
}
