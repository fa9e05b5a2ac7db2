#!/usr/bin/env bash
# The Debian package, built and tried on this machine (a tests/run-all step; root, Debian 12):
#   tests/packaging/deb.sh [OUTDIR]      OUTDIR: _build/deb of the source tree by default
# 1. dpkg-buildpackage -us -uc -b in a clean copy of the tree (git archive of HEAD plus the
#    work tree's changes to tracked files, so no _build/ or .venv/; outside git, a copy without
#    them), with DEB_BUILD_OPTIONS nocheck (run-all runs the suite itself);
# 2. the .deb holds the module in p11-kit's module directory, its .module file, the man pages,
#    the example config and the policies (and, once the source has it, the check program);
# 3. dpkg -i; p11-kit list-modules shows the module and its description;
# 4. the pkcs11-tool flow (tests/clients/pkcs11-tool-flow.sh: key generation, sign, verify with
#    OpenSSL and C_Verify) through the installed module's path, then through p11-kit's proxy
#    (which finds the module by its .module file), and the installed vault-transit-pkcs11-check,
#    each against a private OpenBao dev server (tests/lib/run-test; or the Vault of
#    VAULT_ADDR/VAULT_TOKEN);
# 5. dpkg -r and dpkg --purge leave none of its files.
# A package already installed is removed first. Each check counts as a test; the last line is
# "=== deb tests: P/T passed". Exits non-zero when one failed.
set -uo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out=${1:-$src/_build/deb}
pkg=vault-transit-pkcs11
jobs=${VTP_JOBS:-2}
passed=0
total=0

say() { printf 'deb: %s\n' "$*"; }
# t DESC CMD...: one counted check; its output goes to the terminal.
t() {
    local desc=$1 rc=0
    shift
    total=$((total + 1))
    "$@" || rc=$?
    if [ "$rc" = 0 ]; then
        passed=$((passed + 1))
        say "ok: $desc"
    else
        say "FAIL: $desc (exit $rc)"
    fi
    return "$rc"
}
finish() {
    echo "=== deb tests: $passed/$total passed"
    [ "$passed" = "$total" ]
    exit
}

for tool in dpkg-buildpackage dpkg p11-kit pkg-config pkcs11-tool; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        t "$tool is there (tests/lib/install-deps.sh installs it)" false
        finish
    fi
done
[ "$(id -u)" = 0 ] || { t "running as root, as dpkg -i needs" false; finish; }

moddir=$(pkg-config --variable=p11_module_path p11-kit-1)
confdir=$(pkg-config --variable=p11_module_configs p11-kit-1)
proxy=$(dirname "$moddir")/p11-kit-proxy.so
module=$moddir/$pkg.so

# --- build ---
copy() {
    local tree
    rm -rf "$out" && mkdir -p "$out/src" || return 1
    if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        tree=$(git -C "$src" stash create) || return 1
        git -C "$src" archive "${tree:-HEAD}" | tar -x -C "$out/src"
    else
        # not a git checkout (an unpacked release tarball): everything but build products
        tar -C "$src" --exclude=./_build --exclude=./.venv -c . | tar -x -C "$out/src"
    fi
}
build() {
    (cd "$out/src" && DEB_BUILD_OPTIONS="nocheck parallel=$jobs" dpkg-buildpackage -us -uc -b)
}
t "a clean copy of the tree in $out/src" copy || finish
t "dpkg-buildpackage -us -uc -b" build || finish
deb=$(ls "$out/${pkg}"_*.deb 2>/dev/null | grep -v dbgsym | head -n 1)
[ -n "$deb" ] || { say "no $pkg .deb in $out"; t "the .deb exists" false; finish; }
say "built $deb"

version() {
    local deb_v ac_v
    deb_v=$(dpkg-parsechangelog -l "$src/debian/changelog" -S Version)
    ac_v=$(sed -n 's/^AC_INIT(\[[^]]*\], \[\([^]]*\)\].*/\1/p' "$src/configure.ac")
    say "debian/changelog $deb_v, configure.ac $ac_v"
    [ "${deb_v%%-*}" = "$ac_v" ]
}
t "debian/changelog's version is configure.ac's" version

contents() {
    local listing f missing=0
    listing=$(dpkg-deb -c "$deb" | awk '{ print substr($6, 2) }')
    local want=("$module" "$confdir/$pkg.module" /usr/share/man/man5/$pkg.conf.5.gz
        /usr/share/doc/$pkg/examples/$pkg.conf.example
        /usr/share/$pkg/policies/sign-only.hcl /usr/share/$pkg/policies/keymgmt.hcl
        /usr/share/$pkg/policies/kv-certs.hcl /usr/share/$pkg/policies/spire.hcl)
    # The check program, once the tree has it (its man page is the sign).
    if [ -e "$src/docs/$pkg-check.1" ]; then
        want+=(/usr/bin/$pkg-check /usr/share/man/man1/$pkg-check.1.gz)
    fi
    for f in "${want[@]}"; do
        grep -qxF "$f" <<<"$listing" || { say "the package lacks $f"; missing=1; }
    done
    if grep -E '\.la$|^/etc/' <<<"$listing"; then
        say "the package holds a libtool archive or a file in /etc (above)"
        missing=1
    fi
    [ "$missing" = 0 ] && printf '%s\n' "${want[@]}" | sed 's/^/deb:   has /'
}
t "the package holds the module, .module file, man pages, example config and policies" contents

# --- install and use ---
if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed'; then
    say "$pkg is installed already: removing it first"
    dpkg --purge "$pkg"
fi
t "dpkg -i $(basename "$deb")" dpkg -i "$deb" || finish

list_modules() {
    local l
    l=$(p11-kit list-modules 2>&1)
    printf '%s\n' "$l" | sed -n "/^$pkg:/,/^[^ ]/p"
    grep -q "^$pkg: $pkg.so\$" <<<"$l" &&
        grep -q 'library-description: Vault/OpenBao Transit PKCS#11' <<<"$l"
}
t "p11-kit list-modules shows $pkg with its description" list_modules
t "the installed module's default config is /etc/$pkg/$pkg.conf" \
    grep -aqF "/etc/$pkg/$pkg.conf" "$module"

flow() {
    VTP_SRCDIR=$src VTP_BUILDDIR=$out VTP_MODULE=$1 \
        bash "$src/tests/lib/run-test" "$src/tests/clients/pkcs11-tool-flow.sh" "$1" 1234 vtp-test
}
t "the pkcs11-tool flow through $module" flow "$module"
t "the pkcs11-tool flow through p11-kit's proxy ($proxy)" flow "$proxy"

# The installed check program against a server (once the package has it): the slot can sign.
checker() {
    VTP_SRCDIR=$src VTP_BUILDDIR=$out VTP_MODULE=$module \
        bash "$src/tests/lib/run-test" /usr/bin/$pkg-check
}
if [ -x /usr/bin/$pkg-check ]; then
    t "/usr/bin/$pkg-check finds the slot able to sign" checker
fi

# --- remove ---
t "dpkg -r $pkg" dpkg -r "$pkg"
t "dpkg --purge $pkg" dpkg --purge "$pkg"
gone() {
    local left
    left=$(dpkg-deb -c "$deb" | awk '{ print substr($6, 2) }' | grep -v '/$' |
        while read -r f; do [ ! -e "$f" ] || echo "$f"; done)
    [ -z "$left" ] || { say "left after purge: $left"; return 1; }
    ! p11-kit list-modules 2>/dev/null | grep -q "^$pkg:"
}
t "nothing of the package is left, and p11-kit no longer lists it" gone

finish
