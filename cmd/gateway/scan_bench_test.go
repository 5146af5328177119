package main

import (
	"strings"
	"testing"
	"time"

	"github.com/fieldbridge/fieldbridge/adapters/modbus/transport"
	"github.com/fieldbridge/fieldbridge/internal/testpeer"
)

// BenchmarkScan247 scans unit ids 1–247 at 19200 baud 8E1 on the paced RTU
// line (pymodbus answering for 3 ids, 20 ms turnaround, one character every
// 573 µs) with the default 100 ms timeout, and reports the time next to the
// physical minimum: every request and t3.5 on the wire, the replies of the
// ids that answer, and — for the silent ids — the timeout, without which
// silence cannot be told from a slow device.
//
//	go test ./cmd/gateway -run '^$' -bench Scan247 -benchtime 1x
func BenchmarkScan247(b *testing.B) {
	present := []byte{17, 100, 231}
	spec := testpeer.DeviceSpec{Units: map[byte]testpeer.UnitSpec{}}
	for _, u := range present {
		spec.Units[u] = testpeer.UnitSpec{Holding: map[uint16]uint16{0: 1}}
	}
	dev := testpeer.StartRTU(b, spec, testpeer.LineOptions{})
	const baud = 19200
	char := transport.CharTime(baud, 8, 'E', 1)
	gap := transport.FrameGap(baud, 8, 'E', 1)
	const timeout = 100 * time.Millisecond
	reqWire := 8 * char   // FC03, one register
	replyWire := 7 * char // address, function, count, 2 bytes, CRC
	silent := 247 - len(present)
	wire := 247*(reqWire+gap) + time.Duration(len(present))*(testpeer.DefaultTurnaround+replyWire)
	withTimeouts := wire + time.Duration(silent)*timeout

	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		began := time.Now()
		code, out, errOut := runCmd(b, "probe", "--rtu", dev.Path, "--baud", "19200", "--scan", "--json")
		took := time.Since(began)
		if code != exitOK || strings.TrimSpace(out) != `{"units": [17, 100, 231]}` {
			b.Fatalf("scan: exit %d %s %s", code, out, errOut)
		}
		b.ReportMetric(took.Seconds(), "s/scan")
	}
	b.ReportMetric(wire.Seconds(), "s-wire-minimum")
	b.ReportMetric(withTimeouts.Seconds(), "s-minimum-with-100ms-timeouts")
}
