#!/bin/sh
# End-to-end benchmarks of the cloud bridge, against mosquitto on loopback
# (Debian packages mosquitto and mosquitto-clients), printing their figures:
#   - TestLinkSpeed: drain rate of a backlog of BENCH_BACKLOG (5,000) and a
#     live stream of 2,000 msg/s for 10 s at 0, 20, 100 and 300 ms round
#     trip (a delay line), the gateway at its defaults side by side with
#     mosquitto's own bridge (persistence on, max_queued_messages 100000,
#     restart_timeout 1 1), and the CPU each process spent per message
#     drained (the bridge, the upstream, this harness);
#   - TestCompareBridges: a 50,000-message drain on loopback and a kill -9
#     during an outage, the same comparison;
#   - TestQuotaDrain: records/s into an AWS-like upstream (100 publishes/s)
#     with max_rate 100, with and without batching;
#   - TestGatewayWear: bytes written to disk per payload byte at 100, 1,000
#     and 10,000 msg/s, link up and link down;
#   - TestWindowMemory: resident memory with the window at its largest;
#   - TestOutageMemory: resident memory while an outage of BENCH_OUTAGE
#     (500,000) messages piles up on disk.
# The subscriber counting at the upstream is a minimal MQTT reader
# (testpeer.RawSubscriber): paho and mosquitto_sub as counters cost as much CPU as
# the upstream broker, and on a 2-core machine they set the 0 ms figures.
# BENCH_PPROF=ADDR serves the gateway's profiles. paho's own cost per
# message: go test ./bridge -run '^$' -bench PahoPublish.
# The temp dir must be on a real disk for the wear figures: it defaults to
# /var/tmp here. BENCH_ONLY=TestName runs one of them.
set -eu
cd "$(dirname "$0")/../.."
export FIELDBRIDGE_BENCH_BRIDGE=1 FIELDBRIDGE_REQUIRE_PEERS=1
export TMPDIR="${TMPDIR:-/var/tmp}"
only="${BENCH_ONLY:-TestLinkSpeed|TestCompareBridges|TestQuotaDrain|TestGatewayWear|TestWindowMemory|TestOutageMemory}"
go test -count=1 -timeout 60m -run "^($only)\$" -v ./bench/bridge/ |
  grep -v -e '^=== RUN' -e '^--- PASS' -e '^PASS' -e '^ok'
