package modbus_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fieldbridge/fieldbridge/internal/testpeer"
)

// scatteredPoints is 30 points over holding 100..199, no gap wider than 10.
func scatteredPoints() string {
	var b strings.Builder
	addrs := []int{100, 103, 105, 110, 112, 120, 121, 125, 135, 138, 142, 145, 152, 155, 160,
		163, 166, 170, 176, 178, 180, 185, 187, 189, 191, 193, 195, 197, 198, 199}
	for i, a := range addrs {
		fmt.Fprintf(&b, "          - {name: p%02d, table: holding, address: %d}\n", i, a)
	}
	return b.String()
}

// TestRTUOneTransactionPerCycle: 30 scattered points cost one transaction
// per poll cycle on the serial line, and exactly the bytes the plan says.
func TestRTUOneTransactionPerCycle(t *testing.T) {
	spec := testpeer.DeviceSpec{Units: map[byte]testpeer.UnitSpec{1: {Holding: map[uint16]uint16{199: 99}}}}
	dev := testpeer.StartRTU(t, spec, testpeer.LineOptions{})
	a, sink, stop := startBus(t, `gateway: {id: it}
adapters:
  - name: bus
    type: modbus
    transport: rtu
    device: `+dev.Path+`
    baud: 19200
    timeout: 500ms
    devices:
      - name: meter
        unit: 1
        interval: 300ms
        points:
`+scatteredPoints())
	sink.waitFor(t, 10*time.Second, "six poll cycles", func() bool { return sink.count["meter/p29"] >= 6 })
	stop()
	st := a.Stats()
	line := dev.Line()
	// One FC03 of 100 registers: 8 bytes out, 5 + 200 bytes back.
	if st.Cycles < 6 || int64(line.Requests) != st.Cycles || st.Requests != st.Cycles {
		t.Errorf("%d cycles, %d requests counted by the gateway, %d transactions on the line: want one per cycle", st.Cycles, st.Requests, line.Requests)
	}
	if line.BytesToDevice != 8*line.Requests || line.BytesFromDevice != 205*line.Replies {
		t.Errorf("line bytes %d out / %d in for %d requests / %d replies: want 8 and 205 each", line.BytesToDevice, line.BytesFromDevice, line.Requests, line.Replies)
	}
	if got := sink.value("meter/p29"); got != "99" {
		t.Errorf("p29 = %s", got)
	}
	t.Logf("%d cycles: %d transactions, %d bytes on the wire per cycle", st.Cycles, int64(line.Requests)/st.Cycles, int64(line.BytesToDevice+line.BytesFromDevice)/st.Cycles)
}

const faultConfig = `gateway: {id: it}
adapters:
  - name: bus
    type: modbus
    %s
    timeout: 300ms
    retries: 1
    backoff_initial: 200ms
    backoff_max: 1s
    devices:
      - name: m1
        unit: 1
        interval: 200ms
        points:
          - {name: a, table: holding, address: 0}
      - name: m2
        unit: 2
        interval: 200ms
        points:
          - {name: b, table: input, address: 0}
`

func faultSpec() testpeer.DeviceSpec {
	return testpeer.DeviceSpec{Units: map[byte]testpeer.UnitSpec{
		1: {Holding: map[uint16]uint16{0: 11}},
		2: {Input: map[uint16]uint16{0: 22}},
	}}
}

// TestRTUPortVanishes: the USB adapter is unplugged and plugged back in;
// polling resumes without a restart.
func TestRTUPortVanishes(t *testing.T) {
	dev := testpeer.StartRTU(t, faultSpec(), testpeer.LineOptions{})
	a, sink, _ := startBus(t, fmt.Sprintf(faultConfig, "transport: rtu\n    device: "+dev.Path+"\n    baud: 19200"))
	good := func() bool { return sink.valueLocked("m1/a") == "11" && sink.valueLocked("m2/b") == "22" }
	sink.waitFor(t, 10*time.Second, "first values", good)

	dev.Unplug()
	sink.waitFor(t, 10*time.Second, "both devices offline and their points bad", func() bool {
		return !sink.avail["m1"] && !sink.avail["m2"] &&
			strings.HasPrefix(sink.valueLocked("m1/a"), "error:") && strings.HasPrefix(sink.valueLocked("m2/b"), "error:")
	})
	dev.Replug()
	sink.waitFor(t, 10*time.Second, "polling to resume", func() bool { return good() && sink.avail["m1"] && sink.avail["m2"] })
	if st := a.Stats(); st.LinkErrors == 0 {
		t.Errorf("stats %+v: the vanished port must be counted as a link error", st)
	}
}

