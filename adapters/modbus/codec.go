package modbus

import (
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/fieldbridge/fieldbridge/adapters"
)

// DataType is how a point's registers are interpreted.
type DataType uint8

// Data types.
const (
	TypeBool DataType = iota + 1
	TypeInt16
	TypeUint16
	TypeInt32
	TypeUint32
	TypeInt64
	TypeUint64
	TypeFloat32
	TypeFloat64
	TypeString
)

var typeNames = map[string]DataType{
	"bool": TypeBool, "int16": TypeInt16, "uint16": TypeUint16, "int32": TypeInt32,
	"uint32": TypeUint32, "int64": TypeInt64, "uint64": TypeUint64,
	"float32": TypeFloat32, "float64": TypeFloat64, "string": TypeString,
}

func (t DataType) String() string {
	for name, v := range typeNames {
		if v == t {
			return name
		}
	}
	return fmt.Sprintf("type(%d)", t)
}

// registers is the number of 16-bit registers the type occupies (strings and
// bools are sized elsewhere).
func (t DataType) registers() int {
	switch t {
	case TypeInt32, TypeUint32, TypeFloat32:
		return 2
	case TypeInt64, TypeUint64, TypeFloat64:
		return 4
	}
	return 1
}

func (t DataType) numeric() bool { return t != TypeBool && t != TypeString }

// byteOrder is a permutation: value byte i (most significant first) is taken
// from wire byte perm[i]. Registers arrive big-endian on the wire, so ABCD is
// the identity.
type byteOrder []int

var (
	orders16 = map[string]byteOrder{
		"AB": {0, 1}, "BA": {1, 0},
		"ABCD": {0, 1}, "CDAB": {0, 1}, "BADC": {1, 0}, "DCBA": {1, 0},
	}
	orders32 = map[string]byteOrder{
		"ABCD": {0, 1, 2, 3}, "CDAB": {2, 3, 0, 1}, "BADC": {1, 0, 3, 2}, "DCBA": {3, 2, 1, 0},
	}
	orders64 = map[string]byteOrder{
		"ABCDEFGH": {0, 1, 2, 3, 4, 5, 6, 7}, "GHEFCDAB": {6, 7, 4, 5, 2, 3, 0, 1},
		"BADCFEHG": {1, 0, 3, 2, 5, 4, 7, 6}, "HGFEDCBA": {7, 6, 5, 4, 3, 2, 1, 0},
	}
	// The four-letter names mean the same arrangement for 64-bit values.
	orderAliases64 = map[string]string{"ABCD": "ABCDEFGH", "CDAB": "GHEFCDAB", "BADC": "BADCFEHG", "DCBA": "HGFEDCBA"}
)

// lookupOrder returns the permutation for a type and an order name ("" means
// ABCD), or an error listing the valid names.
func lookupOrder(t DataType, name string) (byteOrder, error) {
	if name == "" {
		name = "ABCD"
	}
	name = strings.ToUpper(name)
	var table map[string]byteOrder
	switch t.registers() {
	case 1:
		table = orders16
	case 2:
		table = orders32
	case 4:
		table = orders64
		if long, ok := orderAliases64[name]; ok {
			name = long
		}
	}
	if t == TypeBool || t == TypeString {
		table = orders16
	}
	if o, ok := table[name]; ok {
		return o, nil
	}
	switch t.registers() {
	case 4:
		return nil, fmt.Errorf("unknown order %q for %s: use ABCD, CDAB, BADC, DCBA (or ABCDEFGH, GHEFCDAB, BADCFEHG, HGFEDCBA)", name, t)
	case 2:
		return nil, fmt.Errorf("unknown order %q for %s: use ABCD, CDAB, BADC or DCBA", name, t)
	}
	return nil, fmt.Errorf("unknown order %q for %s: use ABCD (as is) or BADC (bytes swapped)", name, t)
}

func (o byteOrder) uint(b []byte) uint64 {
	var v uint64
	for _, i := range o {
		v = v<<8 | uint64(b[i])
	}
	return v
}

