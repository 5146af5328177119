package simulator

import (
	"encoding/binary"
	"fmt"
	"math"
)

// newEncoder returns the function that turns a point's logical value into
// its registers. It is chosen once per point when the map is built, so a
// request only computes values and copies registers.
//
// Every byte order is the big-endian value with two independent changes:
// the register order reversed (CDAB, GHEFCDAB) and the bytes of each register
// swapped (BADC, BADCFEHG); DCBA and HGFEDCBA are both. The tests decode
// with a separate, spelled-out decoder per order, so this compact form is
// checked rather than trusted.
func newEncoder(typ Type, order Order, registers int) (func(any) ([]uint16, error), error) {
	toBytes, err := bytesFunc(typ, registers)
	if err != nil {
		return nil, err
	}
	reverseWords, swapBytes, err := orderFlags(typ, order)
	if err != nil {
		return nil, err
	}
	return func(v any) ([]uint16, error) {
		b, err := toBytes(v)
		if err != nil {
			return nil, err
		}
		regs := make([]uint16, len(b)/2)
		for i := range regs {
			hi, lo := b[2*i], b[2*i+1]
			if swapBytes {
				hi, lo = lo, hi
			}
			regs[i] = uint16(hi)<<8 | uint16(lo)
		}
		if reverseWords {
			for i, j := 0, len(regs)-1; i < j; i, j = i+1, j-1 {
				regs[i], regs[j] = regs[j], regs[i]
			}
		}
		return regs, nil
	}, nil
}

// orderFlags says which of the two changes an order makes, and rejects an
// order that does not fit the type's width.
func orderFlags(typ Type, order Order) (reverseWords, swapBytes bool, err error) {
	switch w := typ.width(); {
	case typ == Bool:
		if order == "" {
			return false, false, nil
		}
	case w == 1 || typ == String:
		switch order {
		case ABCD:
			return false, false, nil
		case BADC:
			return false, true, nil
		}
	case w == 2:
		switch order {
		case ABCD:
			return false, false, nil
		case CDAB:
			return true, false, nil
		case BADC:
			return false, true, nil
		case DCBA:
			return true, true, nil
		}
	case w == 4:
		switch order {
		case ABCDEFGH:
			return false, false, nil
		case GHEFCDAB:
			return true, false, nil
		case BADCFEHG:
			return false, true, nil
		case HGFEDCBA:
			return true, true, nil
		}
	}
	return false, false, fmt.Errorf("byte order %q does not fit %s", order, typ)
}

// bytesFunc returns the function that renders a logical value as big-endian
// bytes (a string as its characters, padded with NULs to its length).
func bytesFunc(typ Type, registers int) (func(any) ([]byte, error), error) {
	wrong := func(v any) error { return fmt.Errorf("value %v is %T, not %s", v, v, typ) }
	switch typ {
	case Bool:
		return func(v any) ([]byte, error) {
			b, ok := v.(bool)
			if !ok {
				return nil, wrong(v)
			}
			if b {
				return []byte{0, 1}, nil
			}
			return []byte{0, 0}, nil
		}, nil
	case Int16:
		return func(v any) ([]byte, error) {
			x, ok := v.(int16)
			if !ok {
				return nil, wrong(v)
			}
			return binary.BigEndian.AppendUint16(nil, uint16(x)), nil
		}, nil
	case Uint16:
		return func(v any) ([]byte, error) {
			x, ok := v.(uint16)
			if !ok {
				return nil, wrong(v)
			}
			return binary.BigEndian.AppendUint16(nil, x), nil
		}, nil
	case Int32:
		return func(v any) ([]byte, error) {
			x, ok := v.(int32)
			if !ok {
				return nil, wrong(v)
			}
			return binary.BigEndian.AppendUint32(nil, uint32(x)), nil
		}, nil
	case Uint32:
		return func(v any) ([]byte, error) {
			x, ok := v.(uint32)
			if !ok {
				return nil, wrong(v)
			}
			return binary.BigEndian.AppendUint32(nil, x), nil
		}, nil
	case Float32:
		return func(v any) ([]byte, error) {
			x, ok := v.(float32)
			if !ok {
				return nil, wrong(v)
			}
			return binary.BigEndian.AppendUint32(nil, math.Float32bits(x)), nil
		}, nil
	case Int64:
		return func(v any) ([]byte, error) {
			x, ok := v.(int64)
			if !ok {
				return nil, wrong(v)
			}
			return binary.BigEndian.AppendUint64(nil, uint64(x)), nil
		}, nil
	case Uint64:
		return func(v any) ([]byte, error) {
			x, ok := v.(uint64)
			if !ok {
				return nil, wrong(v)
			}
			return binary.BigEndian.AppendUint64(nil, x), nil
		}, nil
	case Float64:
		return func(v any) ([]byte, error) {
			x, ok := v.(float64)
			if !ok {
				return nil, wrong(v)
			}
			return binary.BigEndian.AppendUint64(nil, math.Float64bits(x)), nil
		}, nil
	case String:
		return func(v any) ([]byte, error) {
			s, ok := v.(string)
			if !ok {
				return nil, wrong(v)
			}
			if len(s) > 2*registers {
				return nil, fmt.Errorf("string %q is longer than %d registers", s, registers)
			}
			b := make([]byte, 2*registers)
			copy(b, s)
			return b, nil
		}, nil
	}
	return nil, fmt.Errorf("unknown type %q", typ)
}
