#!/usr/bin/env bash
# The README demo: build the module, start OpenBao in dev mode (or use VAULT_ADDR and
# VAULT_TOKEN when both are set), generate an EC key in Transit with pkcs11-tool, sign a file
# with it and verify the signature with OpenSSL.
#   tests/demo.sh
# Set VTP_DEMO_KEEP=1 to keep the demo key on an external Vault (it is deleted by default).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
top=$(pwd)
jobs=${VTP_JOBS:-2}

say() { printf '\n### %s\n' "$*"; }
run() {
    printf '$ %s\n' "$*"
    "$@"
}

say "1. install what is missing"
bash tests/lib/install-deps.sh
if ! command -v bao >/dev/null 2>&1 && [ -x "$top/.venv/bin/bao" ]; then
    export VTP_BAO="$top/.venv/bin/bao"
fi

say "2. build the module"
[ -x configure ] || run autoreconf -fi
if [ -f config.status ]; then
    build=$top # the tree is configured in place: build there
else
    build=$top/_build/demo
    mkdir -p "$build"
    [ -f "$build/Makefile" ] || (cd "$build" && run ../../configure)
fi
run make -C "$build" -j"$jobs"
cd "$build"
module=src/.libs/vault-transit-pkcs11.so

VTP_SRCDIR=$top
# shellcheck source=tests/lib/bao.sh
. "$top/tests/lib/bao.sh"
work=$(mktemp -d "${TMPDIR:-/tmp}/vtp-demo.XXXXXX")
started=no
prefix=
cleanup() {
    local rc=$?
    if [ "$started" = yes ]; then
        vtp_bao_stop
        echo "demo: stopped the OpenBao dev server"
    elif [ -n "$prefix" ] && [ "${VTP_DEMO_KEEP:-0}" != 1 ]; then
        vtp_cleanup_prefix "$prefix" && echo "demo: deleted the demo key from $VAULT_ADDR"
    fi
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT

say "3. a Vault: OpenBao in dev mode, or VAULT_ADDR"
if [ -n "${VAULT_ADDR:-}" ] && [ -n "${VAULT_TOKEN:-}" ]; then
    echo "demo: using the Vault at $VAULT_ADDR"
    prefix="vtp-demo-$(vtp_random_hex 3)-"
else
    vtp_bao_find
    echo "$ $VTP_BAO server -dev -dev-listen-address=127.0.0.1:<free port> -dev-root-token-id=<random>"
    vtp_bao_start "$work/bao"
    started=yes
    echo "demo: OpenBao dev server at $VAULT_ADDR"
fi
echo "demo: enabling Transit at transit/ and KV v2 at secret/ through the HTTP API if missing"
VTP_TEST_MOUNT=transit VTP_TEST_KV=secret vtp_setup_mounts

cat >"$work/vault-transit-pkcs11.conf" <<EOF
; Vault address and token come from VAULT_ADDR and VAULT_TOKEN.
[slot demo]
mount = transit
kv_mount = secret
label = demo${prefix:+
key_prefix = $prefix}
EOF
export VAULT_TRANSIT_PKCS11_CONFIG="$work/vault-transit-pkcs11.conf"
echo "demo: VAULT_TRANSIT_PKCS11_CONFIG=$VAULT_TRANSIT_PKCS11_CONFIG:"
sed 's/^/    /' "$VAULT_TRANSIT_PKCS11_CONFIG"

say "4. the token"
run pkcs11-tool --module "$module" -L

say "5. generate an EC P-256 key pair in Transit"
run pkcs11-tool --module "$module" --login --pin 1234 --keypairgen --key-type EC:prime256v1 \
    --label demo-ec --id 0a0b

say "6. sign a file with it (CKM_ECDSA_SHA256; the private key never leaves Vault)"
printf 'Hello from vault-transit-pkcs11 at %s\n' "$(date -u +%FT%TZ)" >"$work/hello.txt"
run pkcs11-tool --module "$module" --login --pin 1234 --sign -m ECDSA-SHA256 --id 0a0b \
    --signature-format openssl -i "$work/hello.txt" -o "$work/hello.sig"

say "7. read the public key"
run pkcs11-tool --module "$module" --read-object --type pubkey --id 0a0b -o "$work/demo-ec.der"
run openssl pkey -pubin -inform DER -in "$work/demo-ec.der" -out "$work/demo-ec.pem"
cat "$work/demo-ec.pem"

say "8. verify the signature with OpenSSL"
run openssl dgst -sha256 -verify "$work/demo-ec.pem" -signature "$work/hello.sig" "$work/hello.txt"

say "9. a new process finds the pair by id 0a0b and label demo-ec"
run pkcs11-tool --module "$module" --login --pin 1234 -O --type privkey | tee "$work/list.txt"
if ! grep -Eq '^ +label: +demo-ec$' "$work/list.txt" || ! grep -Eq '^ +ID: +0a0b$' "$work/list.txt"; then
    echo "demo: FAILED: the new process does not show label demo-ec and ID 0a0b" >&2
    exit 1
fi

echo
echo "demo: OK"
