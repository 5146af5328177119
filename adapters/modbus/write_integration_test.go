package modbus_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fieldbridge/fieldbridge/adapters"
	"github.com/fieldbridge/fieldbridge/adapters/modbus"
	"github.com/fieldbridge/fieldbridge/internal/testpeer"
)

// Writes against Debian's pymodbus: every command is checked three ways —
// the registers the device holds afterwards, the function codes it
// received, and the read-back the gateway reports and publishes.

// write sends one command and waits for its result.
func write(t *testing.T, a *modbus.Adapter, device, point string, v adapters.Value) adapters.WriteResult {
	t.Helper()
	var p *adapters.Point
	for _, d := range a.Devices() {
		for _, q := range d.Points {
			if d.Name == device && q.Name == point {
				p = q
			}
		}
	}
	if p == nil {
		t.Fatalf("no point %s/%s", device, point)
	}
	c := make(chan adapters.WriteResult, 1)
	a.Write(adapters.Command{Point: p, Value: v}, func(r adapters.WriteResult) { c <- r })
	select {
	case r := <-c:
		return r
	case <-time.After(15 * time.Second):
		t.Fatalf("no result for %s/%s within 15s", device, point)
	}
	return adapters.WriteResult{}
}

// regs lays a big-endian value out as a device with the given order holds
// it, as register values (the order names the value's bytes in wire order;
// written out here independently of the gateway's tables).
func regs(be []byte, order string) []uint16 {
	wire := make([]byte, len(be))
	for i := range wire {
		wire[i] = be[order[i]-'A']
	}
	out := make([]uint16, len(wire)/2)
	for i := range out {
		out[i] = binary.BigEndian.Uint16(wire[2*i:])
	}
	return out
}

func be(v any) []byte {
	b, err := binary.Append(nil, binary.BigEndian, v)
	if err != nil {
		panic(err)
	}
	return b
}

