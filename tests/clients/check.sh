#!/usr/bin/env bash
# vault-transit-pkcs11-check against a real server (run-test's OpenBao dev server, or the one of
# VAULT_ADDR/VAULT_TOKEN):
#  1. a token with every capability the module uses: exit 0, every operation allowed, the key
#     listed with its PKCS#11 URI, the server's kind and version, the config file and how it
#     was chosen; --json parsed and checked; no secret in either output;
#  2. conf/policies/sign-only.hcl alone (a slot without KV): exit 0, the keys with URIs, and
#     generate and destroy not allowed, each with the capability it lacks and the policy stanza
#     that would allow it;
#  3. a token lacking one capability in turn (transit sign, keys list, keys read, key create,
#     key delete, key config, KV read, KV write, KV list): the message names the path and the
#     capability, and the exit status says whether the slot can still sign;
#  4. a bad token; AppRole with a right and a wrong secret_id; auth = pin without and with
#     --pin-stdin (no role_id, secret_id or PIN in the output);
#  5. a wrong address: exit non-zero, the address named; a config error: exit 2, file and line.

# shellcheck source=tests/lib/common.sh
. "$(dirname "$0")/../lib/common.sh"
# shellcheck source=tests/connect/lib.sh
. "$(dirname "$0")/../connect/lib.sh"

vtp_require jq python3
CHECK=$VTP_BUILDDIR/src/vault-transit-pkcs11-check
[ -x "$CHECK" ] || vtp_fail "$CHECK is not built"
for v in VAULT_ADDR VAULT_TOKEN VTP_TEST_PREFIX VAULT_TRANSIT_PKCS11_CONFIG; do
    [ -n "${!v:-}" ] || { vtp_say "ERROR: $v is not set; run this test under tests/lib/run-test"; exit 99; }
done
M=$VTP_TEST_MOUNT KV=$VTP_TEST_KV P=$VTP_TEST_PREFIX
PFX=vault-transit-pkcs11
KVCONF=$VAULT_TRANSIT_PKCS11_CONFIG # run-test's: [slot test] with kv_mount
cd "$VTP_TMP"

# Under ASan the check is our own program: it runs with the sanitizer, leaks included.
export ASAN_OPTIONS=detect_leaks=1:exitcode=86 # a leak is never taken for exit status 1
unset VAULT_TRANSIT_PKCS11_DEBUG

# policy NAME HCL: writes an ACL policy (removed at exit).
policy() { vtp_conn_policy_hcl "$@"; }

# new_token POLICY...: TOK = a new token with these policies (and "default"), revoked at exit
# (not in a command substitution, whose subshell could not register that).
new_token() {
    local body
    body=$(vtp_api POST auth/token/create "$(printf '%s\n' "$@" | jq -R . |
        jq -s '{policies: ., ttl: "20m"}')") || vtp_fail "cannot create a token"
    vtp_conn_at_exit vtp_api POST auth/token/revoke-accessor \
        "$(jq '{accessor: .auth.accessor}' <<<"$body")"
    TOK=$(jq -r .auth.client_token <<<"$body")
    secrets+=("$TOK")
}

# run_check WANT_STATUS TOKEN ARGS...: runs the check with that token; its output is in OUT.
OUT= secrets=("$VAULT_TOKEN")
run_check() {
    local want=$1 tok=$2 rc=0
    shift 2
    OUT=$(VAULT_TOKEN=$tok "$CHECK" "$@" 2>&1) || rc=$?
    if [ "$rc" != "$want" ]; then
        printf '%s\n' "$OUT" | sed 's/^/  | /'
        vtp_fail "vault-transit-pkcs11-check $* exited $rc, want $want"
    fi
}

# has DESC FIXED-TEXT: OUT contains the text.
has() {
    grep -qF -- "$2" <<<"$OUT" || {
        printf '%s\n' "$OUT" | sed 's/^/  | /'
        vtp_fail "$1: the output lacks: $2"
    }
    vtp_say "ok: $1"
}

# op_line OP allowed|"NOT allowed": the operation's line says so.
op_line() {
    grep -Eq "^    $1 +$2" <<<"$OUT" || {
        printf '%s\n' "$OUT" | sed 's/^/  | /'
        vtp_fail "operation $1 is not reported as $2"
    }
    vtp_say "ok: $1 $2"
}

