#!/bin/sh
# Prints the gateway's performance figures. Nothing here asserts a budget:
# compare the numbers with the budgets in the README / issue notes.
#
#   bench/run.sh            everything (about 4 minutes; needs python3-pymodbus,
#                           mosquitto and mosquitto-clients for the end-to-end runs,
#                           root and /dev/fuse for the power cuts)
#
# Run on an otherwise idle machine: CPU figures are process CPU time, but a
# loaded machine inflates them.
set -eu
cd "$(dirname "$0")/.."

echo "== stripped binary size (CGO_ENABLED=0, -trimpath -s -w)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for target in arm64: arm:7 arm:6 amd64:; do
  arch=${target%%:*}; arm=${target#*:}
  CGO_ENABLED=0 GOOS=linux GOARCH=$arch GOARM=$arm go build -trimpath -ldflags '-s -w' -o "$tmp/gw" ./cmd/gateway
  printf '  linux/%-6s %s bytes\n' "$arch${arm:+v$arm}" "$(stat -c %s "$tmp/gw")"
done

echo "== the demo config: wire cost per poll cycle, resident memory with the HTTP side off and on"
go test ./bench -run '^$' -bench 'Demo' -benchtime 1x | grep ^Benchmark

echo "== broker alone: mochi's cost per retained value published to 0 and 1 subscribers (auth=on: a user whose ACL"
echo "   is checked for every delivery), and the ACL check alone"
go test ./localbroker -run '^$' -bench 'PublishRetained|ACLDelivery' -benchtime 200000x -count 3 | grep ^Benchmark

echo "== publisher alone: encoding cost per point"
go test ./internal/publisher -run '^$' -bench . -benchtime 20000x | grep ^Benchmark

echo "== pipeline in one process: poll, decode, publish, 1 subscriber; 8 devices x 500 registers every 100 ms"
echo "   metrics=on: through the HTTP side's recorder, /metrics scraped every second;"
echo "   auth=on: the subscriber logs in and an ACL is checked for every message delivered"
go test ./bench -run '^$' -bench Pipeline -benchtime 1x -count 3 | grep ^Benchmark

echo "== end to end: pymodbus over TCP, a separate gateway process, mosquitto_sub on everything"
go test ./bench -run '^$' -bench EndToEnd -benchtime 1x -count 3 | grep ^Benchmark
echo "   the same with GOMAXPROCS=1 (fewer cross-thread wake-ups per message)"
GOMAXPROCS=1 go test ./bench -run '^$' -bench EndToEnd -benchtime 1x -count 2 | grep ^Benchmark

echo "== HTTP side with 4,000 points: size and time of /metrics, the status page, /api/status"
go test ./bench -run '^$' -bench HTTPScrape -benchtime 20x | grep ^Benchmark

echo "== probe --scan of unit ids 1-247 at 19200 baud on the paced RTU line, next to the physical minimum"
go test ./cmd/gateway -run '^$' -bench Scan247 -benchtime 1x | grep ^Benchmark

echo "== writes: command-to-result latency over TCP to pymodbus, alone and with 4,000 points polling on the same bus"
go test ./bench -run '^$' -bench WriteLatency -benchtime 1x -count 3 | grep ^Benchmark

echo "== modbus transports and planner"
go test ./adapters/modbus/transport -run '^$' -bench . -benchtime 2s | grep ^Benchmark

echo "== queue: append, drain, write amplification, SD-card wear link up/down (bench/queue/run.sh)"
COUNT=1 bench/queue/run.sh | grep ^Benchmark

echo "== cloud bridge: drain after an outage and kill -9, side by side with mosquitto's bridge; RSS during an outage"
bench/bridge/run.sh

echo "== power cuts: queue and gateway on a file system that keeps only what was fsynced (bench/powercut/run.sh)"
RUNS=10 bench/powercut/run.sh
