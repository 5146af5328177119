package modbus

import (
	"bytes"
	"encoding/binary"
	"math"
	"strings"
	"testing"

	"github.com/fieldbridge/fieldbridge/adapters"
)

func mustCodec(t testing.TB, typ DataType, order string, opt func(*codecSpec)) (writeCodec, decodeFunc) {
	t.Helper()
	o, err := lookupOrder(typ, order)
	if err != nil {
		t.Fatal(err)
	}
	s := codecSpec{typ: typ, order: o, bit: -1}
	if opt != nil {
		opt(&s)
	}
	if s.scaled {
		s.decimals = max(adapters.DecimalsOf(s.scale), adapters.DecimalsOf(s.offset))
	}
	return writeCodec{spec: s}, newDecoder(s)
}

func neg64(i int64) uint64 { return uint64(i) }

func scaled(scale, offset float64) func(*codecSpec) {
	return func(s *codecSpec) { s.scaled, s.scale, s.offset = true, scale, offset }
}

// TestEncodeIsTheInverseOfDecode: for every type in every order, a value
// encodes to exactly the wire bytes a device with that order holds (laid out
// by wire(), independently of the permutation tables), and decodes back to
// itself.
func TestEncodeIsTheInverseOfDecode(t *testing.T) {
	type tc struct {
		typ    DataType
		orders []string
		v      adapters.Value
		be     []byte
	}
	o16 := []string{"ABCD", "BADC"}
	o32 := []string{"ABCD", "CDAB", "BADC", "DCBA"}
	o64 := []string{"ABCDEFGH", "GHEFCDAB", "BADCFEHG", "HGFEDCBA"}
	be16 := func(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
	cases := []tc{
		{TypeUint16, o16, adapters.Uint(1200), be16(1200)},
		{TypeUint16, o16, adapters.Int(65535), be16(65535)},
		{TypeInt16, o16, adapters.Int(-2), be16(0xFFFE)},
		{TypeInt16, o16, adapters.Int(-32768), be16(0x8000)},
		{TypeInt32, o32, adapters.Int(-123456), be32(uint32(0xFFFE1DC0))},
		{TypeUint32, o32, adapters.Int(4000000000), be32(4000000000)},
		{TypeFloat32, o32, adapters.Float64(229.8), be32(math.Float32bits(229.8))},
		{TypeFloat32, o32, adapters.Int(-3), be32(math.Float32bits(-3))},
		{TypeInt64, o64, adapters.Int(math.MinInt64), be64(1 << 63)},
		{TypeInt64, o64, adapters.Int(-9876543210000), be64(neg64(-9876543210000))},
		{TypeUint64, o64, adapters.Uint(math.MaxUint64), be64(math.MaxUint64)},
		{TypeFloat64, o64, adapters.Float64(50.0125), be64(math.Float64bits(50.0125))},
	}
	for _, c := range cases {
		for _, o := range c.orders {
			layout := o
			if c.typ.registers() == 1 {
				layout = o[:2]
			}
			w, dec := mustCodec(t, c.typ, o, nil)
			got, err := w.encode(c.v)
			if err != nil {
				t.Errorf("%s %s %v: %v", c.typ, o, c.v, err)
				continue
			}
			if want := wire(c.be, layout); !bytes.Equal(got, want) {
				t.Errorf("%s %s %v: wire % x, want % x", c.typ, o, c.v, got, want)
			}
			back, err := dec(got)
			if err != nil {
				t.Errorf("%s %s: decode: %v", c.typ, o, err)
				continue
			}
			a, _ := back.Number()
			b, _ := c.v.Number()
			if c.typ == TypeFloat32 {
				b = float64(float32(b))
			}
			if a != b {
				t.Errorf("%s %s: %v read back as %v", c.typ, o, c.v, back)
			}
		}
	}
}

func TestEncodeScaledRoundsToNearestRaw(t *testing.T) {
	cases := []struct {
		typ    DataType
		scale  float64
		offset float64
		v      adapters.Value
		raw    int64
		back   string
	}{
		{TypeInt16, 0.1, 0, adapters.Float64(21.5), 215, "21.5"},
		{TypeInt16, 0.1, 0, adapters.Float64(21.54), 215, "21.5"},
		{TypeInt16, 0.1, 0, adapters.Float64(21.55), 216, "21.6"},
		{TypeInt16, 0.1, 0, adapters.Float64(-20.05), -201, "-20.1"}, // halves away from zero
		{TypeUint16, 0.01, 0, adapters.Float64(123.45), 12345, "123.45"},
		{TypeInt16, 0.1, -40, adapters.Float64(-61.55), -216, "-61.6"}, // -215.49999999999997 in floating point
		{TypeUint16, 1, -40, adapters.Int(25), 65, "25"},
		{TypeUint16, 0.5, 10, adapters.Float64(11.2), 2, "11"},
		{TypeInt32, -0.1, 0, adapters.Float64(5), -50, "5"},
		{TypeUint64, 0.01, 0, adapters.Float64(12345678901.23), 1234567890123, "12345678901.23"},
		{TypeFloat32, 0.1, 0, adapters.Float64(22.5), -1, "22.5"},
	}
	for _, c := range cases {
		w, dec := mustCodec(t, c.typ, "ABCD", scaled(c.scale, c.offset))
		got, err := w.encode(c.v)
		if err != nil {
			t.Errorf("%s ×%g+%g %v: %v", c.typ, c.scale, c.offset, c.v, err)
			continue
		}
		if c.raw != -1 {
			var raw int64
			switch len(got) {
			case 2:
				raw = int64(int16(binary.BigEndian.Uint16(got)))
				if c.typ == TypeUint16 {
					raw = int64(binary.BigEndian.Uint16(got))
				}
			case 4:
				raw = int64(int32(binary.BigEndian.Uint32(got)))
			case 8:
				raw = int64(binary.BigEndian.Uint64(got))
			}
			if raw != c.raw {
				t.Errorf("%s ×%g+%g %v: raw %d, want %d", c.typ, c.scale, c.offset, c.v, raw, c.raw)
			}
		}
		back, _ := dec(got)
		if back.String() != c.back {
			t.Errorf("%s ×%g+%g %v: reads back as %s, want %s", c.typ, c.scale, c.offset, c.v, back, c.back)
		}
	}
}

func TestEncodeRefusals(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	cases := []struct {
		typ   DataType
		opt   func(*codecSpec)
		limit [2]*float64
		v     adapters.Value
		msg   string
	}{
		{TypeUint16, nil, [2]*float64{}, adapters.Int(65536), "65536 is out of range for uint16 (0 to 65535)"},
		{TypeUint16, nil, [2]*float64{}, adapters.Int(-1), "out of range for uint16"},
		{TypeInt16, nil, [2]*float64{}, adapters.Int(32768), "out of range for int16 (-32768 to 32767)"},
		{TypeInt32, nil, [2]*float64{}, adapters.Uint(math.MaxUint64), "out of range for int32"},
		{TypeInt64, nil, [2]*float64{}, adapters.Uint(1 << 63), "out of range for int64"},
		{TypeUint64, nil, [2]*float64{}, adapters.Float64(1e20), "out of range for uint64"},
		{TypeUint16, nil, [2]*float64{}, adapters.Float64(12.5), "12.5 is not a whole number"},
		{TypeUint16, nil, [2]*float64{}, adapters.Bool(true), "wrong type: a uint16 point takes a number, not a boolean"},
		{TypeFloat32, nil, [2]*float64{}, adapters.String("1"), "wrong type: a float32 point takes a number, not a string"},
		{TypeFloat32, nil, [2]*float64{}, adapters.Float64(1e39), "out of range for float32"},
		{TypeInt16, scaled(0.1, 0), [2]*float64{}, adapters.Float64(3276.8), "out of range for int16 with scale 0.1 and offset 0 (-3276.8 to 3276.7)"},
		{TypeUint16, nil, [2]*float64{f(0), f(3000)}, adapters.Int(3001), "3001 is above the point's max of 3000"},
		{TypeFloat32, nil, [2]*float64{f(-1.5), nil}, adapters.Float64(-2), "-2 is below the point's min of -1.5"},
		{TypeBool, nil, [2]*float64{}, adapters.Int(2), "wrong type: a bool point takes true or false (or 0/1), not a number (2)"},
		{TypeBool, nil, [2]*float64{}, adapters.String("true"), "not a string"},
		{TypeString, func(s *codecSpec) { s.length = 2 }, [2]*float64{}, adapters.String("abcde"), "the text is 5 bytes long; the point holds 4 (2 registers)"},
		{TypeString, func(s *codecSpec) { s.length = 2 }, [2]*float64{}, adapters.String("a\x00b"), "NUL"},
		{TypeString, func(s *codecSpec) { s.length = 2 }, [2]*float64{}, adapters.Int(12), "wrong type: a string point takes a \"string\", not a number (12)"},
	}
	for _, c := range cases {
		w, _ := mustCodec(t, c.typ, "ABCD", c.opt)
		w.min, w.max = c.limit[0], c.limit[1]
		_, err := w.encode(c.v)
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s %v: error %v, want %q", c.typ, c.v, err, c.msg)
		}
	}
}

