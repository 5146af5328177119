package simulator

import (
	"fmt"
	"sort"
	"time"
)

// Table is one of the four Modbus data tables.
type Table string

// The four tables, spelled as the gateway's config spells them.
const (
	Coil          Table = "coil"           // read/write bits (FC 1, 5, 15)
	DiscreteInput Table = "discrete_input" // read-only bits (FC 2)
	Holding       Table = "holding"        // read/write registers (FC 3, 6, 16)
	Input         Table = "input"          // read-only registers (FC 4)
)

// bits reports whether the table addresses single bits rather than registers.
func (t Table) bits() bool { return t == Coil || t == DiscreteInput }

// rank orders tables in Map and MAP.md the way device manuals usually list them.
func (t Table) rank() int {
	switch t {
	case Coil:
		return 0
	case DiscreteInput:
		return 1
	case Holding:
		return 2
	case Input:
		return 3
	}
	return 4
}

// Type is the data type of a point, spelled as in the gateway's config.
type Type string

// The data types the gateway decodes.
const (
	Bool    Type = "bool"
	Int16   Type = "int16"
	Uint16  Type = "uint16"
	Int32   Type = "int32"
	Uint32  Type = "uint32"
	Int64   Type = "int64"
	Uint64  Type = "uint64"
	Float32 Type = "float32"
	Float64 Type = "float64"
	String  Type = "string"
)

// width is the size of a fixed-width type in registers (0 for bool and string).
func (t Type) width() int {
	switch t {
	case Int16, Uint16:
		return 1
	case Int32, Uint32, Float32:
		return 2
	case Int64, Uint64, Float64:
		return 4
	}
	return 0
}

// Order is the byte order of a multi-byte value, naming the bytes of the
// big-endian value A (most significant) to H in the order they travel on the
// wire, first register first, high byte of each register first.
type Order string

// The byte orders. 16-bit values and strings use ABCD (as is) and BADC (the
// two bytes of each register swapped).
const (
	ABCD     Order = "ABCD"     // big-endian, high word first
	CDAB     Order = "CDAB"     // low word first
	BADC     Order = "BADC"     // bytes swapped in each register
	DCBA     Order = "DCBA"     // little-endian
	ABCDEFGH Order = "ABCDEFGH" // big-endian, high word first
	GHEFCDAB Order = "GHEFCDAB" // word order reversed
	BADCFEHG Order = "BADCFEHG" // bytes swapped in each register
	HGFEDCBA Order = "HGFEDCBA" // little-endian
)

// Point is one named value of the simulated plant: where it lives and how it
// is encoded. Map returns these as plain data so the demo config and MAP.md
// can be derived from the one definition the simulator serves.
type Point struct {
	Name   string // unique across the plant, e.g. "voltage_cdab"
	Device string // the unit's role, e.g. "power_meter"
	UnitID uint8  // Modbus unit id (slave id)
	Table  Table
	// Address is the 0-based protocol address of the first register (or bit).
	Address uint16
	Type    Type
	// Order is the byte order; empty for bool.
	Order Order
	// Length is the length of a string in registers (two characters each);
	// 0 for other types.
	Length uint16
	// Bit is the bit (0 = least significant) of a bool point in a holding or
	// input register; unused in the coil and discrete-input tables.
	Bit uint8
	// Scale multiplies the raw value into Unit (1 when the raw value is
	// already in Unit).
	Scale float64
	// Unit is the engineering unit of the scaled value, e.g. "V"; may be empty.
	Unit string
	// Group is shared by the points that hold the same logical value in
	// different byte orders; empty for a point outside any group.
	Group string
	// Writable points accept writes and read back what was written.
	Writable    bool
	Description string
}

// Registers is how many registers the point spans, or 1 for a bit in the
// coil and discrete-input tables.
func (p Point) Registers() int {
	switch {
	case p.Type == Bool:
		return 1
	case p.Type == String:
		return int(p.Length)
	}
	return p.Type.width()
}

// isBitView reports whether the point is one bit of a register that another
// point owns: it shares that register instead of occupying one.
func (p Point) isBitView() bool { return p.Type == Bool && !p.Table.bits() }

// Map returns the register map of the simulated plant, ordered by unit id,
// table, address and bit. It is the single source of truth for the demo
// config and MAP.md; the returned slice is a copy the caller may modify.
func Map() []Point {
	out := make([]Point, len(plant.entries))
	for i, e := range plant.entries {
		out[i] = e.Point
	}
	return out
}

// entry is a point plus what the server needs to serve it.
type entry struct {
	Point
	// value computes the logical (unscaled) value at a time since start; nil
	// for writable points, whose registers are stored instead.
	value func(time.Duration) any
	// initial is the power-on value of a writable point.
	initial any
	// encode turns a logical value into the point's registers (a bool in a
	// bit table into one element, 0 or 1). Chosen once when the map is built.
	encode func(any) ([]uint16, error)
}

// span is a run of addresses [start, end) that can be read in one request.
type span struct{ start, end int }

// tableMap is one unit's table: the points that own addresses, and the spans.
type tableMap struct {
	owners []*entry // sorted by address; bit views excluded
	spans  []span
}

// unitMap is one unit id's tables.
type unitMap struct {
	device string
	tables map[Table]*tableMap
}

// plantMap is the whole simulated plant, built once from plantDefs.
type plantMap struct {
	entries []*entry
	units   map[uint8]*unitMap
}

// maxSpanGap is the widest run of unmapped addresses joined into a span. The
// gateway's request planner reads gaps of up to 10 registers; a little more
// leaves room for it to grow.
const maxSpanGap = 16

// plant is the simulated plant. The definitions are static, so a mistake in
// them is a programming error caught by every test run, not a runtime state.
var plant = mustBuild(plantDefs())

