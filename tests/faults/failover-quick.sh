#!/usr/bin/env bash
# Quick failover test (in `make check`, under tests/lib/run-test, which provides a dev server
# in VAULT_ADDR). The module gets three addresses:
#   1. a closed port (connection refused): the next address is tried at once;
#   2. a port that accepts connections and never answers (as a stopped server would);
#   3. the real server.
# Signing must work from the first call. Only the first request (the key list, in C_Initialize
# or C_FindObjects) may wait on the silent address, for half of what is left of its deadline;
# after that both dead addresses are skipped (their health is checked in the background), so
# no signing call waits.
# Then the module gets a single address that answers every request with a 307 redirect to the
# real server (as an HA standby that does not forward does): signing must work, the redirect
# followed with the same method and body.
set -uo pipefail
: "${VTP_SRCDIR:=$(cd "$(dirname "$0")/../.." && pwd)}"
: "${VTP_BUILDDIR:=$VTP_SRCDIR}"
: "${VTP_MODULE:=$VTP_BUILDDIR/src/.libs/vault-transit-pkcs11.so}"
. "$VTP_SRCDIR/tests/lib/bao.sh"
name=failover-quick
signload=$VTP_BUILDDIR/tests/faults/signload
tmp=${VTP_TEST_TMP:-$(mktemp -d)}
fail() {
    echo "$name: FAIL: $*"
    exit 1
}
[ -x "$signload" ] || fail "$signload is missing"
[ -n "${VAULT_ADDR:-}" ] && [ -n "${VTP_TEST_PREFIX:-}" ] || fail "run me under tests/lib/run-test"

vtp_api POST "$VTP_TEST_MOUNT/keys/${VTP_TEST_PREFIX}k1" '{"type":"ecdsa-p256"}' >/dev/null ||
    fail "create the key"

closed=$(vtp_free_port)
# A listener that never accepts: the kernel completes the handshake, nothing ever answers.
python3 -c 'import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(64)
print(s.getsockname()[1], flush=True)
time.sleep(120)' >"$tmp/silent.port" &
silent_pid=$!
redirect_pid=
trap 'kill $silent_pid $redirect_pid 2>/dev/null; wait 2>/dev/null' EXIT
for _ in $(seq 50); do [ -s "$tmp/silent.port" ] && break; sleep 0.1; done
silent=$(cat "$tmp/silent.port")
[ -n "$silent" ] || fail "no silent listener"

cat >"$tmp/failover.conf" <<CONF
[vault]
address = http://127.0.0.1:$closed, http://127.0.0.1:$silent, $VAULT_ADDR
timeout = 4
connect_timeout = 1
[slot test]
mount = $VTP_TEST_MOUNT
key_prefix = $VTP_TEST_PREFIX
CONF
chmod 600 "$tmp/failover.conf"

rc=0
env -u VAULT_ADDR VAULT_TRANSIT_PKCS11_CONFIG="$tmp/failover.conf" \
    "$signload" -m "$VTP_MODULE" -l k1 -t 2 -d 2 -T 4000 >"$tmp/out" 2>&1 || rc=$?
cat "$tmp/out"
[ "$rc" = 0 ] || fail "signload exit $rc"
grep -q 'failed=0 wrong=0' "$tmp/out" || fail "calls failed"
max=$(sed -n 's/.*max_call_ms=\([0-9]*\).*/\1/p' "$tmp/out")
[ -n "$max" ] && [ "$max" -lt 1000 ] || fail "a signing call took ${max:-?} ms"
n=$(grep -c "127.0.0.1:$silent" "${VAULT_TRANSIT_PKCS11_DEBUG##*file:}" 2>/dev/null || echo 0)
echo "$name: ok: signed through the third address; longest call ${max} ms;" \
    "module log lines naming the silent address: $n"

# --- 307 from a "standby": a redirector in front of the real server.
python3 - "$VAULT_ADDR" >"$tmp/redirect.port" 2>"$tmp/redirect.log" <<'PY' &
import http.server, sys
target = sys.argv[1]
class H(http.server.BaseHTTPRequestHandler):
    def answer(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        self.send_response(307)
        self.send_header("Location", target + self.path)
        self.send_header("Content-Length", "0")
        self.end_headers()
    do_GET = do_POST = do_PUT = do_DELETE = do_LIST = answer
    def log_message(self, fmt, *args):
        sys.stderr.write((fmt % args) + "\n")
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
PY
redirect_pid=$!
for _ in $(seq 50); do [ -s "$tmp/redirect.port" ] && break; sleep 0.1; done
redirect=$(cat "$tmp/redirect.port")
[ -n "$redirect" ] || fail "no redirector"
sed -i "s|^address = .*|address = http://127.0.0.1:$redirect|" "$tmp/failover.conf"
rc=0
env -u VAULT_ADDR VAULT_TRANSIT_PKCS11_CONFIG="$tmp/failover.conf" \
    "$signload" -m "$VTP_MODULE" -l k1 -t 2 -d 1 -T 4000 >"$tmp/out" 2>&1 || rc=$?
cat "$tmp/out"
[ "$rc" = 0 ] || fail "signload through the redirector: exit $rc"
grep -q 'failed=0 wrong=0' "$tmp/out" || fail "calls through the redirector failed"
posts=$(grep -c '"POST /v1/[^ ]*/sign/' "$tmp/redirect.log" || true)
[ "$posts" -gt 0 ] || fail "no signing POST went through the redirector"
echo "$name: ok: signed through a 307 redirector ($posts POST sign requests redirected)"
