#!/bin/sh
# Benchmarks of bridge/queue on this machine: append rate (budget >= 100,000
# records/s), drain rate, write amplification of the production cycle, and
# the SD-card wear at steady loads with the cloud up and down (budget: up
# <= 0.1, down <= 1.5 bytes written per payload byte at 1,000 msg/s), all
# from /proc/self/io write_bytes. The temp dir must be on a real disk, not
# tmpfs (tmpfs counts nothing); the script uses /var/tmp unless TMPDIR is set:
#   bench/queue/run.sh
# To compare with another revision, run it there too and feed both outputs
# to benchstat (go run golang.org/x/perf/cmd/benchstat@latest old.txt new.txt).
set -eu
cd "$(dirname "$0")/../.."
count="${COUNT:-3}"
export TMPDIR="${TMPDIR:-/var/tmp}"
echo "== append and drain (64-record batches, 256-byte payloads, group commit 100 ms)"
go test -run '^$' -bench 'BenchmarkAppend$|BenchmarkDrain$' -benchtime 400000x -count "$count" ./bridge/queue/
echo "== append with fsync in every Append (sync: always)"
go test -run '^$' -bench 'BenchmarkAppendSyncAlways$' -benchtime 50000x -count "$count" ./bridge/queue/
echo "== write amplification: production cycle, full speed and paced (about 25 s)"
go test -run '^$' -bench 'BenchmarkWriteAmplification' -benchtime 1x ./bridge/queue/
echo "== SD-card wear: 200-byte payloads at 100, 1,000, 10,000 msg/s, sync 100ms, cloud up (acks in 1-5 ms) and down (about 40 s)"
go test -run '^$' -bench 'BenchmarkSDWear' -benchtime 1x ./bridge/queue/
echo "== acknowledged records delivered again after a power cut: steady 1,000 msg/s with the cloud up, and a backlog drain at 20,000 msg/s"
go test -run '^$' -bench 'BenchmarkRedeliveryAfterCut' -benchtime 1x -count "$count" ./bridge/queue/
