package modbus

import (
	"github.com/fieldbridge/fieldbridge/adapters"
)

// checkWriteFunction validates a device's write_function.
func checkWriteFunction(d *DeviceConfig, path string, r adapters.Reporter) {
	switch d.WriteFunction {
	case 0:
		d.WriteFunction = 6
	case 6, 16:
	default:
		r.Errorf(path+".write_function", "write_function must be 6 (FC06 for one register, FC16 for several; the default) or 16 (FC16 always, FC15 for coils), got %d", d.WriteFunction)
	}
}

// checkWrite validates writable, min and max of a point whose table and
// type are known.
func checkWrite(p *PointConfig, path string, r adapters.Reporter) {
	if p.Writable {
		switch p.table {
		case Input:
			r.Errorf(path+".writable", "an input register is read-only: it cannot be writable (holding registers can be)")
		case Discrete:
			r.Errorf(path+".writable", "a discrete input is read-only: it cannot be writable (coils can be)")
		}
	}
	if p.Min == nil && p.Max == nil {
		return
	}
	key := ".min"
	if p.Min == nil {
		key = ".max"
	}
	switch {
	case !p.typ.numeric():
		r.Errorf(path+key, "min and max limit numbers; a %s point has no range", p.typ)
		return
	case p.Min != nil && p.Max != nil && *p.Min > *p.Max:
		r.Errorf(path+".min", "min (%s) is above max (%s)", formatFloat(*p.Min), formatFloat(*p.Max))
	}
	if !p.Writable {
		r.Warnf(path+key, "min and max limit commands, and this point is not writable: they have no effect")
	}
}
