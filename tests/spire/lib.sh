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