// TestWriteEveryTypeAndOrder: a command for each writable type in every
// byte order lands in the device's registers exactly as the device would
// store the value, with the right function code, and is read back and
// published.
func TestWriteEveryTypeAndOrder(t *testing.T) {
	dev := testpeer.StartTCP(t, testpeer.DeviceSpec{Units: map[byte]testpeer.UnitSpec{
		1: {Holding: map[uint16]uint16{300: 0xA5F0, 301: 0x0F0F}},
	}})
	type tc struct {
		point, decl string
		value       adapters.Value
		addr        uint16
		want        []uint16 // registers at addr afterwards
		readBack    string
		fc          int
	}
	var cases []tc
	add := func(name, decl string, v adapters.Value, addr uint16, want []uint16, readBack string, fc int) {
		cases = append(cases, tc{name, decl, v, addr, want, readBack, fc})
	}
	add("u16", "type: uint16", adapters.Int(1200), 0, []uint16{1200}, "1200", 6)
	add("u16_badc", "type: uint16, order: BADC", adapters.Int(0x1234), 1, []uint16{0x3412}, "4660", 6)
	add("i16_scaled", "type: int16, scale: 0.1, offset: -40", adapters.Float64(-61.55), 2, []uint16{uint16(0x10000 - 216)}, "-61.6", 6)
	add("bool_reg", "type: bool", adapters.Bool(true), 3, []uint16{1}, "true", 6)
	addr := uint16(10)
	for _, o := range []string{"ABCD", "CDAB", "BADC", "DCBA"} {
		add("i32_"+o, "type: int32, order: "+o, adapters.Int(-123456), addr, regs(be(int32(-123456)), o), "-123456", 16)
		add("u32_"+o, "type: uint32, scale: 0.01, order: "+o, adapters.Float64(42949672.95), addr+2, regs(be(uint32(4294967295)), o), "42949672.95", 16)
		add("f32_"+o, "type: float32, order: "+o, adapters.Float64(229.8), addr+4, regs(be(math.Float32bits(229.8)), o), "229.8", 16)
		addr += 6
	}
	for _, o := range []string{"ABCDEFGH", "GHEFCDAB", "BADCFEHG", "HGFEDCBA"} {
		add("i64_"+o, "type: int64, order: "+o, adapters.Int(-9876543210000), addr, regs(be(int64(-9876543210000)), o), "-9876543210000", 16)
		add("u64_"+o, "type: uint64, order: "+o, adapters.Uint(math.MaxUint64), addr+4, regs(be(uint64(math.MaxUint64)), o), "18446744073709551615", 16)
		add("f64_"+o, "type: float64, order: "+o, adapters.Float64(-0.000123), addr+8, regs(be(math.Float64bits(-0.000123)), o), "-0.000123", 16)
		addr += 12
	}
	add("str", "type: string, length: 4", adapters.String("SN-42"), 200, []uint16{0x534E, 0x2D34, 0x3200, 0}, `"SN-42"`, 16)
	add("str_badc", "type: string, length: 2, order: BADC", adapters.String("abc"), 210, []uint16{0x6261, 0x0063}, `"abc"`, 16)
	// Bits: the other 15 bits of the register stay as they were, in both
	// byte orders (the bit is numbered in the value the order makes).
	add("bit3", "type: bool, bit: 3", adapters.Bool(true), 300, []uint16{0xA5F8}, "true", 6)
	add("bit15_badc", "type: bool, bit: 15, order: BADC", adapters.Bool(true), 301, []uint16{0x0F8F}, "true", 6)

	var points strings.Builder
	for _, c := range cases {
		fmt.Fprintf(&points, "          - {name: %s, table: holding, address: %d, %s, writable: true}\n", c.point, c.addr, c.decl)
	}
	points.WriteString("          - {name: pump, table: coil, address: 7, writable: true}\n")
	a, sink, _ := startBus(t, `gateway: {id: it}
adapters:
  - name: bus
    type: modbus
    transport: tcp
    address: `+dev.Addr+`
    timeout: 2s
    devices:
      - name: dev
        unit: 1
        interval: 1h
        points:
`+points.String())
	sink.waitFor(t, 10*time.Second, "the first poll", func() bool { return sink.avail["dev"] })

	for _, c := range cases {
		before := len(dev.Functions(1))
		r := write(t, a, "dev", c.point, c.value)
		if r.Err != nil || r.ReadBackErr != nil {
			t.Errorf("%s: %v / %v", c.point, r.Err, r.ReadBackErr)
			continue
		}
		if got := dev.Get(1, testpeer.Holding, c.addr, len(c.want)); !slices.Equal(got, c.want) {
			t.Errorf("%s: device holds %04x, want %04x", c.point, got, c.want)
		}
		if got := r.ReadBack.String(); got != c.readBack {
			t.Errorf("%s: read back %s, want %s", c.point, got, c.readBack)
		}
		if got := sink.value("dev/" + c.point); got != c.readBack {
			t.Errorf("%s: published %s, want the read-back %s", c.point, got, c.readBack)
		}
		// The function codes of this write: a bit is read first, and
		// every write is read back (FC03).
		want := []int{c.fc, 3}
		if strings.HasPrefix(c.point, "bit") {
			want = []int{3, c.fc, 3}
		}
		if got := dev.Functions(1)[before:]; !slices.Equal(got, want) {
			t.Errorf("%s: function codes %v, want %v", c.point, got, want)
		}
	}
	// A coil: FC05, and 0/1 work as well as false/true.
	for _, v := range []adapters.Value{adapters.Bool(true), adapters.Int(0), adapters.Int(1)} {
		before := len(dev.Functions(1))
		r := write(t, a, "dev", "pump", v)
		on := v.String() != "0"
		if r.Err != nil || r.ReadBack.AsBool() != on || dev.GetBits(1, testpeer.Coil, 7, 1)[0] != on {
			t.Errorf("coil %v: %+v, device %v", v, r, dev.GetBits(1, testpeer.Coil, 7, 1))
		}
		if got := dev.Functions(1)[before:]; !slices.Equal(got, []int{5, 1}) {
			t.Errorf("coil: function codes %v, want [5 1]", got)
		}
	}
	if st := a.WriteStats(); st.OK != int64(len(cases))+3 || st.Failed != 0 || st.Refused != 0 {
		t.Errorf("write stats %+v", st)
	}
}