// TestRTUCorruptReply: a reply with a bad CRC is counted, the point goes bad
// at most briefly, and the line recovers by itself.
func TestRTUCorruptReply(t *testing.T) {
	dev := testpeer.StartRTU(t, faultSpec(), testpeer.LineOptions{})
	a, sink, _ := startBus(t, fmt.Sprintf(faultConfig, "transport: rtu\n    device: "+dev.Path+"\n    baud: 19200"))
	sink.waitFor(t, 10*time.Second, "first values", func() bool { return sink.valueLocked("m1/a") == "11" })
	for i := 0; i < 3; i++ {
		dev.CorruptNextReply()
		before, _ := sink.counts("m2/b")
		sink.waitFor(t, 5*time.Second, "polling after the corrupt reply", func() bool { return sink.count["m2/b"] >= before+2 })
	}
	st := a.Stats()
	if st.FrameErrors < 3 {
		t.Errorf("stats %+v: 3 corrupt replies, want 3 frame errors", st)
	}
	// With one retry per request, a single bad frame never reaches the points.
	_, bad1 := sink.counts("m1/a")
	_, bad2 := sink.counts("m2/b")
	if bad1+bad2 != 0 {
		t.Errorf("%d bad samples: a corrupt reply must be retried, not published", bad1+bad2)
	}
	if sink.valueLocked("m1/a") != "11" || sink.valueLocked("m2/b") != "22" {
		t.Errorf("values after the faults: %s %s", sink.value("m1/a"), sink.value("m2/b"))
	}
}

// TestTCPConnectionRefused: the device's endpoint refuses connections and
// comes back; the bus logs it, backs off and resumes.
func TestTCPConnectionRefused(t *testing.T) {
	dev := testpeer.StartTCP(t, faultSpec())
	proxy := testpeer.StartProxy(t, dev.Addr)
	proxy.Cut()
	a, sink, _ := startBus(t, fmt.Sprintf(faultConfig, "transport: tcp\n    address: "+proxy.Addr()))
	sink.waitFor(t, 10*time.Second, "both devices offline", func() bool {
		_, ok1 := sink.avail["m1"]
		_, ok2 := sink.avail["m2"]
		return ok1 && ok2 && !sink.avail["m1"] && !sink.avail["m2"] && strings.Contains(sink.valueLocked("m1/a"), "connection refused")
	})
	proxy.Restore()
	sink.waitFor(t, 10*time.Second, "polling to resume", func() bool {
		return sink.valueLocked("m1/a") == "11" && sink.valueLocked("m2/b") == "22" && sink.avail["m1"] && sink.avail["m2"]
	})
	if st := a.Stats(); st.LinkErrors == 0 {
		t.Errorf("stats %+v: refused connections must be counted", st)
	}
}

// TestTCPSilentLink: the connection stays open but nothing comes back (a
// NAT that forgot the session); every device times out, goes offline, and
// a fresh connection brings them back.
func TestTCPSilentLink(t *testing.T) {
	dev := testpeer.StartTCP(t, faultSpec())
	proxy := testpeer.StartProxy(t, dev.Addr)
	_, sink, _ := startBus(t, fmt.Sprintf(faultConfig, "transport: tcp\n    address: "+proxy.Addr()))
	sink.waitFor(t, 10*time.Second, "first values", func() bool { return sink.valueLocked("m1/a") == "11" && sink.avail["m2"] })
	proxy.Blackhole(true)
	sink.waitFor(t, 10*time.Second, "devices offline", func() bool { return !sink.avail["m1"] && !sink.avail["m2"] })
	proxy.Blackhole(false)
	sink.waitFor(t, 10*time.Second, "devices back", func() bool { return sink.avail["m1"] && sink.avail["m2"] })
}
