#!/bin/sh
# Benchmarks of bridge/queue on this machine: append rate (budget >= 100,000
# records/s), drain rate, and write amplification (budget <= 1.5x) measured
# from /proc/self/io. The temp dir must be on a real disk, not tmpfs:
#   TMPDIR=/var/tmp bench/queue/run.sh
set -eu
cd "$(dirname "$0")/../.."
count="${COUNT:-3}"
echo "== append and drain (64-record batches, 256-byte payloads, group commit 100 ms)"
go test -run '^$' -bench 'BenchmarkAppend$|BenchmarkDrain$' -benchtime 400000x -count "$count" ./bridge/queue/
echo "== append with fsync in every Append (sync: always)"
go test -run '^$' -bench 'BenchmarkAppendSyncAlways$' -benchtime 50000x -count "$count" ./bridge/queue/
echo "== write amplification: production cycle, full speed and paced (about 25 s)"
go test -run '^$' -bench 'BenchmarkWriteAmplification' -benchtime 1x ./bridge/queue/