// TestWriteFunction16: a device that takes only "write multiple" gets FC16
// for a single register and FC15 for a coil.
func TestWriteFunction16(t *testing.T) {
	dev := testpeer.StartTCP(t, testpeer.DeviceSpec{Units: map[byte]testpeer.UnitSpec{1: {}}})
	a, sink, _ := startBus(t, `gateway: {id: it}
adapters:
  - name: bus
    type: modbus
    transport: tcp
    address: `+dev.Addr+`
    devices:
      - name: dev
        unit: 1
        interval: 1h
        write_function: 16
        points:
          - {name: sp, table: holding, address: 5, writable: true}
          - {name: flag, table: holding, address: 6, type: bool, bit: 0, writable: true}
          - {name: pump, table: coil, address: 2, writable: true}
`)
	sink.waitFor(t, 10*time.Second, "the first poll", func() bool { return sink.avail["dev"] })
	for _, c := range []struct {
		point string
		v     adapters.Value
		fcs   []int
	}{
		{"sp", adapters.Int(77), []int{16, 3}},
		{"flag", adapters.Bool(true), []int{3, 16, 3}},
		{"pump", adapters.Bool(true), []int{15, 1}},
	} {
		before := len(dev.Functions(1))
		if r := write(t, a, "dev", c.point, c.v); r.Err != nil {
			t.Fatalf("%s: %v", c.point, r.Err)
		}
		if got := dev.Functions(1)[before:]; !slices.Equal(got, c.fcs) {
			t.Errorf("%s: function codes %v, want %v", c.point, got, c.fcs)
		}
	}
	if got := dev.Get(1, testpeer.Holding, 5, 2); !slices.Equal(got, []uint16{77, 1}) {
		t.Errorf("device holds %v", got)
	}
	if !dev.GetBits(1, testpeer.Coil, 2, 1)[0] {
		t.Error("coil not set")
	}
}