no_secrets() {
    local s
    for s in "${secrets[@]}"; do
        if grep -qF -- "$s" <<<"$OUT"; then vtp_fail "the output shows a token"; fi
    done
}

vtp_conn_key ec1
vtp_conn_key rsa1 rsa-2048

# ---- 1. every capability the module uses ----
# full POLICY-NAME [VAR=CAPS...]: every path the module uses; a VAR narrows one stanza.
full() {
    local name=$1 KEYS='"read", "update", "delete"' KEYCFG='"update"' SIGN='"update"'
    local LIST='"list"' KVDATA='"create", "read", "update"' KVLIST='"list"' KVMETA='"read", "list", "delete"'
    shift
    local a
    for a in "$@"; do local "$a"; done
    policy "$name" "
path \"$M/keys\" { capabilities = [$LIST] }
path \"$M/keys/$P*\" { capabilities = [$KEYS] }
path \"$M/keys/${P}ec1/config\" { capabilities = [$KEYCFG] }
path \"$M/sign/$P*\" { capabilities = [$SIGN] }
path \"$M/decrypt/$P*\" { capabilities = [\"update\"] }
path \"$KV/data/$PFX/$M/*\" { capabilities = [$KVDATA] }
path \"$KV/metadata/$PFX/$M/*\" { capabilities = [$KVMETA] }
path \"$KV/metadata/$PFX/$M\" { capabilities = [$KVLIST] }
path \"$KV/data/$PFX/certs/$M/*\" { capabilities = [\"create\", \"read\", \"update\"] }
path \"$KV/metadata/$PFX/certs/$M/*\" { capabilities = [\"read\", \"list\", \"delete\"] }
path \"$KV/metadata/$PFX/certs/$M\" { capabilities = [\"list\"] }
"
}
full "${P}full"
new_token "${P}full"
tok=$TOK
run_check 0 "$tok"
for op in list sign decrypt generate destroy certificates; do op_line "$op" allowed; done
has "the config file and how it was chosen" \
    "file: $KVCONF (chosen by \$VAULT_TRANSIT_PKCS11_CONFIG)"
has "the key with its PKCS#11 URI" "pkcs11:token=vtp-test;id="
grep -Eq "^        pkcs11:token=vtp-test;id=(%[0-9A-F]{2})+;type=private$" <<<"$OUT" ||
    vtp_fail "no well-formed private-key URI: $OUT"
has "the sign test" "sign test with ${P}"
has "VAULT_TOKEN is named, not shown" "VAULT_TOKEN is set (not shown)"
has "the address" "environment: VAULT_ADDR=$VAULT_ADDR"
no_secrets
if [ "${VTP_OWN_SERVER:-}" = yes ]; then
    has "the server is OpenBao with its version" "$VAULT_ADDR: OpenBao $("$VTP_BAO" version |
        sed -n 's/^OpenBao v\([^ ]*\).*/\1/p')"
fi
has "the summary" "Result: every slot can sign"

# the same as JSON
run_check 0 "$tok" --json
no_secrets
printf '%s' "$OUT" >report.json
vtp_check "--json output is one JSON document with what the text says" python3 -c '
import json, sys
r = json.load(open("report.json"))
prefix, addr, conf = sys.argv[1], sys.argv[2], sys.argv[3]
assert r["ok"] is True and r["exit_status"] == 0, r["summary"]
assert r["config"]["path"] == conf and r["config"]["read"] is True
assert "VAULT_TRANSIT_PKCS11_CONFIG" in r["config"]["chosen_by"]
s = r["servers"][0]
assert s["address"] == addr and s["reachable"] is True and s["sealed"] is False
assert s["kind"] in ("OpenBao", "Vault", "Vault Enterprise") and s["version"], s
assert r["auth"]["method"] == "token" and r["auth"]["ok"] is True
assert "id" not in r["auth"]["token"] and "accessor" not in r["auth"]["token"]
assert sorted(r["auth"]["token"]["policies"]) == ["default", prefix + "full"]
slot, = r["slots"]
assert slot["can_sign"] is True and slot["kv"]["used"] is True
for op in ("list", "sign", "decrypt", "generate", "destroy", "certificates"):
    assert slot["operations"][op]["allowed"] is True, op