// ErrNotFinite is returned for NaN and infinite floats: JSON cannot carry
// them, and devices use them to say "no reading".
var ErrNotFinite = errors.New("not a finite number")

// decodeFunc turns a point's bytes (exactly its registers, big-endian on the
// wire) into a value. Built once per point at load time, so the poll loop does
// no string switches.
type decodeFunc func(b []byte) (adapters.Value, error)

// codecSpec is everything that decides how a point decodes.
type codecSpec struct {
	typ      DataType
	order    byteOrder
	bit      int // -1: whole register
	length   int // registers, strings only
	scale    float64
	offset   float64
	scaled   bool // scale or offset given
	decimals int  // for scaled integers
}

// newDecoder builds the decode function for a register point.
func newDecoder(s codecSpec) decodeFunc {
	switch s.typ {
	case TypeBool:
		o, bit := s.order, s.bit
		if bit < 0 {
			return func(b []byte) (adapters.Value, error) { return adapters.Bool(o.uint(b) != 0), nil }
		}
		return func(b []byte) (adapters.Value, error) { return adapters.Bool(o.uint(b)>>bit&1 == 1), nil }
	case TypeString:
		swap := s.order[0] == 1
		return func(b []byte) (adapters.Value, error) { return adapters.String(decodeString(b, swap)), nil }
	case TypeFloat32:
		return floatDecoder(s, func(b []byte) float64 { return float64(math.Float32frombits(uint32(s.order.uint(b)))) })
	case TypeFloat64:
		return floatDecoder(s, func(b []byte) float64 { return math.Float64frombits(s.order.uint(b)) })
	}
	// Integers: sign-extend by width.
	o := s.order
	var raw func(b []byte) (int64, uint64, bool) // signed value, unsigned value, signed?
	switch s.typ {
	case TypeInt16:
		raw = func(b []byte) (int64, uint64, bool) { return int64(int16(o.uint(b))), 0, true }
	case TypeInt32:
		raw = func(b []byte) (int64, uint64, bool) { return int64(int32(o.uint(b))), 0, true }
	case TypeInt64:
		raw = func(b []byte) (int64, uint64, bool) { return int64(o.uint(b)), 0, true }
	default: // uint16, uint32, uint64
		raw = func(b []byte) (int64, uint64, bool) { return 0, o.uint(b), false }
	}
	if !s.scaled {
		return func(b []byte) (adapters.Value, error) {
			i, u, signed := raw(b)
			if signed {
				return adapters.Int(i), nil
			}
			return adapters.Uint(u), nil
		}
	}
	scale, offset, dec := s.scale, s.offset, s.decimals
	return func(b []byte) (adapters.Value, error) {
		i, u, signed := raw(b)
		f := float64(u)
		if signed {
			f = float64(i)
		}
		return adapters.Decimal(f*scale+offset, dec), nil
	}
}

func floatDecoder(s codecSpec, raw func([]byte) float64) decodeFunc {
	is32 := s.typ == TypeFloat32
	scale, offset, scaled := s.scale, s.offset, s.scaled
	return func(b []byte) (adapters.Value, error) {
		f := raw(b)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return adapters.Value{}, fmt.Errorf("%w (%v)", ErrNotFinite, f)
		}
		if scaled {
			f = f*scale + offset
		}
		if is32 {
			return adapters.Float32(float32(f)), nil
		}
		return adapters.Float64(f), nil
	}
}

// decodeString reads a string register block: optionally byte-swapped per
// register, cut at the first NUL (C strings) and trimmed of trailing spaces.
func decodeString(b []byte, swap bool) string {
	buf := b
	if swap {
		buf = make([]byte, len(b))
		for i := 0; i+1 < len(b); i += 2 {
			buf[i], buf[i+1] = b[i+1], b[i]
		}
	}
	for i, c := range buf {
		if c == 0 {
			buf = buf[:i]
			break
		}
	}
	return strings.TrimRight(string(buf), " ")
}

// bitValue reads bit n (0 = first coil) of a packed coil/discrete response.
func bitValue(b []byte, n int) bool { return b[n>>3]>>(n&7)&1 == 1 }
