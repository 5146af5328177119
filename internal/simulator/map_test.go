package simulator

import (
	"strings"
	"testing"
	"time"

	"github.com/simonvetter/modbus"
)

// The map covers what the demo must prove: every type, every order of each
// width, a four-order group for every 32- and 64-bit type, bits in all three
// places, and spans a planner can merge.
func TestMapCoverage(t *testing.T) {
	types := map[Type]bool{}
	orders := map[Type]map[Order]bool{}
	groups := map[string][]Point{}
	boolTables := map[Table]bool{}
	for _, p := range Map() {
		types[p.Type] = true
		if orders[p.Type] == nil {
			orders[p.Type] = map[Order]bool{}
		}
		orders[p.Type][p.Order] = true
		if p.Group != "" {
			groups[p.Group] = append(groups[p.Group], p)
		}
		if p.Type == Bool {
			boolTables[p.Table] = true
		}
	}
	for _, typ := range []Type{Bool, Int16, Uint16, Int32, Uint32, Int64, Uint64, Float32, Float64, String} {
		if !types[typ] {
			t.Errorf("no %s point", typ)
		}
	}
	for _, tb := range []Table{Coil, DiscreteInput, Holding} {
		if !boolTables[tb] {
			t.Errorf("no bool point in the %s table", tb)
		}
	}
	want := map[Type][]Order{
		Int16: orders16, Uint16: orders16, String: orders16,
		Int32: orders32, Uint32: orders32, Float32: orders32,
		Int64: orders64, Uint64: orders64, Float64: orders64,
	}
	for typ, os := range want {
		for _, o := range os {
			if !orders[typ][o] {
				t.Errorf("no %s point in order %s", typ, o)
			}
		}
	}
	for name, ps := range groups {
		seen := map[Order]bool{}
		for _, p := range ps {
			if p.Type != ps[0].Type || p.Scale != ps[0].Scale || p.Unit != ps[0].Unit || p.UnitID != ps[0].UnitID {
				t.Errorf("group %s: %s differs from %s in type, scale, unit or unit id", name, p.Name, ps[0].Name)
			}
			if seen[p.Order] {
				t.Errorf("group %s: order %s twice", name, p.Order)
			}
			seen[p.Order] = true
			if want := name + "_" + strings.ToLower(string(p.Order)); p.Name != want {
				t.Errorf("group %s: point %s, want the name %s", name, p.Name, want)
			}
		}
		if w := ps[0].Type.width(); w >= 2 && len(ps) != 4 {
			t.Errorf("group %s: %d orders, want 4", name, len(ps))
		}
	}
	// The gateway's planner joins points at most 10 registers apart: inside a
	// span, keep gaps within that so the demo's merged reads all succeed.
	for id, u := range plant.units {
		for tb, tm := range u.tables {
			for i := 1; i < len(tm.owners); i++ {
				prev, next := tm.owners[i-1], tm.owners[i]
				if gap := int(next.Address) - int(prev.Address) - prev.Registers(); gap > 10 && tm.inSpan(prev.Address, uint16(int(next.Address)-int(prev.Address)+1)) {
					t.Errorf("unit %d %s: %d-register gap between %s and %s", id, tb, gap, prev.Name, next.Name)
				}
			}
		}
	}
}

func TestMapIsACopy(t *testing.T) {
	m := Map()
	m[0].Name = "changed"
	if Map()[0].Name == "changed" {
		t.Error("Map returned the simulator's own slice")
	}
}

func TestSpansOf(t *testing.T) {
	mk := func(addr uint16, regs uint16) *entry {
		return &entry{Point: Point{Address: addr, Type: String, Length: regs}}
	}
	got := spansOf([]*entry{mk(0, 2), mk(2+maxSpanGap, 1), mk(3+2*maxSpanGap+1, 1)})
	want := []span{{0, 3 + maxSpanGap}, {3 + 2*maxSpanGap + 1, 4 + 2*maxSpanGap + 1}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("spansOf = %v, want %v", got, want)
	}
}

