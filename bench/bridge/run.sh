#!/bin/sh
# End-to-end benchmarks of the cloud bridge, against mosquitto on loopback
# (Debian packages mosquitto and mosquitto-clients):
#   - drain rate after an outage of BENCH_MESSAGES (default 50,000) QoS 1
#     messages, and loss on kill -9 during the outage, side by side with
#     mosquitto's own bridge (persistence on, max_queued_messages 100000,
#     restart_timeout 1 1); the gateway runs with its default window
#     (inflight 20) and with inflight 1000, about what mosquitto's bridge
#     keeps in flight (it does not apply max_inflight_messages upstream);
#   - resident memory of the gateway while an outage of BENCH_OUTAGE
#     (default 500,000) messages piles up on disk.
# The temp dir should be on a real disk: TMPDIR=/var/tmp bench/bridge/run.sh
set -eu
cd "$(dirname "$0")/../.."
export FIELDBRIDGE_BENCH_BRIDGE=1 FIELDBRIDGE_REQUIRE_PEERS=1
go test -count=1 -timeout 20m -run 'TestCompareBridges|TestOutageMemory' -v ./bench/bridge/ |
  grep -v -e '^=== RUN' -e '^--- PASS' -e '^PASS' -e '^ok'
