package modbus_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fieldbridge/fieldbridge/internal/testpeer"
)

// plantSpec is the field device for the integration tests: two live units,
// one that never answers, and a register range that answers exception 2.
func plantSpec() testpeer.DeviceSpec {
	return testpeer.DeviceSpec{
		Units: map[byte]testpeer.UnitSpec{
			1: {
				Holding: map[uint16]uint16{
					10: 0x0008,             // alarm: bit 3
					40: 0x4365, 41: 0xCCCD, // 229.8f, ABCD
					50: 0xFF33,                                     // int16 -205 → -20.5
					60: 0x0807, 61: 0x0605, 62: 0x0403, 63: 0x0201, // uint64 0x0102030405060708, DCBA
					80: 0x534E, 81: 0x2D30, 82: 0x3034, 83: 0x3200, // "SN-0042"
				},
				Input:    map[uint16]uint16{3: 0x3039, 4: 0x0000}, // uint32 12345, CDAB
				Coils:    map[uint16]bool{0: true},
				Discrete: map[uint16]bool{1: true},
			},
			2: {
				Holding: map[uint16]uint16{0: 7, 200: 1, 205: 2},
				Input:   map[uint16]uint16{0: 0xFFFF, 1: 0xFFFF},
			},
			3: {Holding: map[uint16]uint16{0: 42}}, // silent until revived
		},
		Silent:     []byte{3},
		Exceptions: []testpeer.ExceptionRange{{Unit: 2, Table: testpeer.Holding, Start: 195, End: 210, Code: 2}},
	}
}

// plantDevices is the devices: part of the config polling plantSpec.
const plantDevices = `
    devices:
      - name: meter1
        unit: 1
        interval: %[1]s
        points:
          - {name: voltage, table: holding, address: 40, type: float32, order: ABCD, unit: V}
          - {name: energy, table: input, address: 3, type: uint32, order: CDAB, scale: 0.01, unit: kWh}
          - {name: alarm, table: holding, address: 10, type: bool, bit: 3}
          - {name: serial, table: holding, address: 80, type: string, length: 10}
          - {name: temp, table: holding, address: 50, type: int16, scale: 0.1}
          - {name: big, table: holding, address: 60, type: uint64, order: DCBA}
          - {name: pump, table: coil, address: 0}
          - {name: door, table: discrete, address: 1}
          - {name: idle, table: coil, address: 5}
      - name: meter2
        unit: 2
        interval: %[1]s
        points:
          - {name: ok1, table: holding, address: 0}
          - {name: bad1, table: holding, address: 200}
          - {name: bad2, table: holding, address: 205, type: float32}
          - {name: ok2, table: input, address: 0, type: int32}
      - name: dead
        unit: 3
        interval: %[1]s
        points:
          - {name: x, table: holding, address: 0}
`

var plantWant = map[string]string{
	"meter1/voltage": "229.8",
	"meter1/energy":  "123.45",
	"meter1/alarm":   "true",
	"meter1/serial":  `"SN-0042"`,
	"meter1/temp":    "-20.5",
	"meter1/big":     "72623859790382856",
	"meter1/pump":    "true",
	"meter1/door":    "true",
	"meter1/idle":    "false",
	"meter2/ok1":     "7",
	"meter2/ok2":     "-1",
	"meter2/bad1":    "error: unit 2 holding 200..206: modbus exception 2 (illegal data address)",
	"meter2/bad2":    "error: unit 2 holding 200..206: modbus exception 2 (illegal data address)",
	"dead/x":         "error: unit 3 holding 0..0: no response (timeout)",
}

func busConfig(where string, interval time.Duration) string {
	return fmt.Sprintf(`gateway: {id: it}
adapters:
  - name: bus
    type: modbus
    %s
    timeout: 300ms
    retries: 1
    backoff_initial: 1s
    backoff_max: 4s
`, where) + fmt.Sprintf(plantDevices, interval)
}

