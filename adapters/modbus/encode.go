package modbus

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/fieldbridge/fieldbridge/adapters"
)

// Encoding is the exact inverse of decoding (codec.go): the same codecSpec
// that turns a point's registers into a value turns a command's value back
// into registers, so decode(encode(v)) == v for every value the point can
// hold (a scaled value rounded to the nearest raw integer). Like the
// decoders, an encoder is built once per point at load time.

// writeCodec encodes command values for one point and checks them against
// the point's type and its optional limits (engineering units).
type writeCodec struct {
	spec     codecSpec
	min, max *float64
}

// The refusal texts below are wrapped by the caller with the point's name.

// boolOf accepts true/false, and 0/1 as many HMIs send for coils.
func boolOf(v adapters.Value) (bool, error) {
	switch v.Kind() {
	case adapters.KindBool:
		return v.AsBool(), nil
	case adapters.KindInt:
		if i := v.AsInt(); i == 0 || i == 1 {
			return i == 1, nil
		}
	case adapters.KindUint:
		if u := v.AsUint(); u == 0 || u == 1 {
			return u == 1, nil
		}
	case adapters.KindFloat:
		if f := v.AsFloat(); f == 0 || f == 1 {
			return f == 1, nil
		}
	}
	return false, fmt.Errorf("wrong type: a bool point takes true or false (or 0/1), not %s", describeValue(v))
}

// encode returns the point's registers for v, big-endian on the wire,
// exactly 2×regs bytes. Bits of a register are written by setBit instead.
func (c *writeCodec) encode(v adapters.Value) ([]byte, error) {
	s := &c.spec
	switch s.typ {
	case TypeBool:
		on, err := boolOf(v)
		if err != nil {
			return nil, err
		}
		var raw uint64
		if on {
			raw = 1
		}
		b := make([]byte, 2)
		s.order.put(b, raw)
		return b, nil
	case TypeString:
		return c.encodeString(v)
	}
	raw, err := c.encodeNumber(v)
	if err != nil {
		return nil, err
	}
	b := make([]byte, 2*s.typ.registers())
	s.order.put(b, raw)
	return b, nil
}

// encodeString pads the text with NULs to the point's length; the decoder
// cuts at the first NUL, so the text reads back as written (less trailing
// spaces, which the decoder trims).
func (c *writeCodec) encodeString(v adapters.Value) ([]byte, error) {
	if v.Kind() != adapters.KindString {
		return nil, fmt.Errorf("wrong type: a string point takes a \"string\", not %s", describeValue(v))
	}
	text := v.AsString()
	size := 2 * c.spec.length
	if len(text) > size {
		return nil, fmt.Errorf("the text is %d bytes long; the point holds %d (%d registers)", len(text), size, c.spec.length)
	}
	if strings.IndexByte(text, 0) >= 0 {
		return nil, errors.New("the text contains a NUL character, which ends a string in the device")
	}
	b := make([]byte, size)
	copy(b, text)
	if c.spec.order[0] == 1 { // BADC: bytes swapped in each register
		for i := 0; i+1 < len(b); i += 2 {
			b[i], b[i+1] = b[i+1], b[i]
		}
	}
	return b, nil
}

// intRange is the raw range of an integer type.
func intRange(t DataType) (lo int64, hi uint64) {
	switch t {
	case TypeInt16:
		return math.MinInt16, math.MaxInt16
	case TypeUint16:
		return 0, math.MaxUint16
	case TypeInt32:
		return math.MinInt32, math.MaxInt32
	case TypeUint32:
		return 0, math.MaxUint32
	case TypeInt64:
		return math.MinInt64, math.MaxInt64
	}
	return 0, math.MaxUint64
}

// encodeNumber converts v to the raw bits of a numeric type: two's
// complement for integers (within the type's width), IEEE 754 for floats.
func (c *writeCodec) encodeNumber(v adapters.Value) (uint64, error) {
	s := &c.spec
	f, ok := v.Number()
	if !ok {
		return 0, fmt.Errorf("wrong type: a %s point takes a number, not %s", s.typ, describeValue(v))
	}
	if err := c.checkLimits(v, f); err != nil {
		return 0, err
	}
	switch s.typ {
	case TypeFloat32, TypeFloat64:
		if s.scaled {
			f = (f - s.offset) / s.scale
		}
		if s.typ == TypeFloat32 {
			if math.IsInf(f, 0) || math.Abs(f) > math.MaxFloat32 {
				return 0, fmt.Errorf("%s is out of range for float32 (±%g)", formatValue(v), math.MaxFloat32)
			}
			return uint64(math.Float32bits(float32(f))), nil
		}
		if math.IsInf(f, 0) || math.IsNaN(f) {
			return 0, fmt.Errorf("%s is out of range for float64", formatValue(v))
		}
		return math.Float64bits(f), nil
	}
	lo, hi := intRange(s.typ)
	if s.scaled {
		return c.scaledRaw(v, f, lo, hi)
	}
	var neg bool
	var mag uint64 // |value|
	switch v.Kind() {
	case adapters.KindInt:
		i := v.AsInt()
		neg, mag = i < 0, uint64(i)
		if neg {
			mag = -mag
		}
	case adapters.KindUint:
		mag = v.AsUint()
	default:
		if f != math.Trunc(f) {
			return 0, fmt.Errorf("%s is not a whole number: a %s point without scale takes whole numbers", formatValue(v), s.typ)
		}
		if f < -0x1p63 || f >= 0x1p64 {
			return 0, c.rangeError(v, lo, hi)
		}
		neg = f < 0
		if neg {
			mag = uint64(-f)
		} else {
			mag = uint64(f)
		}
	}
	if neg && mag > uint64(-lo) || !neg && mag > hi {
		return 0, c.rangeError(v, lo, hi)
	}
	if neg {
		return c.mask(-mag), nil
	}
	return mag, nil
}

