package adapters

import (
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Kind is the JSON shape of a value.
type Kind uint8

// Value kinds.
const (
	KindInvalid Kind = iota
	KindBool
	KindInt
	KindUint
	KindFloat
	KindString
)

// Float formatting modes kept in Value.prec; values >= 0 are a number of
// decimal places.
const (
	precShortest64 = -1 // shortest repr that round-trips a float64
	precShortest32 = -2 // shortest repr that round-trips a float32
)

// Value is a decoded reading. It is a small value type (no interface boxing)
// so that the poll loop allocates nothing per point; strings are the
// exception.
type Value struct {
	kind Kind
	prec int8
	bits uint64
	str  string
}

// Bool returns a boolean value.
func Bool(b bool) Value {
	v := Value{kind: KindBool}
	if b {
		v.bits = 1
	}
	return v
}

// Int returns a signed integer value.
func Int(i int64) Value { return Value{kind: KindInt, bits: uint64(i)} }

// Uint returns an unsigned integer value.
func Uint(u uint64) Value { return Value{kind: KindUint, bits: u} }

// Float64 returns a float published with the shortest decimal text that
// reads back as the same float64.
func Float64(f float64) Value {
	return Value{kind: KindFloat, prec: precShortest64, bits: math.Float64bits(f)}
}

// Float32 returns a float published with the shortest decimal text that reads
// back as the same float32, so a register holding 229.8f is published as
// 229.8 and not 229.8000030517578.
func Float32(f float32) Value {
	return Value{kind: KindFloat, prec: precShortest32, bits: math.Float64bits(float64(f))}
}

// Decimal returns a float published with at most decimals decimal places
// (trailing zeros dropped): raw counts × 0.01 are published as 123.45, not
// 123.45000000000002.
func Decimal(f float64, decimals int) Value {
	if decimals < 0 {
		decimals = 0
	}
	if decimals > 17 {
		decimals = 17
	}
	return Value{kind: KindFloat, prec: int8(decimals), bits: math.Float64bits(f)}
}

// String returns a string value.
func String(s string) Value { return Value{kind: KindString, str: s} }

// Kind reports the value's kind.
func (v Value) Kind() Kind { return v.kind }

// AsBool returns the value of a KindBool.
func (v Value) AsBool() bool { return v.bits != 0 }

// AsInt returns the value of a KindInt.
func (v Value) AsInt() int64 { return int64(v.bits) }

// AsUint returns the value of a KindUint.
func (v Value) AsUint() uint64 { return v.bits }

// AsFloat returns the value of a KindFloat.
func (v Value) AsFloat() float64 { return math.Float64frombits(v.bits) }

// AsString returns the value of a KindString.
func (v Value) AsString() string { return v.str }

// Number returns the value as a float64 for numeric kinds (deadband checks).
func (v Value) Number() (float64, bool) {
	switch v.kind {
	case KindInt:
		return float64(int64(v.bits)), true
	case KindUint:
		return float64(v.bits), true
	case KindFloat:
		return math.Float64frombits(v.bits), true
	}
	return 0, false
}

// Equal reports whether two values would publish the same text.
func (v Value) Equal(o Value) bool {
	return v.kind == o.kind && v.prec == o.prec && v.bits == o.bits && v.str == o.str
}

// String renders the value as its JSON text (for logs and tests).
func (v Value) String() string { return string(v.AppendJSON(nil)) }

// AppendJSON appends the value as a JSON number, boolean or string. Non-finite
// floats, which JSON cannot represent, are written as null; decoders report
// them as errors before they get here.
func (v Value) AppendJSON(b []byte) []byte {
	switch v.kind {
	case KindBool:
		return strconv.AppendBool(b, v.bits != 0)
	case KindInt:
		return strconv.AppendInt(b, int64(v.bits), 10)
	case KindUint:
		return strconv.AppendUint(b, v.bits, 10)
	case KindFloat:
		return appendFloat(b, math.Float64frombits(v.bits), v.prec)
	case KindString:
		return AppendJSONString(b, v.str)
	}
	return append(b, "null"...)
}

func appendFloat(b []byte, f float64, prec int8) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, "null"...)
	}
	switch prec {
	case precShortest64:
		return strconv.AppendFloat(b, f, 'g', -1, 64)
	case precShortest32:
		return strconv.AppendFloat(b, f, 'g', -1, 32)
	}
	start := len(b)
	b = strconv.AppendFloat(b, f, 'f', int(prec), 64)
	if prec > 0 {
		// Trim trailing zeros and a trailing point: "5.20" -> "5.2", "5.00" -> "5".
		n := len(b)
		for n > start && b[n-1] == '0' {
			n--
		}
		if n > start && b[n-1] == '.' {
			n--
		}
		b = b[:n]
	}
	if len(b)-start == 2 && b[start] == '-' && b[start+1] == '0' {
		b = append(b[:start], '0') // -0.001 rounded to 2 places is "0", not "-0"
	}
	return b
}

// AppendJSONString appends s as a JSON string literal. Invalid UTF-8 (a
// device's string register may hold anything) is replaced by U+FFFD so the
// payload is always valid JSON.
func AppendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c >= 0x20:
				b = append(b, c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, "\ufffd"...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

// DecimalsOf returns the number of decimal places needed to write x exactly in
// decimal, up to 9 (a scale of 0.01 gives 2, 0.5 gives 1, 10 gives 0). A
// scaled integer reading has at most that many decimals.
func DecimalsOf(x float64) int {
	s := strconv.FormatFloat(math.Abs(x), 'f', -1, 64)
	i := strings.IndexByte(s, '.')
	if i < 0 {
		return 0
	}
	if d := len(s) - i - 1; d < 9 {
		return d
	}
	return 9
}