func mustBuild(defs []*entry) *plantMap {
	p, err := build(defs)
	if err != nil {
		panic("simulator: bad register map: " + err.Error())
	}
	return p
}

// build validates the definitions, chooses encoders and derives the spans.
func build(defs []*entry) (*plantMap, error) {
	sort.SliceStable(defs, func(i, j int) bool {
		a, b := defs[i], defs[j]
		if a.UnitID != b.UnitID {
			return a.UnitID < b.UnitID
		}
		if a.Table != b.Table {
			return a.Table.rank() < b.Table.rank()
		}
		if a.Address != b.Address {
			return a.Address < b.Address
		}
		return a.Bit < b.Bit
	})
	p := &plantMap{entries: defs, units: map[uint8]*unitMap{}}
	names := map[string]bool{}
	for _, e := range defs {
		if e.Scale == 0 {
			e.Scale = 1
		}
		if names[e.Name] {
			return nil, fmt.Errorf("%s: duplicate name", e.Name)
		}
		names[e.Name] = true
		if err := check(e); err != nil {
			return nil, fmt.Errorf("%s: %w", e.Name, err)
		}
		u := p.units[e.UnitID]
		if u == nil {
			u = &unitMap{device: e.Device, tables: map[Table]*tableMap{}}
			p.units[e.UnitID] = u
		}
		if u.device != e.Device {
			return nil, fmt.Errorf("%s: unit %d is device %q, not %q", e.Name, e.UnitID, u.device, e.Device)
		}
		t := u.tables[e.Table]
		if t == nil {
			t = &tableMap{}
			u.tables[e.Table] = t
		}
		if e.isBitView() {
			if err := checkBitView(e, t); err != nil {
				return nil, fmt.Errorf("%s: %w", e.Name, err)
			}
			continue
		}
		if n := len(t.owners); n > 0 {
			if last := t.owners[n-1]; int(last.Address)+last.Registers() > int(e.Address) {
				return nil, fmt.Errorf("%s: overlaps %s", e.Name, last.Name)
			}
		}
		t.owners = append(t.owners, e)
	}
	for _, u := range p.units {
		for _, t := range u.tables {
			t.spans = spansOf(t.owners)
		}
	}
	return p, nil
}

// check validates one point on its own and sets its encoder.
func check(e *entry) error {
	p := e.Point
	switch p.Table {
	case Coil, DiscreteInput, Holding, Input:
	default:
		return fmt.Errorf("unknown table %q", p.Table)
	}
	if p.Table.bits() && p.Type != Bool {
		return fmt.Errorf("%s table holds only bool, not %s", p.Table, p.Type)
	}
	if p.Type == String && p.Length == 0 {
		return fmt.Errorf("string without a length")
	}
	if p.Type != String && p.Length != 0 {
		return fmt.Errorf("length is for strings only")
	}
	if p.Bit > 15 || (p.Bit != 0 && !p.isBitView()) {
		return fmt.Errorf("bit %d: only 0..15 of a register", p.Bit)
	}
	if int(p.Address)+p.Registers() > 0x10000 {
		return fmt.Errorf("runs past address 65535")
	}
	if p.Writable && p.Table != Holding && p.Table != Coil {
		return fmt.Errorf("writable in the read-only %s table", p.Table)
	}
	if p.Writable && p.isBitView() {
		return fmt.Errorf("a bit of a register cannot be written on its own")
	}
	if p.Writable != (e.value == nil) || p.Writable != (e.initial != nil) {
		return fmt.Errorf("a writable point needs an initial value, any other a value function")
	}
	if p.isBitView() {
		_, ok := e.value(0).(bool)
		if !ok {
			return fmt.Errorf("value is %T, want bool", e.value(0))
		}
		return nil
	}
	enc, err := newEncoder(p.Type, p.Order, p.Registers())
	if err != nil {
		return err
	}
	e.encode = enc
	v := e.initial
	if v == nil {
		v = e.value(0)
	}
	regs, err := enc(v)
	if err != nil {
		return err
	}
	if len(regs) != p.Registers() {
		return fmt.Errorf("value encodes to %d registers, want %d", len(regs), p.Registers())
	}
	return nil
}

// checkBitView makes sure a bit point reads a register that a 16-bit point
// of the same table owns, so the bit and the word can never disagree.
func checkBitView(e *entry, t *tableMap) error {
	for _, o := range t.owners {
		if o.Address == e.Address {
			if o.Type != Uint16 && o.Type != Int16 {
				return fmt.Errorf("bit of %s, a %s", o.Name, o.Type)
			}
			return nil
		}
	}
	return fmt.Errorf("no 16-bit point at %s %d to take a bit of", e.Table, e.Address)
}

// spansOf joins address-sorted points whose gaps are at most maxSpanGap.
func spansOf(owners []*entry) []span {
	var out []span
	for _, e := range owners {
		start, end := int(e.Address), int(e.Address)+e.Registers()
		if n := len(out); n > 0 && start-out[n-1].end <= maxSpanGap {
			out[n-1].end = end
			continue
		}
		out = append(out, span{start, end})
	}
	return out
}

// inSpan reports whether [addr, addr+qty) lies inside one span.
func (t *tableMap) inSpan(addr, qty uint16) bool {
	lo, hi := int(addr), int(addr)+int(qty)
	for _, s := range t.spans {
		if lo >= s.start && hi <= s.end {
			return true
		}
	}
	return false
}

// owner returns the point that owns an address, or nil in a gap.
func (t *tableMap) owner(addr uint16) *entry {
	for _, e := range t.owners {
		if a := int(addr); a >= int(e.Address) && a < int(e.Address)+e.Registers() {
			return e
		}
	}
	return nil
}
