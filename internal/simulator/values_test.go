package simulator

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/simonvetter/modbus"
)

// Every point of Map, read over TCP and decoded by the tests' own decoder,
// holds the value the simulator computes for that instant, and every member
// of a group holds the same value.
func TestEveryPointDecodes(t *testing.T) {
	sim, _ := startSim(t)
	c := dial(t, sim.Addr())
	for _, at := range []time.Duration{
		0, 1500 * time.Millisecond, 15 * time.Second, 37300 * time.Millisecond,
		85 * time.Second, 123456 * time.Millisecond, 30 * 24 * time.Hour,
	} {
		sim.Freeze(at)
		groups := map[string]any{}
		for _, p := range Map() {
			got := readPoint(t, c, p)
			if want := expected(p.Name, at); !same(got, want) {
				t.Errorf("t=%v %s: decoded %v (%T), want %v (%T)", at, p.Name, got, got, want, want)
			}
			if p.Group == "" {
				continue
			}
			if first, ok := groups[p.Group]; !ok {
				groups[p.Group] = got
			} else if got != first {
				t.Errorf("t=%v %s: decoded %v, but its group %q decoded %v", at, p.Name, got, p.Group, first)
			}
		}
	}
}

// The signals follow their documented formulas, checked against values
// written out by hand rather than against the simulator's own functions.
func TestSignalsOverTime(t *testing.T) {
	sim, _ := startSim(t)
	c := dial(t, sim.Addr())
	s := time.Second
	cases := []struct {
		point string
		at    time.Duration
		want  any // exact value, or a float64 compared with tol
		tol   float64
	}{
		{"counter_abcd", 0, uint32(1_000_000), 0},
		{"counter_dcba", 10*s + 900*time.Millisecond, uint32(1_000_010), 0},
		{"counter_cdab", 24 * time.Hour, uint32(1_086_400), 0},
		{"voltage_abcd", 0, 230.0, 1e-4},
		{"voltage_cdab", 15 * s, 235.0, 1e-4},
		{"voltage_badc", 45 * s, 225.0, 1e-4},
		{"power_abcd", 22500 * time.Millisecond, int32(15000), 0},
		{"power_dcba", 67500 * time.Millisecond, int32(-15000), 0},
		{"frequency_ghefcdab", 5 * s, 50.05, 1e-12},
		{"frequency_hgfedcba", 15 * s, 49.95, 1e-12},
		{"energy_badcfehg", 100 * s, uint64(1_234_567_890_423), 0},
		{"net_volume_ghefcdab", 0, int64(-9_876_543_210_000), 0},
		{"net_volume_hgfedcba", 10 * s, int64(-9_876_543_086_550), 0},
		{"temperature_abcd", 0, int16(-200), 0},
		{"temperature_badc", 20 * s, int16(0), 0},
		{"temperature_abcd", 100 * s, int16(800), 0},
		{"temperature_badc", 150 * s, int16(300), 0},
		{"temperature_abcd", 199900 * time.Millisecond, int16(-199), 0},
		{"speed_badc", 11250 * time.Millisecond, uint16(2500), 0},
		{"speed_abcd", 33750 * time.Millisecond, uint16(500), 0},
		{"alarm_word", 0, uint16(0x8002), 0},      // frost, maintenance
		{"alarm_word", 85 * s, uint16(0x8011), 0}, // 65.0 °C: overtemp; odd second: heartbeat
		{"alarm_frost", 0, true, 0},
		{"alarm_overtemp", 85 * s, true, 0},
		{"alarm_heartbeat", 84 * s, false, 0},
		{"alarm_maintenance", 0, true, 0},
		{"beacon", 0, false, 0},
		{"beacon", 3 * s, true, 0},
		{"beacon", 6 * s, false, 0},
		{"running", 0, true, 0},
		{"running", 55 * s, false, 0},
		{"remote", 0, true, 0},
		{"serial_abcd", 0, "SN-042917", 0},
		{"serial_badc", 0, "SN-042917", 0},
		{"model", 0, "FieldBridge PM-3000", 0},
		{"pump_enable", 0, true, 0},
		{"ct_ratio", 0, uint16(100), 0},
		{"speed_setpoint", 0, uint16(1500), 0},
		{"pressure_setpoint", 0, float32(4.5), 0},
	}
	for _, tc := range cases {
		sim.Freeze(tc.at)
		got := readPoint(t, c, point(t, tc.point))
		if f, ok := tc.want.(float64); ok && tc.tol > 0 {
			if !near(got, f, tc.tol) {
				t.Errorf("%s at %v = %v, want %v ± %v", tc.point, tc.at, got, f, tc.tol)
			}
		} else if got != tc.want {
			t.Errorf("%s at %v = %v (%T), want %v (%T)", tc.point, tc.at, got, got, tc.want, tc.want)
		}
	}
}