func TestEncodeStringsAndBools(t *testing.T) {
	w, dec := mustCodec(t, TypeString, "ABCD", func(s *codecSpec) { s.length = 3 })
	got, err := w.encode(adapters.String("SN-42"))
	if err != nil || !bytes.Equal(got, []byte("SN-42\x00")) {
		t.Fatalf("string: % x %v", got, err)
	}
	if v, _ := dec(got); v.AsString() != "SN-42" {
		t.Errorf("string reads back as %v", v)
	}
	w, dec = mustCodec(t, TypeString, "BADC", func(s *codecSpec) { s.length = 2 })
	got, _ = w.encode(adapters.String("abc"))
	if !bytes.Equal(got, []byte("ba\x00c")) {
		t.Errorf("BADC string: %q", got)
	}
	if v, _ := dec(got); v.AsString() != "abc" {
		t.Errorf("BADC string reads back as %v", v)
	}
	for _, o := range []string{"ABCD", "BADC"} {
		w, dec := mustCodec(t, TypeBool, o, nil)
		for _, v := range []adapters.Value{adapters.Bool(true), adapters.Int(1), adapters.Bool(false), adapters.Uint(0)} {
			got, err := w.encode(v)
			want, _ := boolOf(v)
			back, _ := dec(got)
			if err != nil || back.AsBool() != want {
				t.Errorf("bool %s %v: % x reads back %v (%v)", o, v, got, back, err)
			}
		}
	}
}

