#!/usr/bin/env bash
# tests/bench/spire-smoke.sh: keeps tests/bench/spire-bench.sh and spire-mint working. Its
# --smoke run (make check, under tests/lib/run-test: the test's Vault and key prefix): each of
# the disk KeyManager, the plugin over SoftHSM2 and the plugin over this module, 4 callers for
# 2 s after 0.5 s; every mint must succeed and every 5th SVID verify. No thresholds. About 15 s
# once SPIRE is built (tests/spire/build-spire.sh, as tests/spire/e2e.sh needs it too).
exec bash "$(dirname "$0")/spire-bench.sh" --smoke