// TestWriteRefusalsLeaveTheDeviceUntouched: every refusal says why, is
// classified as refused before the bus, and sends nothing to the device.
func TestWriteRefusalsLeaveTheDeviceUntouched(t *testing.T) {
	dev := testpeer.StartTCP(t, testpeer.DeviceSpec{Units: map[byte]testpeer.UnitSpec{
		1: {Holding: map[uint16]uint16{0: 1500, 1: 7, 2: 3, 3: 0x4120, 4: 0}, Coils: map[uint16]bool{0: true}},
	}})
	a, sink, _ := startBus(t, `gateway: {id: it}
adapters:
  - name: bus
    type: modbus
    transport: tcp
    address: `+dev.Addr+`
    devices:
      - name: dev
        unit: 1
        interval: 1h
        points:
          - {name: speed, table: holding, address: 0, writable: true, min: 0, max: 3000}
          - {name: ro, table: holding, address: 1}
          - {name: temp, table: holding, address: 2, type: int16, scale: 0.1, writable: true}
          - {name: f, table: holding, address: 3, type: float32, writable: true, min: -5, max: 5}
          - {name: name, table: holding, address: 10, type: string, length: 2, writable: true}
          - {name: in, table: input, address: 0}
          - {name: di, table: discrete, address: 0}
          - {name: pump, table: coil, address: 0, writable: true}
`)
	sink.waitFor(t, 10*time.Second, "the first poll", func() bool { return sink.avail["dev"] })
	snapshot := func() string {
		return fmt.Sprint(dev.Get(1, testpeer.Holding, 0, 12), dev.GetBits(1, testpeer.Coil, 0, 1), len(dev.Functions(1)))
	}
	before := snapshot()
	for _, c := range []struct {
		point string
		v     adapters.Value
		msg   string
	}{
		{"speed", adapters.Int(3001), "3001 is above the point's max of 3000"},
		{"speed", adapters.Int(-1), "-1 is below the point's min of 0"},
		{"speed", adapters.Float64(12.5), "12.5 is not a whole number"},
		{"speed", adapters.String("fast"), "wrong type: a uint16 point takes a number, not a string"},
		{"speed", adapters.Bool(true), "wrong type"},
		{"temp", adapters.Float64(4000), "4000 is out of range for int16 with scale 0.1 and offset 0 (-3276.8 to 3276.7)"},
		{"f", adapters.Float64(5.5), "above the point's max of 5"},
		{"name", adapters.String("too long"), "the text is 8 bytes long; the point holds 4"},
		{"pump", adapters.Int(2), "a bool point takes true or false (or 0/1)"},
		{"ro", adapters.Int(1), "dev/ro cannot be written: it is not writable"},
		{"in", adapters.Int(1), "it is an input register, which is read-only"},
		{"di", adapters.Bool(true), "it is a discrete input, which is read-only"},
	} {
		r := write(t, a, "dev", c.point, c.v)
		if !errors.Is(r.Err, adapters.ErrRefused) || !strings.Contains(r.Err.Error(), c.msg) {
			t.Errorf("%s = %v: %v, want refused: …%s", c.point, c.v, r.Err, c.msg)
		}
	}
	if after := snapshot(); after != before {
		t.Errorf("refused commands changed the device or reached it:\nbefore %s\nafter  %s", before, after)
	}
	if st := a.WriteStats(); st.Refused != 12 || st.OK != 0 {
		t.Errorf("write stats %+v", st)
	}
}

// TestWriteFailures: a dead device fails at once without a request on the
// wire; a device that stops answering gives "unknown outcome", never
// success; an exception is the device refusing.
func TestWriteFailures(t *testing.T) {
	dev := testpeer.StartTCP(t, testpeer.DeviceSpec{
		Units:      map[byte]testpeer.UnitSpec{1: {}, 2: {}, 3: {}},
		Silent:     []byte{3},
		Exceptions: []testpeer.ExceptionRange{{Unit: 2, Table: testpeer.Holding, Start: 9, End: 9, Code: 2}},
	})
	a, sink, _ := startBus(t, `gateway: {id: it}
adapters:
  - name: bus
    type: modbus
    transport: tcp
    address: `+dev.Addr+`
    timeout: 300ms
    retries: 0
    backoff_initial: 1m
    devices:
      - name: live
        unit: 1
        interval: 1h
        points:
          - {name: sp, table: holding, address: 0, writable: true}
      - name: picky
        unit: 2
        interval: 1h
        points:
          - {name: sp, table: holding, address: 0, writable: true}
          - {name: locked, table: holding, address: 9, writable: true}
      - name: dead
        unit: 3
        interval: 1h
        points:
          - {name: sp, table: holding, address: 0, writable: true}
`)
	sink.waitFor(t, 10*time.Second, "the first polls", func() bool {
		on, ok := sink.avail["dead"]
		return sink.avail["live"] && sink.avail["picky"] && ok && !on
	})

	// Dead: answered at once, nothing sent (the next probe is a minute
	// away and is not waited for).
	n := dev.Requests(3)
	start := time.Now()
	r := write(t, a, "dead", "sp", adapters.Int(5))
	if !errors.Is(r.Err, adapters.ErrNotSent) || !strings.Contains(r.Err.Error(), "device dead (unit 3) is not answering") {
		t.Errorf("dead device: %v", r.Err)
	}
	if dev.Requests(3) != n {
		t.Error("a write to a dead device was sent")
	}
	t.Logf("dead device answered in %s (timeout 300ms, next probe in 1m)", time.Since(start).Round(time.Millisecond))

	// Exception: the device refused.
	r = write(t, a, "picky", "locked", adapters.Int(1))
	if !errors.Is(r.Err, adapters.ErrDeviceRefused) || !strings.Contains(r.Err.Error(), "unit 2 holding 9: modbus exception 2 (illegal data address)") {
		t.Errorf("exception: %v", r.Err)
	}

	// Timeout: the device may have applied it; never reported as success.
	dev.SetSilent(1, true)
	r = write(t, a, "live", "sp", adapters.Int(9))
	if !errors.Is(r.Err, adapters.ErrUnknownOutcome) || !strings.Contains(r.Err.Error(), "no response within 300ms: the device may or may not have applied the write") {
		t.Errorf("timeout: %v", r.Err)
	}
	if st := a.WriteStats(); st.OK != 0 || st.Failed != 3 {
		t.Errorf("write stats %+v", st)
	}
}