// build rejects every kind of mistake a future edit of plantDefs could make.
func TestBuildRejects(t *testing.T) {
	u16 := func(p Point) *entry { return live(p, func(time.Duration) uint16 { return 1 }) }
	base := Point{Device: "d", UnitID: 1, Table: Holding, Type: Uint16, Order: ABCD}
	with := func(f func(*Point)) Point { p := base; f(&p); return p }
	for _, tc := range []struct {
		name string
		defs []*entry
		want string
	}{
		{"duplicate", []*entry{u16(with(func(p *Point) { p.Name = "a" })), u16(with(func(p *Point) { p.Name = "a"; p.Address = 5 }))}, "duplicate"},
		{"overlap", []*entry{
			live(with(func(p *Point) { p.Name = "a"; p.Type = Float32 }), func(time.Duration) float32 { return 1 }),
			u16(with(func(p *Point) { p.Name = "b"; p.Address = 1 }))}, "overlaps"},
		{"order", []*entry{u16(with(func(p *Point) { p.Name = "a"; p.Order = CDAB }))}, "does not fit"},
		{"64-bit order on 32", []*entry{live(with(func(p *Point) { p.Name = "a"; p.Type = Uint32; p.Order = ABCDEFGH }),
			func(time.Duration) uint32 { return 1 })}, "does not fit"},
		{"value type", []*entry{live(with(func(p *Point) { p.Name = "a" }), func(time.Duration) int { return 1 })}, "is int, not uint16"},
		{"string length", []*entry{fixed(with(func(p *Point) { p.Name = "a"; p.Type = String }), "x")}, "without a length"},
		{"string too long", []*entry{fixed(with(func(p *Point) { p.Name = "a"; p.Type = String; p.Length = 1 }), "xyz")}, "longer"},
		{"writable input", []*entry{setpoint(with(func(p *Point) { p.Name = "a"; p.Table = Input }), uint16(1))}, "read-only input"},
		{"bits table", []*entry{u16(with(func(p *Point) { p.Name = "a"; p.Table = Coil }))}, "holds only bool"},
		{"orphan bit", []*entry{live(with(func(p *Point) { p.Name = "a"; p.Type = Bool; p.Order = ""; p.Bit = 3 }),
			func(time.Duration) bool { return true })}, "no 16-bit point"},
		{"bit 16", []*entry{u16(with(func(p *Point) { p.Name = "w" })),
			live(with(func(p *Point) { p.Name = "a"; p.Type = Bool; p.Order = ""; p.Bit = 16 }),
				func(time.Duration) bool { return true })}, "bit 16"},
		{"past 65535", []*entry{live(with(func(p *Point) { p.Name = "a"; p.Type = Uint32; p.Address = 0xffff }),
			func(time.Duration) uint32 { return 1 })}, "past address 65535"},
		{"unit device", []*entry{u16(with(func(p *Point) { p.Name = "a" })), u16(with(func(p *Point) { p.Name = "b"; p.Address = 3; p.Device = "e" }))}, "is device"},
	} {
		_, err := build(tc.defs)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: build error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
}

// FuzzRequest drives the request path with arbitrary unit ids, addresses,
// quantities and values: it must answer with the right count or one of the
// documented exceptions, and never panic.
func FuzzRequest(f *testing.F) {
	f.Add(uint8(1), uint8(3), uint16(0), uint16(66), uint16(7))
	f.Add(uint8(2), uint8(0), uint16(0), uint16(2), uint16(1))
	f.Add(uint8(2), uint8(2), uint16(29), uint16(5), uint16(0xffff))
	f.Add(uint8(9), uint8(1), uint16(0xfff0), uint16(0x20), uint16(0))
	f.Fuzz(func(t *testing.T, unit, table uint8, addr, qty, value uint16) {
		sim, err := New(Config{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		sim.state = stateRunning // serve without a socket
		sim.Freeze(time.Duration(value) * time.Second)
		tb := []Table{Coil, DiscreteInput, Holding, Input}[table%4]
		qty %= 126
		ok := func(err error) bool {
			return err == nil || err == modbus.ErrIllegalDataAddress || err == modbus.ErrGWTargetFailedToRespond
		}
		regs, err := sim.read(unit, tb, addr, qty)
		if !ok(err) || (err == nil && len(regs) != int(qty)) {
			t.Fatalf("read unit %d %s %d+%d: %d values, %v", unit, tb, addr, qty, len(regs), err)
		}
		if tb == Holding || tb == Coil {
			vals := make([]uint16, qty)
			for i := range vals {
				vals[i] = value
			}
			if err := sim.write(unit, tb, addr, vals); !ok(err) {
				t.Fatalf("write unit %d %s %d+%d: %v", unit, tb, addr, qty, err)
			}
		}
	})
}