func TestTCPAgainstPymodbus(t *testing.T) {
	dev := testpeer.StartTCP(t, plantSpec())
	a, sink, stop := startBus(t, busConfig("transport: tcp\n    address: "+dev.Addr, 200*time.Millisecond))
	checkPlant(t, sink, dev, 200*time.Millisecond)
	stop()
	if st := a.Stats(); st.FrameErrors != 0 || st.LinkErrors != 0 || st.DecodeErrors != 0 {
		t.Errorf("stats %+v: no frame, link or decode errors expected", st)
	}
}

func TestRTUAgainstPymodbus(t *testing.T) {
	dev := testpeer.StartRTU(t, plantSpec(), testpeer.LineOptions{})
	// Nine transactions a cycle at 19200 baud with 20 ms device turnaround
	// take about 330 ms: poll every 500 ms.
	a, sink, stop := startBus(t, busConfig("transport: rtu\n    device: "+dev.Path+"\n    baud: 19200\n    parity: E", 500*time.Millisecond))
	checkPlant(t, sink, dev, 500*time.Millisecond)
	stop()
	st := a.Stats()
	if st.FrameErrors != 0 || st.LinkErrors != 0 || st.DecodeErrors != 0 {
		t.Errorf("stats %+v: exception replies must not desynchronise the line", st)
	}
	line := dev.Line()
	if int64(line.Requests) != st.Requests || st.Link.BytesWritten != uint64(line.BytesToDevice) {
		t.Errorf("gateway counted %d requests / %d bytes out; the line saw %d / %d", st.Requests, st.Link.BytesWritten, line.Requests, line.BytesToDevice)
	}
}

// checkPlant asserts every value, the exception block, the dead unit's
// state and cost, and that the dead unit does not slow the live ones.
func checkPlant(t *testing.T, sink *recSink, dev *testpeer.Device, interval time.Duration) {
	t.Helper()
	sink.waitFor(t, 10*time.Second, "every point to have its expected value", func() bool {
		for k, want := range plantWant {
			if sink.valueLocked(k) != want {
				return false
			}
		}
		return sink.avail["meter1"] && sink.avail["meter2"] && sink.avail["dead"] == false && len(sink.changes) >= 3
	})

	// Over a window, the live devices keep (nearly) their 200 ms rate while
	// the dead one is probed with backoff: at most one timeout per period.
	deadBefore := dev.Requests(3)
	v0, _ := sink.counts("meter1/voltage")
	b0, _ := sink.counts("meter2/ok1")
	window := 4 * time.Second
	time.Sleep(window) // a rate is measured over a window of time, not awaited

	v1, vbad := sink.counts("meter1/voltage")
	b1, _ := sink.counts("meter2/ok1")
	nominal := int(window / interval)
	if got := v1 - v0; got < nominal*7/10 {
		t.Errorf("meter1 polled %d times in %s, want at least %d of a nominal %d: the dead unit slows the live ones", got, window, nominal*7/10, nominal)
	}
	if got := b1 - b0; got < nominal*7/10 {
		t.Errorf("meter2 polled %d times in %s, want at least %d of a nominal %d", got, window, nominal*7/10, nominal)
	}
	if probes := dev.Requests(3) - deadBefore; probes > 3 {
		t.Errorf("the dead unit got %d requests in %s; backoff (1s, 2s, 4s) allows at most 3", probes, window)
	}
	if vbad != 0 {
		t.Errorf("meter1/voltage had %d bad samples", vbad)
	}
	for k, want := range plantWant {
		if got := sink.value(k); got != want {
			t.Errorf("%s = %s, want %s", k, got, want)
		}
	}
	// A value change on the device is seen on the next poll, and a dead
	// device that comes back is online again within its backoff.
	dev.Set(1, testpeer.Holding, 40, 0x4366, 0x0000) // 230.0
	dev.SetSilent(3, false)
	sink.waitFor(t, 6*time.Second, "the new value and the revived device", func() bool {
		return sink.valueLocked("meter1/voltage") == "230" && sink.avail["dead"] && sink.valueLocked("dead/x") == "42"
	})
	if !strings.Contains(strings.Join(sink.changes, " "), "dead=offline") {
		t.Errorf("availability changes %v: dead never went offline", sink.changes)
	}
}
