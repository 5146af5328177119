package main

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/fieldbridge/fieldbridge/adapters"
	"github.com/fieldbridge/fieldbridge/adapters/modbus"
)

// What `gateway probe` shows for a register block: from every offset, the
// register as uint16, int16, hex and two ASCII characters, and the offset
// with the following registers as every 32- and 64-bit type in the four
// byte orders a config can name. The decoders are the gateway's own
// (modbus.NewDecoder), so the column that shows the right number names
// the type and order to write in the config.

// probeOrders are the order names of the config, for 32- and 64-bit types
// alike (CDAB of a 64-bit type is GHEFCDAB).
var probeOrders = []string{"ABCD", "CDAB", "BADC", "DCBA"}

// probeWide are the 32- and 64-bit types, in column order.
var probeWide = []string{"int32", "uint32", "float32", "int64", "uint64", "float64"}

// cell is one interpretation: its text, and its JSON (null when the value
// is implausible).
type cell struct {
	text string
	json string
}

var implausible = cell{text: "–", json: "null"}

// probeRow is every interpretation from one register offset.
type probeRow struct {
	address int
	raw     uint16
	ascii   string
	// wide[type][order]; nil where the type does not fit before the end
	// of the block.
	wide map[string][]cell
}

// decoders are built once: 6 types × 4 orders.
type probeDecoders map[string][]*modbus.Decoder

func newProbeDecoders() (probeDecoders, error) {
	ds := probeDecoders{}
	for _, t := range probeWide {
		for _, o := range probeOrders {
			d, err := modbus.NewDecoder(t, o)
			if err != nil {
				return nil, err
			}
			ds[t] = append(ds[t], d)
		}
	}
	return ds, nil
}

// interpret decodes a block read from address start.
func (ds probeDecoders) interpret(start int, regs []uint16) []probeRow {
	b := make([]byte, 2*len(regs))
	for i, r := range regs {
		b[2*i], b[2*i+1] = byte(r>>8), byte(r)
	}
	rows := make([]probeRow, len(regs))
	for i, r := range regs {
		row := probeRow{address: start + i, raw: r, ascii: asciiPair(b[2*i], b[2*i+1]), wide: map[string][]cell{}}
		for _, t := range probeWide {
			dec := ds[t]
			if i+dec[0].Registers() > len(regs) {
				continue
			}
			cells := make([]cell, len(dec))
			for k, d := range dec {
				v, err := d.Decode(b[2*i:])
				cells[k] = plausible(t, v, err)
			}
			row.wide[t] = cells
		}
		rows[i] = row
	}
	return rows
}

// plausible renders a value, or "–" for a float no device means: NaN or
// infinite, denormal, or beyond ±1e15. Integers are always shown.
func plausible(typ string, v adapters.Value, err error) cell {
	if err != nil {
		return implausible
	}
	if strings.HasPrefix(typ, "float") {
		f := v.AsFloat()
		smallest := 0x1p-126 // smallest normal float32
		if typ == "float64" {
			smallest = 0x1p-1022
		}
		if a := math.Abs(f); math.IsNaN(f) || a > 1e15 || (a != 0 && a < smallest) {
			return implausible
		}
	}
	text := v.String()
	return cell{text: text, json: text}
}

// asciiPair shows a register's two bytes as characters, '.' for those that
// are not printable ASCII.
func asciiPair(hi, lo byte) string {
	c := func(b byte) byte {
		if b < 0x20 || b > 0x7e {
			return '.'
		}
		return b
	}
	return string([]byte{c(hi), c(lo)})
}

// writeProbeText prints the three tables: 16-bit, 32-bit, 64-bit.
func writeProbeText(w io.Writer, rows []probeRow) {
	fmt.Fprintf(w, "%7s  %6s  %6s  %6s  %s\n", "address", "hex", "uint16", "int16", "ascii")
	for _, r := range rows {
		fmt.Fprintf(w, "%7d  %6s  %6d  %6d  %q\n", r.address, fmt.Sprintf("%04x", r.raw), r.raw, int16(r.raw), r.ascii)
	}
	section := func(title string, types []string, width int) {
		has := false
		for _, r := range rows {
			has = has || r.wide[types[0]] != nil
		}
		if !has {
			return
		}
		fmt.Fprintf(w, "\n%s\n%7s  %-7s", title, "address", "type")
		for _, o := range probeOrders {
			fmt.Fprintf(w, "  %*s", width, o)
		}
		fmt.Fprintln(w)
		for _, r := range rows {
			for k, t := range types {
				cells := r.wide[t]
				if cells == nil {
					continue
				}
				addr := ""
				if k == 0 {
					addr = strconv.Itoa(r.address)
				}
				fmt.Fprintf(w, "%7s  %-7s", addr, t)
				for _, c := range cells {
					fmt.Fprintf(w, "  %*s", width, c.text)
				}
				fmt.Fprintln(w)
			}
		}
	}
	section("32-bit (the register and the next)", probeWide[:3], 15)
	section("64-bit (the register and the next three; CDAB = GHEFCDAB, BADC = BADCFEHG, DCBA = HGFEDCBA)", probeWide[3:], 23)
}

// writeProbeJSON prints one object per offset, keys in a fixed order.
func writeProbeJSON(w io.Writer, rows []probeRow) {
	var b strings.Builder
	b.WriteString("[")
	for i, r := range rows {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, "\n  {\"address\": %d, \"raw\": %d, \"hex\": \"%04x\", \"uint16\": %d, \"int16\": %d", r.address, r.raw, r.raw, r.raw, int16(r.raw))
		for _, t := range probeWide {
			for k, c := range r.wide[t] {
				fmt.Fprintf(&b, ", \"%s_%s\": %s", t, probeOrders[k], c.json)
			}
		}
		b.WriteString(", \"ascii\": ")
		b.Write(adapters.AppendJSONString(nil, r.ascii))
		b.WriteString("}")
	}
	b.WriteString("\n]\n")
	_, _ = io.WriteString(w, b.String())
}

// writeBitsText and writeBitsJSON show coils and discrete inputs.
func writeBitsText(w io.Writer, start int, bits []bool) {
	fmt.Fprintf(w, "%7s  %s\n", "address", "value")
	for i, v := range bits {
		n := 0
		if v {
			n = 1
		}
		fmt.Fprintf(w, "%7d  %d\n", start+i, n)
	}
}

func writeBitsJSON(w io.Writer, start int, bits []bool) {
	var b strings.Builder
	b.WriteString("[")
	for i, v := range bits {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, "\n  {\"address\": %d, \"value\": %t}", start+i, v)
	}
	b.WriteString("\n]\n")
	_, _ = io.WriteString(w, b.String())
}