// TestWriteOverRTU: writes over a paced serial line (socat pty pairs, the
// device answering one character at a time): FC06, FC16, FC05, the bit
// read-modify-write, and an exception reply to a write read at its true
// length, after which the line is still in step.
func TestWriteOverRTU(t *testing.T) {
	dev := testpeer.StartRTU(t, testpeer.DeviceSpec{
		Units:      map[byte]testpeer.UnitSpec{1: {Holding: map[uint16]uint16{4: 0x8001}}},
		Exceptions: []testpeer.ExceptionRange{{Unit: 1, Table: testpeer.Holding, Start: 9, End: 9, Code: 3}},
	}, testpeer.LineOptions{})
	a, sink, _ := startBus(t, `gateway: {id: it}
adapters:
  - name: bus
    type: modbus
    transport: rtu
    device: `+dev.Path+`
    baud: 19200
    timeout: 500ms
    devices:
      - name: dev
        unit: 1
        interval: 1h
        points:
          - {name: sp, table: holding, address: 0, writable: true}
          - {name: ramp, table: holding, address: 1, type: float32, order: CDAB, writable: true}
          - {name: flag, table: holding, address: 4, type: bool, bit: 6, writable: true}
          - {name: locked, table: holding, address: 9, writable: true}
          - {name: run, table: coil, address: 3, writable: true}
`)
	sink.waitFor(t, 10*time.Second, "the first poll", func() bool { return sink.avail["dev"] })
	for _, c := range []struct {
		point string
		v     adapters.Value
		back  string
	}{
		{"sp", adapters.Int(4321), "4321"},
		{"ramp", adapters.Float64(-1.5), "-1.5"},
		{"flag", adapters.Bool(true), "true"},
		{"run", adapters.Bool(true), "true"},
	} {
		r := write(t, a, "dev", c.point, c.v)
		if r.Err != nil || r.ReadBack.String() != c.back {
			t.Errorf("%s: %+v", c.point, r)
		}
	}
	if got := dev.Get(1, testpeer.Holding, 0, 5); !slices.Equal(got, []uint16{4321, 0x0000, 0xBFC0, 0, 0x8041}) {
		t.Errorf("holding 0..4 = %04x", got)
	}
	if !dev.GetBits(1, testpeer.Coil, 3, 1)[0] {
		t.Error("coil 3 not set")
	}
	r := write(t, a, "dev", "locked", adapters.Int(1))
	if !errors.Is(r.Err, adapters.ErrDeviceRefused) || !strings.Contains(r.Err.Error(), "modbus exception 3 (illegal data value)") {
		t.Errorf("exception: %v", r.Err)
	}
	if r := write(t, a, "dev", "sp", adapters.Int(7)); r.Err != nil || r.ReadBack.String() != "7" {
		t.Errorf("after the exception: %+v", r)
	}
}
