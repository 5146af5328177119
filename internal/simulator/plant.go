package simulator

import (
	"strings"
	"time"
)

// The unit ids of the simulated plant.
const (
	unitPowerMeter uint8 = 1
	unitPumpDrive  uint8 = 2
)

// The orders a "same value, four orders" group spans, by width.
var (
	orders16 = []Order{ABCD, BADC}
	orders32 = []Order{ABCD, CDAB, BADC, DCBA}
	orders64 = []Order{ABCDEFGH, GHEFCDAB, BADCFEHG, HGFEDCBA}
)

// plantDefs is the register map. Each unit keeps its points in compact
// spans, and the power meter's holding registers start at 100 so that reading
// the wrong table fails with exception 2 instead of returning plausible data.
func plantDefs() []*entry {
	pm := Point{Device: "power_meter", UnitID: unitPowerMeter}
	pd := Point{Device: "pump_drive", UnitID: unitPumpDrive}
	var d []*entry
	add := func(es ...*entry) { d = append(d, es...) }

	// Unit 1, power meter: measurements in input registers 0..65.
	add(group(pm.at(Input, 0, Float32).about("voltage", "V",
		"L1-N voltage, sine 230 V ± 5 V, period 60 s"), orders32, voltage)...)
	add(group(pm.at(Input, 10, Int32).about("power", "W",
		"active power, sine ±15 kW, period 90 s (negative = export)"), orders32, power)...)
	add(group(pm.at(Input, 20, Uint32).about("counter", "s",
		"seconds counter, 1,000,000 at start, +1 per second; read-only"), orders32, counter)...)
	add(group(pm.at(Input, 30, Float64).about("frequency", "Hz",
		"grid frequency, sine 50 Hz ± 0.05 Hz, period 20 s"), orders64, frequency)...)
	add(group(pm.at(Input, 50, Uint64).about("energy", "kWh",
		"energy total, raw 1,234,567,890,123 at start, +3 per second").scaled(0.01), orders64, energy)...)

	// Unit 1: identification and a setpoint in holding registers 100..124.
	add(group(pm.at(Holding, 100, String).about("serial", "",
		"serial number \"SN-042917\" (odd length), NUL-padded").length(6), orders16,
		func(time.Duration) string { return serialNumber })...)
	add(fixed(pm.at(Holding, 112, String).named("model",
		"model name \"FieldBridge PM-3000\", space-padded").length(modelRegs),
		spacePadded(model, modelRegs)))
	add(setpoint(pm.at(Holding, 124, Uint16).named("ct_ratio",
		"current transformer ratio; writable, stored"), uint16(100)))

	// Unit 2, pump drive: coils and discrete inputs.
	add(setpoint(pd.at(Coil, 0, Bool).named("pump_enable",
		"pump enable command; writable, stored"), true))
	add(live(pd.at(Coil, 1, Bool).named("beacon",
		"warning beacon output, toggles every 3 s; read-only (writes get exception 2)"), beacon))
	add(live(pd.at(DiscreteInput, 0, Bool).named("running",
		"running feedback: on for 50 s of every minute"), running))
	add(fixed(pd.at(DiscreteInput, 3, Bool).named("remote",
		"remote control selected; always on (inputs 1..2 read as off)"), true))

	// Unit 2: measurements, alarms and setpoints in holding registers 0..32.
	add(group(pd.at(Holding, 0, Int16).about("temperature", "°C",
		"motor temperature, ramp -20.0 °C to +80.0 °C and back in 200 s").scaled(0.1),
		orders16, temperature)...)
	add(group(pd.at(Holding, 2, Uint16).about("speed", "rpm",
		"pump speed, sine 1500 ± 1000 rpm, period 45 s"), orders16, speed)...)
	add(live(pd.at(Holding, 4, Uint16).named("alarm_word",
		"alarm register; its bits are the alarm_* points"), alarmWord))
	for _, b := range []struct {
		name string
		bit  uint8
		what string
	}{
		{"alarm_overtemp", bitOvertemp, "temperature at or above 60.0 °C"},
		{"alarm_frost", bitFrost, "temperature below 0 °C"},
		{"alarm_heartbeat", bitHeartbeat, "toggles every second"},
		{"alarm_maintenance", bitMaintenance, "maintenance due; always on"},
	} {
		p := pd.at(Holding, 4, Bool).named(b.name, "alarm bit: "+b.what)
		p.Bit = b.bit
		add(live(p, alarmBit(uint(b.bit))))
	}
	add(group(pd.at(Holding, 10, Int64).about("net_volume", "L",
		"net volume total, raw -9,876,543,210,000 mL at start, +12,345 per second").scaled(0.001),
		orders64, netVolume)...)
	add(setpoint(pd.at(Holding, 30, Uint16).named("speed_setpoint",
		"speed setpoint in rpm; writable, stored").unit("rpm"), uint16(1500)))
	ps := pd.at(Holding, 31, Float32).named("pressure_setpoint",
		"pressure setpoint, low word first as many drives store floats; writable, stored").unit("bar")
	ps.Order = CDAB
	add(setpoint(ps, float32(4.5)))
	return d
}

// at starts a point of the device at a table address; 32- and 64-bit types
// default to big-endian, everything else but bool to ABCD.
func (p Point) at(t Table, addr uint16, typ Type) Point {
	p.Table, p.Address, p.Type = t, addr, typ
	switch {
	case typ == Bool:
	case typ.width() == 4:
		p.Order = ABCDEFGH
	default:
		p.Order = ABCD
	}
	return p
}

// about names a group and its unit of measure.
func (p Point) about(group, unit, what string) Point {
	p.Group, p.Unit, p.Description = group, unit, what
	return p
}

// named names a point outside any group.
func (p Point) named(name, what string) Point {
	p.Name, p.Description = name, what
	return p
}

func (p Point) unit(u string) Point      { p.Unit = u; return p }
func (p Point) scaled(s float64) Point   { p.Scale = s; return p }
func (p Point) length(regs uint16) Point { p.Length = regs; return p }

// group makes one point per order, named <group>_<order>, at consecutive
// addresses, all holding the same value.
func group[T any](base Point, orders []Order, f func(time.Duration) T) []*entry {
	out := make([]*entry, len(orders))
	addr := base.Address
	for i, o := range orders {
		p := base
		p.Name = base.Group + "_" + strings.ToLower(string(o))
		p.Order = o
		p.Address = addr
		addr += uint16(p.Registers())
		out[i] = live(p, f)
	}
	return out
}

// live is a read-only point computed from the time since start.
func live[T any](p Point, f func(time.Duration) T) *entry {
	return &entry{Point: p, value: func(t time.Duration) any { return f(t) }}
}

// fixed is a read-only point that never changes.
func fixed[T any](p Point, v T) *entry {
	return live(p, func(time.Duration) T { return v })
}

// setpoint is a writable point: it starts at initial and then holds whatever
// a client wrote.
func setpoint[T any](p Point, initial T) *entry {
	p.Writable = true
	return &entry{Point: p, initial: initial}
}
