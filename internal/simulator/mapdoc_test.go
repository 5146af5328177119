package simulator

import (
	"flag"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite MAP.md from Map()")

// MAP.md is generated from Map(); this test fails when it is stale.
// Regenerate with: go test ./internal/simulator -run TestMapDoc -update
func TestMapDoc(t *testing.T) {
	want := mapMarkdown()
	if *update {
		if err := os.WriteFile("MAP.md", []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	got, err := os.ReadFile("MAP.md")
	if err != nil {
		t.Fatalf("%v (generate it with -update)", err)
	}
	if string(got) != want {
		t.Error("MAP.md is stale: run go test ./internal/simulator -run TestMapDoc -update")
	}
}

// mapMarkdown renders the register map as the document MAP.md.
func mapMarkdown() string {
	var b strings.Builder
	b.WriteString(`# Simulator register map

<!-- Generated from simulator.Map() by
     go test ./internal/simulator -run TestMapDoc -update
     Do not edit by hand: the test fails when this file is stale. -->

The built-in Modbus TCP simulator (` + "`simulator:`" + ` in the gateway config, default
` + "`" + DefaultListen + "`" + `) serves the points below. Addresses are 0-based protocol
addresses: holding register 0 is "40001" in a 1-based device manual.

- **Spans.** A read must lie inside one span listed below. Inside a span,
  addresses that belong to no point read as 0, so a request planner may merge
  nearby points and discard the gaps. Any other read gets exception 2
  (illegal data address).
- **Unknown unit ids** get exception 0x0B (gateway target device failed to
  respond).
- **Writes** (FC 5, 6, 15, 16) are stored only when every addressed register or
  coil belongs to a point marked rw; anything else gets exception 2 and
  changes nothing.
- **Groups.** Points sharing a group hold the same logical value in different
  byte orders: all of them must decode to the same number.
- **Scale.** The engineering value is raw × scale, in the unit shown.

Byte orders name the bytes of the big-endian value, A most significant, in
the order they travel: first register first, high byte of a register first.

| order | width | meaning |
|---|---|---|
| ABCD | 16, 32 bit, string | as is (big-endian, high word first) |
| CDAB | 32 bit | low word first |
| BADC | 16, 32 bit, string | bytes swapped in each register |
| DCBA | 32 bit | little-endian |
| ABCDEFGH | 64 bit | big-endian, high word first |
| GHEFCDAB | 64 bit | word order reversed |
| BADCFEHG | 64 bit | bytes swapped in each register |
| HGFEDCBA | 64 bit | little-endian |

Strings are NUL- or space-padded; decoders trim both.

`)
	units := slices.Sorted(maps.Keys(plant.units))
	b.WriteString("## Units and spans\n\n| unit | device | table | spans (first..last address) |\n|---|---|---|---|\n")
	for _, id := range units {
		u := plant.units[id]
		tables := slices.SortedFunc(maps.Keys(u.tables), func(a, b Table) int { return a.rank() - b.rank() })
		for _, tb := range tables {
			var spans []string
			for _, s := range u.tables[tb].spans {
				spans = append(spans, fmt.Sprintf("%d..%d", s.start, s.end-1))
			}
			fmt.Fprintf(&b, "| %d | %s | %s | %s |\n", id, u.device, tb, strings.Join(spans, ", "))
		}
	}
	b.WriteString("\n## Points\n\n")
	b.WriteString("| unit | point | table | address | type | order | length/bit | scale | unit of measure | group | access | what it does |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, p := range Map() {
		lengthBit := ""
		switch {
		case p.Type == String:
			lengthBit = fmt.Sprintf("%d regs", p.Length)
		case p.isBitView():
			lengthBit = fmt.Sprintf("bit %d", p.Bit)
		}
		scale := ""
		if p.Scale != 1 {
			scale = strconv.FormatFloat(p.Scale, 'g', -1, 64)
		}
		access := "r"
		if p.Writable {
			access = "rw"
		}
		fmt.Fprintf(&b, "| %d | %s | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			p.UnitID, p.Name, p.Table, p.Address, p.Type, p.Order, lengthBit, scale, p.Unit,
			p.Group, access, strings.ReplaceAll(p.Description, "|", `\|`))
	}
	return b.String()
}