// scaledRaw inverts raw × scale + offset and rounds to the nearest raw
// integer (halves away from zero).
func (c *writeCodec) scaledRaw(v adapters.Value, f float64, lo int64, hi uint64) (uint64, error) {
	s := &c.spec
	r := (f - s.offset) / s.scale
	if math.Abs(r) < 1<<30 {
		// A decimal half in binary floating point lands just beside .5
		// (-61.55 with offset -40 and scale 0.1 is -215.49999999999997):
		// drop that noise first, so halves round away from zero as written.
		r = math.Round(r*1e6) / 1e6
	}
	r = math.Round(r)
	// The float bounds are exact powers of two for 64-bit types, where
	// float64(hi) would round up past the range.
	var flo, fhi float64
	switch s.typ {
	case TypeInt64:
		flo, fhi = -0x1p63, 0x1p63
	case TypeUint64:
		flo, fhi = 0, 0x1p64
	default:
		flo, fhi = float64(lo), float64(hi)+1
	}
	if math.IsNaN(r) || r < flo || r >= fhi {
		return 0, c.rangeError(v, lo, hi)
	}
	if r < 0 {
		return c.mask(uint64(int64(r))), nil
	}
	return uint64(r), nil
}

// mask keeps the type's width of a two's complement value.
func (c *writeCodec) mask(u uint64) uint64 {
	switch c.spec.typ.registers() {
	case 1:
		return u & 0xFFFF
	case 2:
		return u & 0xFFFFFFFF
	}
	return u
}

// checkLimits applies the point's min and max, in engineering units.
func (c *writeCodec) checkLimits(v adapters.Value, f float64) error {
	if c.min != nil && f < *c.min {
		return fmt.Errorf("%s is below the point's min of %s", formatValue(v), formatFloat(*c.min))
	}
	if c.max != nil && f > *c.max {
		return fmt.Errorf("%s is above the point's max of %s", formatValue(v), formatFloat(*c.max))
	}
	return nil
}

func (c *writeCodec) rangeError(v adapters.Value, lo int64, hi uint64) error {
	s := &c.spec
	if !s.scaled {
		return fmt.Errorf("%s is out of range for %s (%d to %d)", formatValue(v), s.typ, lo, hi)
	}
	a, b := float64(lo)*s.scale+s.offset, float64(hi)*s.scale+s.offset
	if a > b {
		a, b = b, a
	}
	return fmt.Errorf("%s is out of range for %s with scale %s and offset %s (%s to %s)",
		formatValue(v), s.typ, formatFloat(s.scale), formatFloat(s.offset), adapters.Decimal(a, s.decimals), adapters.Decimal(b, s.decimals))
}

// setBit is the modify step of a bit write: reg is the register as read (2
// bytes on the wire), the bit is numbered in the value the point's order
// makes of it, exactly as the decoder reads it.
func setBit(reg []byte, o byteOrder, bit int, on bool) []byte {
	v := o.uint(reg)
	if on {
		v |= 1 << bit
	} else {
		v &^= 1 << bit
	}
	out := make([]byte, 2)
	o.put(out, v)
	return out
}

// put is the inverse of uint: value byte j (most significant first) goes to
// wire byte o[j].
func (o byteOrder) put(b []byte, v uint64) {
	n := len(o)
	for j, i := range o {
		b[i] = byte(v >> (8 * (n - 1 - j)))
	}
}

func formatValue(v adapters.Value) string {
	if v.Kind() == adapters.KindFloat {
		return formatFloat(v.AsFloat())
	}
	return v.String()
}

func formatFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

func describeValue(v adapters.Value) string {
	if v.Kind() == adapters.KindString {
		return "a string"
	}
	return adapters.KindName(v.Kind()) + " (" + formatValue(v) + ")"
}