// simonvetter/modbus's own client decoders, configured for each order, agree
// with the tests' decoder: a second, third-party opinion on every order.
func TestLibraryDecodersAgree(t *testing.T) {
	sim, _ := startSim(t)
	c := dial(t, sim.Addr())
	at := 37 * time.Second
	sim.Freeze(at)
	encodings := map[Order][2]uint{
		ABCD: {uint(modbus.BIG_ENDIAN), uint(modbus.HIGH_WORD_FIRST)}, ABCDEFGH: {uint(modbus.BIG_ENDIAN), uint(modbus.HIGH_WORD_FIRST)},
		CDAB: {uint(modbus.BIG_ENDIAN), uint(modbus.LOW_WORD_FIRST)}, GHEFCDAB: {uint(modbus.BIG_ENDIAN), uint(modbus.LOW_WORD_FIRST)},
		BADC: {uint(modbus.LITTLE_ENDIAN), uint(modbus.HIGH_WORD_FIRST)}, BADCFEHG: {uint(modbus.LITTLE_ENDIAN), uint(modbus.HIGH_WORD_FIRST)},
		DCBA: {uint(modbus.LITTLE_ENDIAN), uint(modbus.LOW_WORD_FIRST)}, HGFEDCBA: {uint(modbus.LITTLE_ENDIAN), uint(modbus.LOW_WORD_FIRST)},
	}
	checked := 0
	for _, p := range Map() {
		if p.Type.width() < 2 {
			continue
		}
		enc := encodings[p.Order]
		if err := c.SetEncoding(modbus.Endianness(enc[0]), modbus.WordOrder(enc[1])); err != nil {
			t.Fatal(err)
		}
		if err := c.SetUnitId(p.UnitID); err != nil {
			t.Fatal(err)
		}
		rt := modbus.HOLDING_REGISTER
		if p.Table == Input {
			rt = modbus.INPUT_REGISTER
		}
		var got any
		var err error
		switch p.Type {
		case Int32, Uint32:
			var u uint32
			u, err = c.ReadUint32(p.Address, rt)
			got = u
			if p.Type == Int32 {
				got = int32(u)
			}
		case Float32:
			got, err = c.ReadFloat32(p.Address, rt)
		case Int64, Uint64:
			var u uint64
			u, err = c.ReadUint64(p.Address, rt)
			got = u
			if p.Type == Int64 {
				got = int64(u)
			}
		case Float64:
			got, err = c.ReadFloat64(p.Address, rt)
		}
		if err != nil {
			t.Fatalf("%s: %v", p.Name, err)
		}
		if want := expected(p.Name, at); got != want {
			t.Errorf("%s (%s): library decoded %v, want %v", p.Name, p.Order, got, want)
		}
		checked++
	}
	if checked < 24 {
		t.Errorf("checked %d 32/64-bit points, want at least 24 (6 groups of 4)", checked)
	}
}

// The clock is read once per request: with a clock that jumps a second on
// every reading, the members of the counter group still agree within one
// read, and the next read sees the next second.
func TestOneInstantPerRequest(t *testing.T) {
	sim, _ := startSim(t)
	c := dial(t, sim.Addr())
	var tick time.Duration
	sim.mu.Lock()
	sim.clock = func() time.Duration { tick += time.Second; return tick } // guarded by sim.mu
	sim.mu.Unlock()

	if err := c.SetUnitId(unitPowerMeter); err != nil {
		t.Fatal(err)
	}
	var last uint32
	for i := range 3 {
		regs, err := c.ReadRegisters(0, 66, modbus.INPUT_REGISTER)
		if err != nil {
			t.Fatal(err)
		}
		var first uint32
		for j, name := range []string{"counter_abcd", "counter_cdab", "counter_badc", "counter_dcba"} {
			p := point(t, name)
			v, err := decode(p, regs[p.Address:int(p.Address)+p.Registers()])
			if err != nil {
				t.Fatal(err)
			}
			if j == 0 {
				first = v.(uint32)
			} else if v != first {
				t.Errorf("read %d: %s = %v, counter_abcd = %v in the same response", i, name, v, first)
			}
		}
		if i > 0 && first != last+1 {
			t.Errorf("read %d: counter %d after %d, want one second later", i, first, last)
		}
		last = first
	}
}

// On the real clock the values start at their documented starting points.
func TestRealClock(t *testing.T) {
	sim, _ := startSim(t)
	c := dial(t, sim.Addr())
	got := readPoint(t, c, point(t, "counter_abcd")).(uint32)
	// Generous: a slow CI machine may take a while to get here.
	if got < 1_000_000 || got > 1_000_000+600 {
		t.Errorf("counter = %d just after start, want 1,000,000 and a few seconds", got)
	}
	v := readPoint(t, c, point(t, "voltage_dcba")).(float32)
	if v < 225 || v > 235 {
		t.Errorf("voltage = %v, want 230 ± 5", v)
	}
}

// A point read as a gateway would, with scale applied, reads as the
// documented engineering value.
func TestScaledValues(t *testing.T) {
	sim, _ := startSim(t)
	c := dial(t, sim.Addr())
	sim.Freeze(0)
	for _, tc := range []struct {
		point string
		want  string
	}{
		{"energy_abcdefgh", "12345678901.23 kWh"},
		{"net_volume_badcfehg", "-9876543210.000 L"},
		{"temperature_badc", "-20.0 °C"},
	} {
		p := point(t, tc.point)
		raw := readPoint(t, c, p)
		var f float64
		switch v := raw.(type) {
		case uint64:
			f = float64(v)
		case int64:
			f = float64(v)
		case int16:
			f = float64(v)
		}
		decimals := int(math.Round(-math.Log10(p.Scale)))
		if got := fmt.Sprintf("%.*f %s", decimals, f*p.Scale, p.Unit); got != tc.want {
			t.Errorf("%s = %s, want %s", tc.point, got, tc.want)
		}
	}
}