names = {k["name"]: k for k in slot["keys"]}
assert set(names) == {prefix + "ec1", prefix + "rsa1"}, names
k = names[prefix + "ec1"]
want = "pkcs11:token=vtp-test;id=" + "".join("%%%02X" % b for b in bytes.fromhex(k["id"])) + ";type=private"
assert k["type"] == "ecdsa-p256" and k["uri"] == want, (k, want)
assert slot["sign_test"]["ok"] is True
' "$P" "$VAULT_ADDR" "$KVCONF"

# ---- 2. the issue's "done means": conf/policies/sign-only.hcl, a slot without KV ----
nokv=$VTP_TMP/nokv.conf
printf '[slot test]\nmount = %s\nkey_prefix = %s\nlabel = vtp-test\n' "$M" "$P" >"$nokv"
chmod 600 "$nokv"
vtp_conn_policy "${P}sign" "$VTP_SRCDIR/conf/policies/sign-only.hcl"
new_token "${P}sign"
run_check 0 "$TOK" --config "$nokv"
has "--config is named as the chooser" "file: $nokv (chosen by --config"
op_line list allowed
op_line sign allowed
op_line generate "NOT allowed"
op_line destroy "NOT allowed"
has "generate: what the token lacks" "the token lacks \"update\" on $M/keys/${P}ec1"
has "generate and destroy: the stanza to add" \
    "to allow it, add to a policy: path \"$M/keys/$P*\" { capabilities = [\"list\", \"read\", \"update\"] }"
has "destroy: the config update it lacks" "the token lacks \"update\" on $M/keys/${P}ec1/config"
has "destroy: the delete it lacks" "the token lacks \"delete\" on $M/keys/${P}ec1"
has "destroy: the stanza to add" \
    "path \"$M/keys/$P*\" { capabilities = [\"delete\", \"list\", \"read\", \"update\"] }"
has "the keys with their URIs" "pkcs11:token=vtp-test;id="
has "${P}ec1 listed" "    ${P}ec1 (ecdsa-p256 v1"
has "${P}rsa1 listed" "    ${P}rsa1 (rsa-2048 v1"
no_secrets
vtp_say "the sign-only report:"
printf '%s\n' "$OUT" | sed 's/^/  | /'

# sign-only.hcl with kv-certs.hcl, on the slot with KV: still signs
vtp_conn_policy "${P}kv" "$VTP_SRCDIR/conf/policies/kv-certs.hcl"
new_token "${P}sign" "${P}kv"
run_check 0 "$TOK"
op_line certificates allowed
op_line generate "NOT allowed"

# ---- 3. one capability missing at a time ----
# lacking NAME STATUS OP CAP PATH VAR=CAPS: a token whose policy narrows one stanza.
lacking() {
    local name=$1 status=$2 op=$3 cap=$4 path=$5
    shift 5
    full "${P}$name" "$@"
    new_token "${P}$name"
    run_check "$status" "$TOK"
    op_line "$op" "NOT allowed"
    has "$name: the missing capability is named" "the token lacks \"$cap\" on $path"
    has "$name: a stanza grants it" "to allow it, add to a policy: path"
    if [ "$status" = 0 ]; then
        has "$name: the slot still signs" "Result: every slot can sign"
    else
        has "$name: the slot cannot sign" "PROBLEM: the token may not sign"
    fi
}
lacking nosign 1 sign update "$M/sign/${P}ec1" SIGN='"read"'
# (without the key list the check asks about a name under the prefix: ${P}vtp-check)
lacking nolist 1 list list "$M/keys" LIST='"read"'
lacking noread 1 list read "$M/keys/${P}vtp-check" KEYS='"update", "delete"'
lacking nocreate 0 generate update "$M/keys/${P}ec1" KEYS='"read", "delete"'
lacking nodelete 0 destroy delete "$M/keys/${P}ec1" KEYS='"read", "update"'
lacking noconfig 0 destroy update "$M/keys/${P}ec1/config" KEYCFG='"read"'
lacking nokvread 1 sign read "$KV/data/$PFX/$M/${P}ec1" KVDATA='"create", "update"'
lacking nokvwrite 0 generate create "$KV/data/$PFX/$M/${P}ec1" KVDATA='"read"'
lacking nokvlist 1 list list "$KV/metadata/$PFX/$M" KVLIST='"read"' KVMETA='"read", "delete"'

# ---- 4. authentication: a bad token, AppRole, auth = pin ----
run_check 1 "not-a-token-$(vtp_random_hex 4)"
has "a bad token is reported" "PROBLEM: Vault did not accept the token authentication"
has "and nothing past it is checked" "Result: the authentication failed"

