# shellcheck shell=bash
# Helpers for the SPIRE tests in tests/spire/. Sourced after tests/lib/common.sh.
#
#   vtp_go_find        set VTP_GO to a Go toolchain >= 1.24 (the SPIRE plugin's go.mod), or
#                      skip (exit 77; exit 99 under CI=true)
#   vtp_go ARGS...     run it with the project's settings: no toolchain download, module cache
#                      read-write (so `rm -rf` of a build tree works), GOFLAGS=-mod=readonly
#   vtp_spire_go_test_setup DIR
#                      what the plugin's Go tests need: Go, SoftHSM2, the built module; cd to
#                      $VTP_SRCDIR/DIR; the tests then require both tokens (SKM_*)
#   vtp_skip_or_error MSG
#                      exit 77 (skip), or 99 under CI=true, where nothing may be skipped
#   vtp_spire_find     set SPIRE_BIN (spire-server and spire-agent v1.13.3) and SPIRE_VERSION:
#                      $VTP_SPIRE_BIN, else tests/spire/build-spire.sh's cache under
#                      $VTP_BUILDDIR (<repo>/_build for an in-tree build), built when missing
#                      (its log in $VTP_TMP/build-spire.log); skips when it cannot be built
#   vtp_group_alive PGID
#                      a process of that group is alive (not a zombie)
#   vtp_stop_group PGID
#                      SIGTERM to the group's leader (a SPIRE process, which stops its
#                      plugins); up to 15 s for the whole group to exit, then SIGKILL to what
#                      is left. Returns 1 if SIGKILL was needed.

vtp_go_find() {
    local g v
    for g in ${VTP_GO:-} ${GO:-} /usr/local/go/bin/go go; do
        command -v "$g" >/dev/null 2>&1 || continue
        v=$(GOTOOLCHAIN=local "$g" env GOVERSION 2>/dev/null) || continue
        v=${v#go}
        case $v in
        1.2[4-9]* | 1.[3-9][0-9]* | [2-9].*)
            VTP_GO=$(command -v "$g")
            export VTP_GO
            return 0
            ;;
        esac
    done
    if [ "${CI:-}" = true ]; then
        printf '%s: ERROR: no Go >= 1.24 (the SPIRE plugin needs it), and CI must skip nothing\n' \
            "$VTP_NAME"
        exit 99
    fi
    printf '%s: SKIP: no Go >= 1.24 on PATH or at /usr/local/go/bin/go\n' "$VTP_NAME"
    exit 77
}

vtp_go() {
    GOTOOLCHAIN=local GOFLAGS="-mod=readonly -modcacherw" GOWORK=off CGO_ENABLED=1 \
        "$VTP_GO" "$@"
}

vtp_spire_go_test_setup() {
    vtp_go_find
    vtp_require softhsm2-util /usr/lib/softhsm/libsofthsm2.so
    [ -e "$VTP_MODULE" ] || vtp_fail "module $VTP_MODULE is not built"
    cd "$VTP_SRCDIR/$1" || vtp_fail "no $VTP_SRCDIR/$1"
    export SKM_VTP_MODULE=$VTP_MODULE SKM_REQUIRE_BACKENDS=1
    vtp_say "$(vtp_go version), module $VTP_MODULE"
}

vtp_skip_or_error() {
    if [ "${CI:-}" = true ]; then
        printf '%s: ERROR: %s, and CI must skip nothing\n' "$VTP_NAME" "$1"
        exit 99
    fi
    printf '%s: SKIP: %s\n' "$VTP_NAME" "$1"
    exit 77
}

vtp_spire_find() {
    local rc=0 t0 cache_parent
    if [ -n "${VTP_SPIRE_BIN:-}" ]; then
        SPIRE_BIN=$VTP_SPIRE_BIN
    else
        t0=$(date +%s)
        # an in-tree build keeps SPIRE in <repo>/_build (ignored by git), not beside the sources
        cache_parent=$VTP_BUILDDIR
        [ "$(cd "$VTP_BUILDDIR" && pwd)" != "$(cd "$VTP_SRCDIR" && pwd)" ] ||
            cache_parent=$VTP_SRCDIR/_build
        [ -x "$cache_parent/spire-v1.13.3/bin/spire-server" ] ||
            vtp_say "building SPIRE v1.13.3 into $cache_parent/spire-v1.13.3 (~35 s, ~6 minutes cold)"
        SPIRE_BIN=$(VTP_BUILDDIR=$cache_parent "$VTP_SRCDIR/tests/spire/build-spire.sh" \
            2>"$VTP_TMP/build-spire.log" | tail -n 1) || rc=$?
        if [ "$rc" = 77 ]; then
            sed 's/^/  | /' "$VTP_TMP/build-spire.log"
            vtp_skip_or_error "tests/spire/build-spire.sh cannot build SPIRE here (Go >= 1.25.3 and gcc needed)"
        elif [ "$rc" != 0 ]; then
            tail -n 40 "$VTP_TMP/build-spire.log" | sed 's/^/  | /'
            vtp_fail "tests/spire/build-spire.sh failed (exit $rc)"
        fi
        [ $(($(date +%s) - t0)) -lt 5 ] || vtp_say "SPIRE built in $(($(date +%s) - t0))s"
    fi
    [ -x "$SPIRE_BIN/spire-server" ] && [ -x "$SPIRE_BIN/spire-agent" ] ||
        vtp_fail "no spire-server and spire-agent in $SPIRE_BIN"
    SPIRE_VERSION=$("$SPIRE_BIN/spire-server" --version 2>&1 | head -n 1)
    case $SPIRE_VERSION in
    1.13.3*) ;;
    *) vtp_fail "spire-server is $SPIRE_VERSION, not 1.13.3" ;;
    esac
}

vtp_group_alive() {
    ps -e -o pgid=,stat= | awk -v g="$1" '$1 == g && $2 !~ /^Z/ { found = 1 } END { exit !found }'
}

vtp_stop_group() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do
        if ! vtp_group_alive "$pid"; then
            wait "$pid" 2>/dev/null || true
            return 0
        fi
        sleep 0.1
    done
    echo "process group $pid still alive 15s after SIGTERM: $(ps -e -o pgid=,pid=,args= |
        awk -v g="$pid" '$1 == g' | head -n 5)"
    kill -KILL -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    return 1
}
