package modbus

import (
	"fmt"
	"strings"

	"github.com/fieldbridge/fieldbridge/adapters"
)

// Decoder decodes registers as one type in one byte order exactly as a
// configured point of that type and order is decoded: `gateway probe` shows
// what each choice would publish, so the choice it helps find is the one
// the gateway then makes.
type Decoder struct {
	regs int
	dec  decodeFunc
}

// NewDecoder returns the decoder of a numeric type (int16, uint16, int32,
// uint32, int64, uint64, float32, float64) in a byte order as the config
// names them (ABCD, CDAB, BADC, DCBA; for 64-bit types also ABCDEFGH,
// GHEFCDAB, BADCFEHG, HGFEDCBA).
func NewDecoder(typ, order string) (*Decoder, error) {
	t, ok := typeNames[strings.ToLower(typ)]
	if !ok || !t.numeric() {
		return nil, fmt.Errorf("type %q: use int16, uint16, int32, uint32, int64, uint64, float32 or float64", typ)
	}
	o, err := lookupOrder(t, order)
	if err != nil {
		return nil, err
	}
	return &Decoder{regs: t.registers(), dec: newDecoder(codecSpec{typ: t, order: o, bit: -1})}, nil
}

// Registers is how many registers a value takes.
func (d *Decoder) Registers() int { return d.regs }

// Decode decodes the first Registers() registers of b (big-endian register
// bytes, as on the wire). Non-finite floats are ErrNotFinite.
func (d *Decoder) Decode(b []byte) (adapters.Value, error) {
	if len(b) < 2*d.regs {
		return adapters.Value{}, fmt.Errorf("%d bytes, want %d", len(b), 2*d.regs)
	}
	return d.dec(b[:2*d.regs])
}