// TestSetBitLeavesTheOtherBits: the modify step of a bit write changes one
// bit of the register as the decoder numbers it, in both byte orders.
func TestSetBitLeavesTheOtherBits(t *testing.T) {
	for _, o := range []string{"ABCD", "BADC"} {
		order, _ := lookupOrder(TypeBool, o)
		for bit := range 16 {
			for _, reg := range []uint16{0x0000, 0xFFFF, 0xA55A} {
				for _, on := range []bool{true, false} {
					in := binary.BigEndian.AppendUint16(nil, reg)
					out := setBit(in, order, bit, on)
					before, after := order.uint(in), order.uint(out)
					want := before &^ (1 << bit)
					if on {
						want |= 1 << bit
					}
					if after != want {
						t.Fatalf("%s bit %d on=%v of %04x: %04x, want %04x", o, bit, on, before, after, want)
					}
					dec := newDecoder(codecSpec{typ: TypeBool, order: order, bit: bit})
					if v, _ := dec(out); v.AsBool() != on {
						t.Fatalf("%s bit %d: reads back %v", o, bit, v)
					}
				}
			}
		}
	}
}

// FuzzEncodeDecode: for every integer type, order and a decimal scale,
// registers decoded and encoded again give the same registers (so a value
// read from a device can be written back unchanged); and any value the
// encoder accepts decodes back to itself, within half a raw step when
// scaled.
func FuzzEncodeDecode(f *testing.F) {
	f.Add([]byte{0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0}, uint8(0), uint8(0), 1.0)
	f.Add([]byte{0xff, 0xff, 0, 0, 0x80, 0, 0, 1}, uint8(3), uint8(2), 0.25)
	f.Add([]byte{0x7f, 0xf0, 0, 0, 0, 0, 0, 0}, uint8(7), uint8(1), 1e300)
	types := []DataType{TypeInt16, TypeUint16, TypeInt32, TypeUint32, TypeInt64, TypeUint64, TypeFloat32, TypeFloat64}
	orders := [][]string{{"ABCD", "BADC"}, {"ABCD", "CDAB", "BADC", "DCBA"}, nil, {"ABCDEFGH", "GHEFCDAB", "BADCFEHG", "HGFEDCBA"}}
	scales := []float64{0.1, 0.01, 0.5, 10, 0.001}
	f.Fuzz(func(t *testing.T, raw []byte, ti, oi uint8, value float64) {
		typ := types[int(ti)%len(types)]
		n := typ.registers()
		if len(raw) < 2*n {
			return
		}
		os := orders[n-1]
		order := os[int(oi)%len(os)]
		reg := raw[:2*n]
		// Unscaled: registers → value → registers is the identity (floats
		// that are not finite are refused by the decoder).
		w, dec := mustCodec(t, typ, order, nil)
		if v, err := dec(reg); err == nil {
			back, err := w.encode(v)
			if err != nil {
				t.Fatalf("%s %s % x decodes to %v, which does not encode: %v", typ, order, reg, v, err)
			}
			if typ != TypeFloat32 && typ != TypeFloat64 || v.AsFloat() != 0 { // ±0 may swap sign bits
				if !bytes.Equal(back, reg) {
					t.Fatalf("%s %s % x → %v → % x", typ, order, reg, v, back)
				}
			}
		}
		// Scaled integers: a value read from the device writes back the
		// same raw integer.
		if typ != TypeFloat32 && typ != TypeFloat64 {
			scale := scales[int(oi)%len(scales)]
			ws, decs := mustCodec(t, typ, order, scaled(scale, 0))
			v, _ := decs(reg)
			back, err := ws.encode(v)
			if f, _ := v.Number(); math.Abs(f/scale) < 1<<48 { // the float × scale keeps 1-step precision this far
				if err != nil || !bytes.Equal(back, reg) {
					t.Fatalf("%s %s ×%g: % x → %v → % x (%v)", typ, order, scale, reg, v, back, err)
				}
			}
		}
		// Any accepted value reads back as itself.
		if math.IsNaN(value) || math.IsInf(value, 0) {
			return
		}
		in := adapters.Float64(value)
		enc, err := w.encode(in)
		if err != nil {
			return
		}
		out, err := dec(enc)
		if err != nil {
			t.Fatalf("%s %s: %v encodes to % x, which does not decode: %v", typ, order, value, enc, err)
		}
		got, _ := out.Number()
		want := value
		if typ == TypeFloat32 {
			want = float64(float32(value))
		}
		if got != want {
			t.Fatalf("%s %s: %v reads back as %v", typ, order, value, got)
		}
	})
}