mnt=$(vtp_conn_auth approle)
# vtp_conn_auth ran in a subshell: its at-exit entry is lost, so register it here
vtp_conn_at_exit vtp_api DELETE "sys/auth/$mnt"
vtp_check "an AppRole role with the full policy" vtp_api POST "auth/$mnt/role/check" \
    "$(jq -n --arg p "${P}full" '{token_policies: [$p], token_ttl: "10m"}')"
role_id=$(vtp_api GET "auth/$mnt/role/check/role-id" | jq -r .data.role_id)
secret_id=$(vtp_api POST "auth/$mnt/role/check/secret-id" '{}' | jq -r .data.secret_id)
secrets+=("$role_id" "$secret_id")
printf '%s\n' "$secret_id" >secret-id
chmod 600 secret-id
approle=$VTP_TMP/approle.conf
vtp_conn_config "$approle" "auth = approle" "auth_mount = $mnt" "role_id = $role_id" \
    "secret_id_file = $VTP_TMP/secret-id"
run_check 0 "" --config "$approle"
has "the AppRole method and its secret_id file" \
    "method: approle (auth_mount $mnt, secret_id $VTP_TMP/secret-id)"
has "the token AppRole gave" "policies: default ${P}full"
no_secrets
printf 'wrong-%s\n' "$(vtp_random_hex 8)" >secret-id
run_check 1 "" --config "$approle"
has "a wrong secret_id is reported" "PROBLEM: Vault did not accept the approle authentication"
no_secrets
vtp_say "the report with a wrong secret_id:"
printf '%s\n' "$OUT" | sed 's/^/  | /'

pin=$VTP_TMP/pin.conf
vtp_conn_config "$pin" "auth = pin"
run_check 1 "" --config "$pin"
has "auth = pin asks for --pin-stdin" "give it with --pin-stdin"
new_token "${P}full"
rc=0
OUT=$(VAULT_TOKEN= "$CHECK" --config "$pin" --pin-stdin <<<"$TOK" 2>&1) || rc=$?
[ "$rc" = 0 ] || vtp_fail "auth = pin with --pin-stdin: exit $rc: $OUT"
has "auth = pin: the PIN's token is checked" "method: pin"
has "auth = pin: and its slot" "Result: every slot can sign"
no_secrets

# ---- 5. a wrong address, a config error ----
port=$(vtp_free_port)
OUT=$(VAULT_ADDR="http://127.0.0.1:$port" "$CHECK" 2>&1) && vtp_fail "a wrong address: exit 0"
has "a wrong address is named" "http://127.0.0.1:$port: NOT reachable"
has "and says why" "PROBLEM: http://127.0.0.1:$port cannot be reached"
rc=0
OUT=$(VAULT_ADDR="http://127.0.0.1:$port" "$CHECK" --json 2>&1) || rc=$?
[ "$rc" = 1 ] || vtp_fail "a wrong address: --json exit $rc, want 1"
vtp_check "--json names the address as unreachable" python3 -c '
import json, sys
r = json.loads(sys.argv[1])
assert r["ok"] is False and r["exit_status"] == 1
assert r["servers"] == [r["servers"][0]] and r["servers"][0]["address"] == sys.argv[2]
assert r["servers"][0]["reachable"] is False and r["servers"][0]["error"]
assert "slots" not in r
' "$OUT" "http://127.0.0.1:$port"

OUT=$(env -u VAULT_TRANSIT_PKCS11_CONFIG "$CHECK" --json 2>&1) || true
vtp_check "without --config or \$VAULT_TRANSIT_PKCS11_CONFIG the compiled-in default is used" \
    python3 -c '
import json, sys
c = json.loads(sys.argv[1])["config"]
assert c["chosen_by"] == "the compiled-in default" and c["path"] == c["default_path"], c
assert c["path"].endswith("/vault-transit-pkcs11/vault-transit-pkcs11.conf"), c
' "$OUT"

bad=$VTP_TMP/bad.conf
printf '[slot test]\nmount = %s\nkey_prefx = x\n' "$M" >"$bad"
rc=0
OUT=$("$CHECK" --config "$bad" 2>&1) || rc=$?
[ "$rc" = 2 ] || vtp_fail "a config error: exit $rc, want 2: $OUT"
has "a config error names file and line" "$bad:3:"
vtp_say "all checks passed"
