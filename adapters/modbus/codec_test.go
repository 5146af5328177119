package modbus

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"testing"

	"github.com/fieldbridge/fieldbridge/adapters"
)

// wire lays out a big-endian value the way a device with the given order
// puts it on the wire. The order name spells the wire layout: "CDAB" means
// the wire carries value bytes C, D, A, B. Independent of the decoder's
// permutation tables on purpose.
func wire(be []byte, order string) []byte {
	out := make([]byte, len(order))
	for i := range order {
		out[i] = be[order[i]-'A']
	}
	return out
}

func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func mustDecoder(t *testing.T, typ DataType, order string, opt func(*codecSpec)) decodeFunc {
	t.Helper()
	o, err := lookupOrder(typ, order)
	if err != nil {
		t.Fatal(err)
	}
	s := codecSpec{typ: typ, order: o, bit: -1}
	if opt != nil {
		opt(&s)
	}
	return newDecoder(s)
}

func TestDecodeEveryTypeAndOrder(t *testing.T) {
	orders32 := []string{"ABCD", "CDAB", "BADC", "DCBA"}
	orders64 := []string{"ABCDEFGH", "GHEFCDAB", "BADCFEHG", "HGFEDCBA"}
	long := map[string]string{"ABCD": "ABCDEFGH", "CDAB": "GHEFCDAB", "BADC": "BADCFEHG", "DCBA": "HGFEDCBA"}
	type tc struct {
		typ  DataType
		be   []byte
		want string
	}
	cases32 := []tc{
		{TypeInt32, be32(uint32(0xFFFE1DC0)), "-123456"},
		{TypeInt32, be32(0x7FFFFFFF), "2147483647"},
		{TypeUint32, be32(4000000000), "4000000000"},
		{TypeFloat32, be32(math.Float32bits(229.8)), "229.8"},
		{TypeFloat32, be32(math.Float32bits(-0.5)), "-0.5"},
		{TypeFloat32, be32(math.Float32bits(1.17549435e-38)), "1.1754944e-38"},
	}
	for _, c := range cases32 {
		for _, o := range orders32 {
			got, err := mustDecoder(t, c.typ, o, nil)(wire(c.be, o))
			if err != nil || got.String() != c.want {
				t.Errorf("%s %s: got %s, %v; want %s", c.typ, o, got, err, c.want)
			}
		}
	}
	minus := int64(-1234567890123)
	cases64 := []tc{
		{TypeInt64, be64(uint64(minus)), "-1234567890123"},
		{TypeUint64, be64(math.MaxUint64), "18446744073709551615"},
		{TypeFloat64, be64(math.Float64bits(math.Pi)), "3.141592653589793"},
		{TypeFloat64, be64(math.Float64bits(-1e-300)), "-1e-300"},
	}
	for _, c := range cases64 {
		for _, o := range orders64 {
			got, err := mustDecoder(t, c.typ, o, nil)(wire(c.be, o))
			if err != nil || got.String() != c.want {
				t.Errorf("%s %s: got %s, %v; want %s", c.typ, o, got, err, c.want)
			}
		}
		for short, o := range long { // the four-letter names mean the same for 64 bits
			got, err := mustDecoder(t, c.typ, short, nil)(wire(c.be, o))
			if err != nil || got.String() != c.want {
				t.Errorf("%s %s (%s): got %s, %v; want %s", c.typ, short, o, got, err, c.want)
			}
		}
	}
	cases16 := []struct {
		typ   DataType
		order string
		w     []byte
		want  string
	}{
		{TypeInt16, "ABCD", []byte{0xFF, 0xFE}, "-2"},
		{TypeInt16, "BADC", []byte{0xFE, 0xFF}, "-2"},
		{TypeInt16, "CDAB", []byte{0x80, 0x00}, "-32768"},
		{TypeInt16, "DCBA", []byte{0x00, 0x80}, "-32768"},
		{TypeUint16, "ABCD", []byte{0xFF, 0xFF}, "65535"},
		{TypeUint16, "BA", []byte{0x34, 0x12}, "4660"},
		{TypeUint16, "", []byte{0x12, 0x34}, "4660"},
	}
	for _, c := range cases16 {
		got, err := mustDecoder(t, c.typ, c.order, nil)(c.w)
		if err != nil || got.String() != c.want {
			t.Errorf("%s %s % x: got %s, %v; want %s", c.typ, c.order, c.w, got, err, c.want)
		}
	}
}

func TestDecodeNonFinite(t *testing.T) {
	for _, f := range []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))} {
		_, err := mustDecoder(t, TypeFloat32, "CDAB", nil)(wire(be32(math.Float32bits(f)), "CDAB"))
		if !errors.Is(err, ErrNotFinite) {
			t.Errorf("float32 %v: err = %v, want ErrNotFinite", f, err)
		}
	}
	for _, f := range []float64{math.NaN(), math.Inf(1)} {
		_, err := mustDecoder(t, TypeFloat64, "ABCD", nil)(be64(math.Float64bits(f)))
		if !errors.Is(err, ErrNotFinite) {
			t.Errorf("float64 %v: err = %v, want ErrNotFinite", f, err)
		}
	}
}

