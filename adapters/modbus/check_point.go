package modbus

import (
	"strings"

	"github.com/fieldbridge/fieldbridge/adapters"
)

// checkPoint validates one point and prepares its codec.
func (c *Config) checkPoint(env adapters.Env, d *DeviceConfig, p *PointConfig, path string, r adapters.Reporter) {
	if err := adapters.CheckPointName(p.Name); err != nil {
		r.Errorf(path+".name", "%v", err)
	}
	table, err := parseTable(p.Table)
	if err != nil {
		r.Errorf(path+".table", "%v", err)
		return
	}
	p.table = table

	typeName := strings.ToLower(p.Type)
	if typeName == "" {
		typeName = "uint16"
		if table.bits() {
			typeName = "bool"
		}
	}
	typ, ok := typeNames[typeName]
	if !ok {
		r.Errorf(path+".type", "unknown type %q: use bool, int16, uint16, int32, uint32, int64, uint64, float32, float64 or string", p.Type)
		return
	}
	p.typ = typ
	if table.bits() && typ != TypeBool {
		r.Errorf(path+".type", "a %s holds single bits: its type must be bool, not %s", table, typ)
		return
	}

	spec := codecSpec{typ: typ, bit: -1}
	switch {
	case p.Bit != nil && (typ != TypeBool || table.bits()):
		if table.bits() {
			r.Errorf(path+".bit", "bit selects a bit of a register; a %s is already a single bit", table)
		} else {
			r.Errorf(path+".bit", "bit needs type bool (it reads one bit of a 16-bit register), not %s", typ)
		}
	case p.Bit != nil:
		if *p.Bit < 0 || *p.Bit > 15 {
			r.Errorf(path+".bit", "bit %d is out of range 0–15 (0 = least significant)", *p.Bit)
		}
		spec.bit = *p.Bit
	}

	p.regs = typ.registers()
	switch {
	case typ == TypeString && p.Length == 0:
		r.Errorf(path, "a string point needs length (its size in registers, 2 characters each)")
	case typ == TypeString && (p.Length < 0 || p.Length > d.MaxRegistersPerRequest):
		r.Errorf(path+".length", "length %d is out of range 1–%d (max_registers_per_request)", p.Length, d.MaxRegistersPerRequest)
	case typ == TypeString:
		p.regs = p.Length
		spec.length = p.Length
	case p.Length != 0:
		r.Errorf(path+".length", "length is only for strings; a %s has a fixed size", typ)
	}

	if !table.bits() {
		orderName := p.Order
		if orderName == "" {
			orderName = d.Order
		}
		o, err := lookupOrder(typ, orderName)
		if err != nil {
			key := ".order"
			if p.Order == "" {
				key = "" // the device default does not fit this point's type
			}
			r.Errorf(path+key, "%v", err)
		}
		spec.order = o
	} else if p.Order != "" {
		r.Errorf(path+".order", "order does not apply to a %s", table)
	}

	if p.Scale != nil || p.Offset != nil {
		if !typ.numeric() {
			r.Errorf(path, "scale and offset apply to numbers only, not %s", typ)
		}
		spec.scaled = true
		spec.scale = 1
		if p.Scale != nil {
			spec.scale = *p.Scale
			if spec.scale == 0 {
				r.Errorf(path+".scale", "scale 0 would publish 0 forever")
			}
		}
		if p.Offset != nil {
			spec.offset = *p.Offset
		}
		spec.decimals = max(adapters.DecimalsOf(spec.scale), adapters.DecimalsOf(spec.offset))
	}
	p.spec = spec

	if p.Deadband != nil && *p.Deadband < 0 {
		r.Errorf(path+".deadband", "deadband must not be negative")
	}
	if p.Publish != "" {
		if _, err := parsePublish(p.Publish); err != nil {
			r.Errorf(path+".publish", "%v", err)
		}
	}
	if p.publishMode(d) == adapters.EveryPoll && p.deadband(d) > 0 && p.Deadband != nil {
		r.Warnf(path+".deadband", "deadband has no effect with publish: every_poll")
	}
	if (p.Deadband != nil) && !typ.numeric() {
		r.Errorf(path+".deadband", "deadband applies to numbers only, not %s", typ)
	}

	c.checkAddressRange(d, p, path, r)
	checkWrite(p, path, r)

	if _, err := adapters.RenderTopic(p.topicTemplate(d), adapters.TopicVars{Gateway: env.GatewayID, Adapter: c.Name, Device: d.Name, Point: p.Name}); err != nil {
		key := ".topic"
		if p.Topic == "" {
			key = ""
		}
		r.Errorf(path+key, "%v", err)
	}
}

// checkAddressRange rejects impossible addresses and warns about addresses
// that look like a manual's 1-based "4xxxx" reference numbers.
func (c *Config) checkAddressRange(d *DeviceConfig, p *PointConfig, path string, r adapters.Reporter) {
	if p.Address == nil {
		r.Errorf(path, "point %q needs address (the 0-based register or bit address)", p.Name)
		return
	}
	a := *p.Address
	if a < 0 || a > 65535 {
		r.Errorf(path+".address", "address %d is out of range 0–65535", a)
		return
	}
	if last := a + p.regs - 1; last > 65535 {
		r.Errorf(path+".address", "%s at %d spans %d registers and ends past 65535", p.typ, a, p.regs)
		return
	}
	if base := referenceBase(p.table, a); base > 0 {
		r.Warnf(path+".address", "address %d looks like a register number in a manual's %d-based numbering; if the manual lists register %d, write address %d", a, base, a, a-base)
	}
}

// referenceBase returns the first reference number of the "4xxxx"-style
// range that a looks copied from, or 0. Only a warning: some devices really
// map registers above 30000.
func referenceBase(t Table, a int) int {
	switch {
	case !t.bits() && a >= 40001 && a <= 49999:
		return 40001
	case !t.bits() && a >= 30001 && a <= 39999:
		return 30001
	case t == Discrete && a >= 10001 && a <= 19999:
		return 10001
	}
	return 0
}

func (p *PointConfig) topicTemplate(d *DeviceConfig) string {
	switch {
	case p.Topic != "":
		return p.Topic
	case d.Topic != "":
		return d.Topic
	}
	return adapters.DefaultTopic
}

func (p *PointConfig) publishMode(d *DeviceConfig) adapters.PublishMode {
	s := p.Publish
	if s == "" {
		s = d.Publish
	}
	m, _ := parsePublish(s)
	return m
}

func (p *PointConfig) deadband(d *DeviceConfig) float64 {
	switch {
	case p.Deadband != nil:
		return *p.Deadband
	case d.Deadband != nil && p.typ.numeric():
		return *d.Deadband
	}
	return 0
}
