#!/bin/sh
# Power-cut figures: the queue, and the whole gateway, through repeated power
# cuts on internal/testpeer/powercut (a FUSE file system that keeps only what
# was fsynced: file data by fsync, directory entries by fsync of their
# directory; the last writes torn, zeroed or junk). Prints, per mode (a fresh
# data dir on first start; a steady state in use):
#   lost_unsynced / lost_within_window and max_lost_age: what a cut lost that was
#     not yet synced, and how old the oldest of it was at the cut (compare with
#     sync_window, the group commit);
#   duplicates: acknowledged records / messages delivered again after a cut;
#   corrupt_records/bytes: torn tails the queue cut off at Open;
#   cut_time, reopen_time / restart_time: per cut.
# Nothing here asserts a budget; the tests themselves assert the promises.
#
#   bench/powercut/run.sh             30 cuts per mode (about 2 minutes)
#   RUNS=200 bench/powercut/run.sh    more
#
# Needs root, /dev/fuse, mosquitto and mosquitto-clients. A broken promise
# fails the test; its lines are shown.
set -eu
cd "$(dirname "$0")/../.."
runs="${RUNS:-30}"
export FIELDBRIDGE_POWERCUT_RUNS="$runs" FIELDBRIDGE_REQUIRE_PEERS=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

show() {
  grep -E 'powercut figures|--- (SKIP|FAIL)|^(ok|FAIL)|powercut_.*test.go:[0-9]+: .*(SKIP|gone|broken|never|reused|came back)' "$1" |
    sed -e 's/^ *//' -e 's/powercut_fuse_test.go:[0-9]*: //' -e 's/powercut_test.go:[0-9]*: //' || true
}

echo "== queue: $runs cuts per mode, group commit 100 ms, 16 KiB segments"
status=0
go test -count=1 -timeout 60m -run '^TestQueuePowerCuts$' -v ./bridge/queue/ >"$tmp/queue.log" 2>&1 || status=$?
show "$tmp/queue.log"

echo "== gateway (broker + bridge to mosquitto behind a cut link, 2 topics x 500 msg/s): $runs cuts per mode"
go test -count=1 -timeout 60m -run '^TestGatewayPowerCuts$' -v ./cmd/gateway/ >"$tmp/gateway.log" 2>&1 || status=$?
show "$tmp/gateway.log"
if [ "$status" != 0 ]; then
  # Keep the full logs of a failed run for a look at the details.
  keep="${TMPDIR:-/tmp}/powercut-logs.$$"
  mkdir -p "$keep" && cp "$tmp"/*.log "$keep/" && echo "full logs kept in $keep"
fi
exit "$status"