func TestDecodeBits(t *testing.T) {
	reg := []byte{0x80, 0x08} // bits 15 and 3 set
	for bit, want := range map[int]string{0: "false", 3: "true", 15: "true", 14: "false"} {
		got, _ := mustDecoder(t, TypeBool, "ABCD", func(s *codecSpec) { s.bit = bit })(reg)
		if got.String() != want {
			t.Errorf("bit %d of 0x8008: got %s, want %s", bit, got, want)
		}
	}
	// BADC: the register's bytes are swapped first, so 0x0880 on the wire is
	// the value 0x8008.
	got, _ := mustDecoder(t, TypeBool, "BADC", func(s *codecSpec) { s.bit = 15 })([]byte{0x08, 0x80})
	if got.String() != "true" {
		t.Errorf("BADC bit 15: got %s", got)
	}
	// No bit: any non-zero register is true.
	for w, want := range map[[2]byte]string{{0, 0}: "false", {0, 1}: "true", {0x80, 0}: "true"} {
		got, _ := mustDecoder(t, TypeBool, "", nil)(w[:])
		if got.String() != want {
			t.Errorf("bool % x: got %s, want %s", w, got, want)
		}
	}
	coils := []byte{0b00000101, 0b10000000}
	for n, want := range map[int]bool{0: true, 1: false, 2: true, 15: true, 8: false} {
		if bitValue(coils, n) != want {
			t.Errorf("coil %d: got %v", n, !want)
		}
	}
}

func TestDecodeStrings(t *testing.T) {
	str := func(order string, w string) string {
		v, err := mustDecoder(t, TypeString, order, nil)([]byte(w))
		if err != nil {
			t.Fatal(err)
		}
		return v.AsString()
	}
	if got := str("ABCD", "SN-12345\x00\x00"); got != "SN-12345" {
		t.Errorf("trailing NULs: %q", got)
	}
	if got := str("ABCD", "PUMP 7    "); got != "PUMP 7" {
		t.Errorf("trailing spaces: %q", got)
	}
	if got := str("BADC", "NS1-3254"); got != "SN-12345" {
		t.Errorf("byte-swapped: %q", got)
	}
	if got := str("ABCD", "AB\x00garbage"); got != "AB" {
		t.Errorf("cut at NUL: %q", got)
	}
	if got := str("ABCD", "\x00\x00"); got != "" {
		t.Errorf("empty: %q", got)
	}
}

func TestDecodeScaled(t *testing.T) {
	scaled := func(typ DataType, order string, scale, offset float64) decodeFunc {
		return mustDecoder(t, typ, order, func(s *codecSpec) {
			s.scaled, s.scale, s.offset = true, scale, offset
			s.decimals = max(adapters.DecimalsOf(scale), adapters.DecimalsOf(offset))
		})
	}
	cases := []struct {
		dec  decodeFunc
		w    []byte
		want string
	}{
		{scaled(TypeUint32, "CDAB", 0.01, 0), wire(be32(123456), "CDAB"), "1234.56"},
		{scaled(TypeInt16, "", 0.1, 0), []byte{0xFF, 0x33}, "-20.5"}, // -205
		{scaled(TypeUint16, "", 0.5, -40), []byte{0, 100}, "10"},
		{scaled(TypeUint16, "", 10, 0), []byte{0, 7}, "70"},
		{scaled(TypeUint16, "", 1, 0.25), []byte{0, 1}, "1.25"},
		{scaled(TypeFloat32, "", 1000, 0), be32(math.Float32bits(229.8)), "229800"},
		{scaled(TypeFloat64, "", 2, 1), be64(math.Float64bits(1.5)), "4"},
	}
	for i, c := range cases {
		got, err := c.dec(c.w)
		if err != nil || got.String() != c.want {
			t.Errorf("case %d: got %s, %v; want %s", i, got, err, c.want)
		}
	}
}

func TestLookupOrderErrors(t *testing.T) {
	if _, err := lookupOrder(TypeFloat32, "ABCDEFGH"); err == nil {
		t.Error("an 8-byte order accepted for a 32-bit type")
	}
	if _, err := lookupOrder(TypeInt16, "XYZ"); err == nil {
		t.Error("a bogus order accepted")
	}
	if o, err := lookupOrder(TypeUint64, "cdab"); err != nil || o[0] != 6 {
		t.Errorf("lower-case 64-bit alias: %v %v", o, err)
	}
}

// FuzzDecode feeds arbitrary register bytes to every decoder: none may panic,
// and a good value must always encode as valid JSON.
func FuzzDecode(f *testing.F) {
	f.Add([]byte{0x43, 0x65, 0xCC, 0xCD, 0, 0, 0, 0}, uint8(7), uint8(1))
	f.Add([]byte{0x7F, 0xC0, 0, 0, 0, 0, 0, 0}, uint8(7), uint8(0))
	f.Add([]byte("SN\xff\xfe\x00 "), uint8(9), uint8(2))
	orders := []string{"ABCD", "CDAB", "BADC", "DCBA"}
	f.Fuzz(func(t *testing.T, data []byte, typ, order uint8) {
		dt := DataType(typ%10 + 1)
		o, err := lookupOrder(dt, orders[order%4])
		if err != nil {
			t.Fatal(err)
		}
		s := codecSpec{typ: dt, order: o, bit: -1, length: 4}
		n := 2 * dt.registers()
		if dt == TypeString {
			n = 8
		}
		if len(data) < n {
			return
		}
		v, err := newDecoder(s)(data[:n])
		if err == nil && !json.Valid(v.AppendJSON(nil)) {
			t.Fatalf("%s %s % x: invalid JSON %s", dt, orders[order%4], data[:n], v)
		}
	})
}
