package simulator

import (
	"encoding/binary"
	"fmt"
	"math"
	"strings"
)

// decode is the tests' own decoder: it shares no code with the encoder and
// spells out, for each order, which wire byte is which byte of the
// big-endian value. Orders are string literals on purpose, so a typo in the
// package's constants cannot hide here.
func decode(p Point, regs []uint16) (any, error) {
	if len(regs) != p.Registers() {
		return nil, fmt.Errorf("%s: got %d registers, want %d", p.Name, len(regs), p.Registers())
	}
	if p.Type == "bool" {
		if p.Table == "coil" || p.Table == "discrete_input" {
			return regs[0] != 0, nil
		}
		return regs[0]>>p.Bit&1 == 1, nil
	}
	// The wire: registers in address order, high byte first.
	w := make([]byte, 0, 2*len(regs))
	for _, r := range regs {
		w = append(w, byte(r>>8), byte(r))
	}
	switch p.Type {
	case "int16", "uint16":
		var b []byte
		switch p.Order {
		case "ABCD":
			b = []byte{w[0], w[1]}
		case "BADC":
			b = []byte{w[1], w[0]}
		default:
			return nil, fmt.Errorf("%s: no 16-bit order %q", p.Name, p.Order)
		}
		u := binary.BigEndian.Uint16(b)
		if p.Type == "int16" {
			return int16(u), nil
		}
		return u, nil
	case "int32", "uint32", "float32":
		var b []byte
		switch p.Order {
		case "ABCD": // wire A B C D
			b = []byte{w[0], w[1], w[2], w[3]}
		case "CDAB": // wire C D A B
			b = []byte{w[2], w[3], w[0], w[1]}
		case "BADC": // wire B A D C
			b = []byte{w[1], w[0], w[3], w[2]}
		case "DCBA": // wire D C B A
			b = []byte{w[3], w[2], w[1], w[0]}
		default:
			return nil, fmt.Errorf("%s: no 32-bit order %q", p.Name, p.Order)
		}
		u := binary.BigEndian.Uint32(b)
		switch p.Type {
		case "int32":
			return int32(u), nil
		case "float32":
			return math.Float32frombits(u), nil
		}
		return u, nil
	case "int64", "uint64", "float64":
		var b []byte
		switch p.Order {
		case "ABCDEFGH": // wire A B C D E F G H
			b = []byte{w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]}
		case "GHEFCDAB": // wire G H E F C D A B
			b = []byte{w[6], w[7], w[4], w[5], w[2], w[3], w[0], w[1]}
		case "BADCFEHG": // wire B A D C F E H G
			b = []byte{w[1], w[0], w[3], w[2], w[5], w[4], w[7], w[6]}
		case "HGFEDCBA": // wire H G F E D C B A
			b = []byte{w[7], w[6], w[5], w[4], w[3], w[2], w[1], w[0]}
		default:
			return nil, fmt.Errorf("%s: no 64-bit order %q", p.Name, p.Order)
		}
		u := binary.BigEndian.Uint64(b)
		switch p.Type {
		case "int64":
			return int64(u), nil
		case "float64":
			return math.Float64frombits(u), nil
		}
		return u, nil
	case "string":
		b := make([]byte, len(w))
		switch p.Order {
		case "ABCD":
			copy(b, w)
		case "BADC":
			for i := 0; i < len(w); i += 2 {
				b[i], b[i+1] = w[i+1], w[i]
			}
		default:
			return nil, fmt.Errorf("%s: no string order %q", p.Name, p.Order)
		}
		return strings.TrimRight(string(b), "\x00 "), nil
	}
	return nil, fmt.Errorf("%s: unknown type %q", p.Name, p.Type)
}

// same reports whether a decoded value equals the expected one: exactly,
// except that strings are compared without their padding.
func same(got, want any) bool {
	if s, ok := want.(string); ok {
		want = strings.TrimRight(s, "\x00 ")
	}
	return got == want
}

// near reports whether two numbers of any Go numeric type are within tol.
func near(got any, want, tol float64) bool {
	var f float64
	switch v := got.(type) {
	case int16:
		f = float64(v)
	case uint16:
		f = float64(v)
	case int32:
		f = float64(v)
	case uint32:
		f = float64(v)
	case int64:
		f = float64(v)
	case uint64:
		f = float64(v)
	case float32:
		f = float64(v)
	case float64:
		f = v
	default:
		return false
	}
	return math.Abs(f-want) <= tol
}
