#!/usr/bin/env bash
# Builds spire-server and spire-agent v1.13.3 from source through the Go module proxy, once:
#   tests/spire/build-spire.sh
# The last line of stdout is the directory holding both binaries; progress goes to stderr.
#
# Cache: ${VTP_BUILDDIR:-<repo>/_build}/spire-v1.13.3/bin. When both binaries are there and
# `spire-server --version` says 1.13.3 nothing is built. Otherwise a scratch Go module in
# spire-v1.13.3/src (go.mod "go 1.25") records both commands as tools (`go get -tool ...@v1.13.3`)
# and `go install` puts them in bin/. (A plain `go install ...@v1.13.3` fails behind a proxy that
# refuses the module's version list: it reads @v/list for deprecations and gets 403.) Go's own module and build caches (in $HOME by default) make a
# rebuild on the same machine quick.
#
# Needs Go >= 1.25.3 (SPIRE's go.mod): /usr/local/go/bin/go when present, else `go` on PATH
# (Debian 12's golang-go 1.19 is too old); GOTOOLCHAIN=local, so no toolchain is downloaded.
# Needs gcc: the sqlite3 datastore is cgo (mattn/go-sqlite3).
# Exit status: 0 built or cached; 77 no suitable Go or gcc (the caller decides whether that is a
# skip); 1 the build failed (its output is on stderr).
#
# Timings on a 2-core machine (Debian 12, Go 1.26.8): cold (empty Go module and build caches)
# about 5.5 minutes, the `go get` downloads (~1.4 GB module cache) half a minute of it; warm
# (Go's caches filled, a new bin/ directory) about 35 s, mostly linking; cached (bin/ present)
# 0.03 s.
set -euo pipefail

SPIRE_VERSION=1.13.3
srcdir=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cache=${VTP_BUILDDIR:-$srcdir/_build}/spire-v$SPIRE_VERSION
bin=$cache/bin

say() { printf 'build-spire: %s\n' "$*" >&2; }

cached_ok() {
    [ -x "$bin/spire-server" ] && [ -x "$bin/spire-agent" ] &&
        "$bin/spire-server" --version 2>&1 | grep -qx "$SPIRE_VERSION.*"
}

if cached_ok; then
    echo "$bin"
    exit 0
fi

# A Go new enough for SPIRE's go.mod.
go_ok() { # go_ok GO: GO is >= 1.25.3
    local v
    v=$("$1" env GOVERSION 2>/dev/null) || return 1
    v=${v#go}
    printf '%s\n%s\n' 1.25.3 "${v%%[-+ ]*}" | sort -V -C
}
GO=
for g in /usr/local/go/bin/go "$(command -v go 2>/dev/null || true)"; do
    if [ -n "$g" ] && [ -x "$g" ] && go_ok "$g"; then
        GO=$g
        break
    fi
done
if [ -z "$GO" ]; then
    say "no Go >= 1.25.3 (tried /usr/local/go/bin/go and go on PATH: $(go version 2>/dev/null ||
        echo none)); SPIRE v$SPIRE_VERSION needs it"
    exit 77
fi
if ! command -v gcc >/dev/null 2>&1; then
    say "gcc is missing; SPIRE's sqlite3 datastore is cgo"
    exit 77
fi

mkdir -p "$cache/src" "$bin"
# Tests run in parallel: one builds, the others wait for it and use its result.
exec {lockfd}>"$cache/.build-lock"
flock "$lockfd"
if cached_ok; then
    echo "$bin"
    exit 0
fi

export GOTOOLCHAIN=local GOFLAGS=-modcacherw CGO_ENABLED=1 GOWORK=off GO111MODULE=on
say "building spire-server and spire-agent v$SPIRE_VERSION with $("$GO" version) into $bin"
start=$(date +%s)
cd "$cache/src"
if ! { [ -f go.mod ] && grep -q "github.com/spiffe/spire v$SPIRE_VERSION" go.mod &&
    grep -q 'spiffe/spire/cmd/spire-server$' go.mod && grep -q 'spiffe/spire/cmd/spire-agent$' go.mod; }; then
    rm -f go.mod go.sum
    printf 'module vtp.local/spire-tools\n\ngo 1.25\n' >go.mod
    for cmd in spire-server spire-agent; do
        say "go get -tool github.com/spiffe/spire/cmd/$cmd@v$SPIRE_VERSION"
        "$GO" get -tool "github.com/spiffe/spire/cmd/$cmd@v$SPIRE_VERSION" >&2
    done
fi
rm -f "$bin/spire-server" "$bin/spire-agent"
GOBIN=$bin "$GO" install github.com/spiffe/spire/cmd/spire-server \
    github.com/spiffe/spire/cmd/spire-agent >&2
if ! cached_ok; then
    say "built, but $bin/spire-server --version does not say $SPIRE_VERSION:" \
        "$("$bin/spire-server" --version 2>&1 || true)"
    exit 1
fi
say "built in $(($(date +%s) - start))s"
echo "$bin"
