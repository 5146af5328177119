package testpeer

// Reading the device's own content, so that a test sees what a write from
// the gateway left in the device (and that a refused one left nothing).

// Get returns count registers (table Holding or Input) of a unit from addr,
// as the device holds them now.
func (d *Device) Get(unit byte, table string, addr uint16, count int) []uint16 {
	d.tb.Helper()
	if table != Holding && table != Input {
		d.tb.Fatalf("testpeer: Get: table %q is not %q or %q (use GetBits)", table, Holding, Input)
	}
	vals := d.get(unit, table, addr, count)
	out := make([]uint16, len(vals))
	for i, v := range vals {
		f, ok := v.(float64)
		if !ok {
			d.tb.Fatalf("testpeer: get unit %d %s %d: value %v is not a number", unit, table, addr, v)
		}
		out[i] = uint16(f)
	}
	return out
}

// GetBits returns count bits (table Coil or Discrete) like Get.
func (d *Device) GetBits(unit byte, table string, addr uint16, count int) []bool {
	d.tb.Helper()
	if table != Coil && table != Discrete {
		d.tb.Fatalf("testpeer: GetBits: table %q is not %q or %q (use Get)", table, Coil, Discrete)
	}
	vals := d.get(unit, table, addr, count)
	out := make([]bool, len(vals))
	for i, v := range vals {
		b, ok := v.(bool)
		if !ok {
			d.tb.Fatalf("testpeer: get unit %d %s %d: value %v is not a bool", unit, table, addr, v)
		}
		out[i] = b
	}
	return out
}

func (d *Device) get(unit byte, table string, addr uint16, count int) []any {
	d.tb.Helper()
	reply, err := d.py.call(map[string]any{"op": "get", "unit": unit, "table": table, "addr": addr, "count": count})
	if err != nil {
		d.tb.Fatalf("testpeer: get unit %d %s %d: %v", unit, table, addr, err)
	}
	if len(reply.Values) != count {
		d.tb.Fatalf("testpeer: get unit %d %s %d: %d values, want %d", unit, table, addr, len(reply.Values), count)
	}
	return reply.Values
}

// Functions returns the function codes of the last 256 requests the device
// received for a unit, oldest first (3 = read holding, 6 = write single
// register, 16 = write multiple registers, …).
func (d *Device) Functions(unit byte) []int {
	d.tb.Helper()
	reply, err := d.py.call(map[string]any{"op": "functions", "unit": unit})
	if err != nil {
		d.tb.Fatalf("testpeer: functions of unit %d: %v", unit, err)
	}
	return reply.Functions
}
