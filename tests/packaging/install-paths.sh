#!/usr/bin/env bash
# What `make install` writes, and the config path the module reads by default:
#   install-paths.sh      under run-test (no Vault needed), with VTP_BUILDDIR a configured build
# `make install DESTDIR=$tmp` must put every file under the configured prefix (unless configure
# was given --with-module-dir or --with-p11-kit-config-dir, which may point outside it: then the
# test skips), including the module, its p11-kit .module file, the man page, the example config
# and the policies (and the check program with its man page, once the tree has them), and no
# libtool archive; `make uninstall` must take them all away again. The
# module's default config path must be the one configure chose, and, when --with-config-file
# was not given, the one the man page and README show.

# shellcheck source=tests/lib/common.sh
. "$(dirname "$0")/../lib/common.sh"

vtp_require make
cd "$VTP_BUILDDIR" || vtp_fail "no build directory $VTP_BUILDDIR"
[ -e "$VTP_MODULE" ] || vtp_fail "module $VTP_MODULE is not built"

# mkvar NAME: the value of a variable of the build's Makefile, expanded.
mkvar() {
    env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s --no-print-directory -f Makefile \
        -f - vtp-print-var VAR="$1" <<'MK'
vtp-print-var:
	@echo '$($(VAR))'
MK
}
prefix=$(mkvar prefix)
moduledir=$(mkvar moduledir)
p11kitconfdir=$(mkvar p11kitconfdir)
configfile=$(mkvar configfile)
pkgdatadir=$(mkvar pkgdatadir)
docdir=$(mkvar docdir)
mandir=$(mkvar mandir)
bindir=$(mkvar bindir)
configured=$(./config.status --config)
vtp_say "prefix $prefix; module dir $moduledir; p11-kit dir $p11kitconfdir; config $configfile"
vtp_say "configured with: $configured"

# The config path compiled into the module.
grep -aqF "$configfile" "$VTP_MODULE" ||
    vtp_fail "the module does not hold its configured default config path $configfile"
vtp_say "ok: the module's default config path is $configfile"
case $configured in
*--with-config-file*)
    vtp_say "configure was given --with-config-file: not compared with the docs" ;;
*)
    documented=/etc/vault-transit-pkcs11/vault-transit-pkcs11.conf
    [ "$configfile" = "$documented" ] ||
        vtp_fail "a default build reads $configfile, the docs say $documented"
    grep -q "^\\.I $documented\$" "$VTP_SRCDIR/docs/vault-transit-pkcs11.conf.5" ||
        vtp_fail "the man page's SYNOPSIS does not show $documented"
    grep -qF "\`$documented\`" "$VTP_SRCDIR/README.md" ||
        vtp_fail "README.md does not show $documented"
    vtp_say "ok: it is the path the man page and README show"
    ;;
esac

case $configured in
*--with-module-dir* | *--with-p11-kit-config-dir*)
    vtp_say "SKIP: configure was told to install outside the prefix ($configured)"
    exit 77
    ;;
esac

dest=$VTP_TMP/dest
nmake() { env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make "$@"; }
vtp_check "make install DESTDIR=$dest" nmake install DESTDIR="$dest"
outside=$(cd "$dest" && find . ! -type d | sed 's|^\.||' | grep -v "^$prefix/" || true)
[ -z "$outside" ] || vtp_fail "make install wrote outside the prefix $prefix: $outside"
vtp_say "ok: every installed file is under $prefix"

want=("$moduledir/vault-transit-pkcs11.so" "$p11kitconfdir/vault-transit-pkcs11.module"
    "$mandir/man5/vault-transit-pkcs11.conf.5" "$docdir/examples/vault-transit-pkcs11.conf.example"
    "$pkgdatadir/policies/spire.hcl" "$pkgdatadir/policies/sign-only.hcl")
# The check program, once the tree has it (its man page is the sign).
if [ -e "$VTP_SRCDIR/docs/vault-transit-pkcs11-check.1" ]; then
    want+=("$bindir/vault-transit-pkcs11-check" "$mandir/man1/vault-transit-pkcs11-check.1")
fi
for f in "${want[@]}"; do
    [ -f "$dest$f" ] || vtp_fail "make install did not install $f"
done
[ ! -e "$dest$moduledir/vault-transit-pkcs11.la" ] ||
    vtp_fail "make install left the libtool archive in the module directory"
vtp_say "ok: the module, its .module file, the man page, the example and the policies are there"

# The .module file names the module so that p11-kit finds it: by file name in p11-kit's own
# module directory, else by full path.
p11kit_dir=$(pkg-config --variable=p11_module_path p11-kit-1 2>/dev/null || true)
line=$(grep '^module:' "$dest$p11kitconfdir/vault-transit-pkcs11.module")
if [ "$moduledir" = "$p11kit_dir" ]; then
    want="module: vault-transit-pkcs11.so"
else
    want="module: $moduledir/vault-transit-pkcs11.so"
fi
[ "$line" = "$want" ] || vtp_fail "the .module file says '$line', not '$want'"
vtp_say "ok: the .module file says '$line'"

vtp_check "make uninstall DESTDIR=$dest" nmake uninstall DESTDIR="$dest"
left=$(cd "$dest" && find . ! -type d)
[ -z "$left" ] || vtp_fail "make uninstall left: $left"
vtp_say "ok: make uninstall removes every file"

vtp_say "PASS"
