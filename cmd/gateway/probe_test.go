package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fieldbridge/fieldbridge/internal/testpeer"
)

// probeBlock is the known register block the probe tests read: a float32
// 3.14159274 stored CDAB (the example), an int16 -2, a float64
// 1234.5678 stored ABCDEFGH, "AB" "C." as text, a uint32 stored DCBA and a
// register that makes NaN as a float32's high word.
var probeBlock = []uint16{0x0FDB, 0x4049, 0xFFFE, 0x4093, 0x4A45, 0x6D5C, 0xFAAD, 0x4142, 0x4300, 0x7856, 0x3412, 0x7FC0}

// The orders as permutations, written out here independently of the
// codec: value byte k is block byte perm[k].
var (
	testOrders32 = map[string][]int{"ABCD": {0, 1, 2, 3}, "CDAB": {2, 3, 0, 1}, "BADC": {1, 0, 3, 2}, "DCBA": {3, 2, 1, 0}}
	testOrders64 = map[string][]int{"ABCD": {0, 1, 2, 3, 4, 5, 6, 7}, "CDAB": {6, 7, 4, 5, 2, 3, 0, 1}, "BADC": {1, 0, 3, 2, 5, 4, 7, 6}, "DCBA": {7, 6, 5, 4, 3, 2, 1, 0}}
)

// expectedProbe computes every column for every offset: key → JSON text
// (the text table shows the same, "–" for null).
func expectedProbe(start int, regs []uint16) []map[string]string {
	b := make([]byte, 2*len(regs))
	for i, r := range regs {
		binary.BigEndian.PutUint16(b[2*i:], r)
	}
	pick := func(at int, perm []int) []byte {
		out := make([]byte, len(perm))
		for k, p := range perm {
			out[k] = b[at+p]
		}
		return out
	}
	f32 := func(f float32) string {
		a := math.Abs(float64(f))
		if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) || a > 1e15 || (a != 0 && a < 0x1p-126) {
			return "null"
		}
		return strconv.FormatFloat(float64(f), 'g', -1, 32)
	}
	f64 := func(f float64) string {
		a := math.Abs(f)
		if math.IsNaN(f) || math.IsInf(f, 0) || a > 1e15 || (a != 0 && a < 0x1p-1022) {
			return "null"
		}
		return strconv.FormatFloat(f, 'g', -1, 64)
	}
	ascii := func(c byte) byte {
		if c < 0x20 || c > 0x7e {
			return '.'
		}
		return c
	}
	var out []map[string]string
	for i, r := range regs {
		m := map[string]string{
			"address": strconv.Itoa(start + i), "raw": strconv.Itoa(int(r)), "hex": fmt.Sprintf("%04x", r),
			"uint16": strconv.Itoa(int(r)), "int16": strconv.Itoa(int(int16(r))),
			"ascii": string([]byte{ascii(byte(r >> 8)), ascii(byte(r))}),
		}
		for name, perm := range testOrders32 {
			if i+2 > len(regs) {
				break
			}
			u := binary.BigEndian.Uint32(pick(2*i, perm))
			m["uint32_"+name] = strconv.FormatUint(uint64(u), 10)
			m["int32_"+name] = strconv.FormatInt(int64(int32(u)), 10)
			m["float32_"+name] = f32(math.Float32frombits(u))
		}
		for name, perm := range testOrders64 {
			if i+4 > len(regs) {
				break
			}
			u := binary.BigEndian.Uint64(pick(2*i, perm))
			m["uint64_"+name] = strconv.FormatUint(u, 10)
			m["int64_"+name] = strconv.FormatInt(int64(u), 10)
			m["float64_"+name] = f64(math.Float64frombits(u))
		}
		out = append(out, m)
	}
	return out
}

// checkProbeJSON compares probe --json with the expectation, key by key.
func checkProbeJSON(t *testing.T, out []byte, want []map[string]string) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(out))
	dec.UseNumber()
	var got []map[string]any
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("probe --json is not JSON: %v\n%s", err, out)
	}
	if len(got) != len(want) {
		t.Fatalf("probe --json: %d rows, want %d", len(got), len(want))
	}
	for i := range want {
		if len(got[i]) != len(want[i]) {
			t.Errorf("row %d: %d keys, want %d: %v", i, len(got[i]), len(want[i]), got[i])
		}
		for k, w := range want[i] {
			v, ok := got[i][k]
			var s string
			switch v := v.(type) {
			case nil:
				s = "null"
			case json.Number:
				s = v.String()
			case string:
				s = v
			default:
				s = fmt.Sprint(v)
			}
			if k == "hex" || k == "ascii" {
				s, _ = v.(string)
			}
			if !ok || s != w {
				t.Errorf("row %d (address %s) %s = %s (present %v), want %s", i, want[i]["address"], k, s, ok, w)
			}
		}
	}
}

// checkProbeText compares the three text tables with the expectation,
// cell by cell.
func checkProbeText(t *testing.T, out string, want []map[string]string) {
	t.Helper()
	lines := strings.Split(out, "\n")
	section, addr, checked := "16", "", 0
	for _, line := range lines {
		f := strings.Fields(line)
		switch {
		case len(f) == 0 || f[0] == "address" || strings.Contains(line, " unit "):
			continue
		case strings.HasPrefix(line, "32-bit"):
			section = "32"
			continue
		case strings.HasPrefix(line, "64-bit"):
			section = "64"
			continue
		}
		if section == "16" {
			i := rowOf(t, want, f[0])
			for k, key := range []string{"address", "hex", "uint16", "int16"} {
				if f[k] != want[i][key] {
					t.Errorf("text: address %s %s = %s, want %s", f[0], key, f[k], want[i][key])
				}
			}
			if q := strconv.Quote(want[i]["ascii"]); f[4] != q {
				t.Errorf("text: address %s ascii = %s, want %s", f[0], f[4], q)
			}
			checked += 5
			continue
		}
		if len(f) == 6 {
			addr, f = f[0], f[1:]
		}
		if len(f) != 5 {
			t.Fatalf("text: unexpected line %q", line)
		}
		i := rowOf(t, want, addr)
		for k, order := range probeOrders {
			w := want[i][f[0]+"_"+order]
			if w == "null" {
				w = "–"
			}
			if f[1+k] != w {
				t.Errorf("text: address %s %s %s = %s, want %s", addr, f[0], order, f[1+k], w)
			}
			checked++
		}
	}
	// 12 rows × 5 + 11 × 12 + 9 × 12
	if wantCells := len(want)*5 + (len(want)-1)*12 + (len(want)-3)*12; checked != wantCells {
		t.Errorf("text: checked %d cells, want %d\n%s", checked, wantCells, out)
	}
}

func rowOf(t *testing.T, want []map[string]string, addr string) int {
	t.Helper()
	for i, w := range want {
		if w["address"] == addr {
			return i
		}
	}
	t.Fatalf("text: no row for address %q", addr)
	return -1
}

func runCmd(tb testing.TB, args ...string) (int, string, string) {
	tb.Helper()
	var stdout, stderr bytes.Buffer
	code := run(args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// probeBoth reads the block as text and as JSON and checks every cell.
func probeBoth(t *testing.T, link ...string) {
	const start = 40
	want := expectedProbe(start, probeBlock)
	// The example, to be sure the expectation is not wrong the same
	// way the code could be.
	if want[0]["float32_CDAB"] != "3.1415927" || want[0]["float32_ABCD"] == "3.1415927" {
		t.Fatalf("expectation: float32 of offset 0: %v", want[0])
	}
	args := append([]string{"probe"}, link...)
	args = append(args, "--unit", "1", "--start", strconv.Itoa(start), "--count", strconv.Itoa(len(probeBlock)))
	code, out, errOut := runCmd(t, append(args, "--json")...)
	if code != exitOK {
		t.Fatalf("probe --json: exit %d: %s", code, errOut)
	}
	checkProbeJSON(t, []byte(out), want)
	if strings.Contains(out, "NaN") || strings.Contains(out, "Inf") {
		t.Errorf("probe --json has non-JSON numbers:\n%s", out)
	}
	code, out, errOut = runCmd(t, args...)
	if code != exitOK {
		t.Fatalf("probe: exit %d: %s", code, errOut)
	}
	checkProbeText(t, out, want)
}

func blockSpec(units ...byte) testpeer.DeviceSpec {
	spec := testpeer.DeviceSpec{Units: map[byte]testpeer.UnitSpec{}}
	for _, u := range units {
		h := map[uint16]uint16{}
		for i, r := range probeBlock {
			h[40+uint16(i)] = r
		}
		spec.Units[u] = testpeer.UnitSpec{Holding: h, Coils: map[uint16]bool{1: true, 3: true}}
	}
	return spec
}

func TestProbeTCP(t *testing.T) {
	dev := testpeer.StartTCP(t, blockSpec(1))
	probeBoth(t, "--tcp", dev.Addr)

	code, out, errOut := runCmd(t, "probe", "--tcp", dev.Addr, "--table", "coil", "--start", "0", "--count", "4", "--json")
	if code != exitOK || strings.Join(strings.Fields(out), "") != `[{"address":0,"value":false},{"address":1,"value":true},{"address":2,"value":false},{"address":3,"value":true}]` {
		t.Errorf("coils: exit %d %s %s", code, out, errOut)
	}
	// A silent unit: exit 1 and a hint.
	code, _, errOut = runCmd(t, "probe", "--tcp", dev.Addr, "--unit", "7", "--timeout", "200ms")
	if code != exitFail || !strings.Contains(errOut, "nothing answered") {
		t.Errorf("silent unit: exit %d %s", code, errOut)
	}
}

func TestProbeRTU(t *testing.T) {
	dev := testpeer.StartRTU(t, blockSpec(1), testpeer.LineOptions{})
	probeBoth(t, "--rtu", dev.Path, "--baud", "19200")
}

func TestProbeUsage(t *testing.T) {
	for _, args := range [][]string{
		{"probe"},
		{"probe", "--tcp", "127.0.0.1:1", "--rtu", "/dev/null"},
		{"probe", "--tcp", "127.0.0.1:1", "--table", "coils2"},
		{"probe", "--tcp", "127.0.0.1:1", "--scan", "--units", "5-1"},
		{"probe", "--tcp", "127.0.0.1:1", "--start", "65535", "--count", "2"},
	} {
		if code, _, errOut := runCmd(t, args...); code != exitUsage || errOut == "" {
			t.Errorf("%v: exit %d %q", args, code, errOut)
		}
	}
}

// TestScanFindsServedUnits: --scan lists exactly the unit ids the device
// serves, the one answering only with an exception included.
func TestScanFindsServedUnits(t *testing.T) {
	spec := func() testpeer.DeviceSpec {
		s := testpeer.DeviceSpec{
			Units:      map[byte]testpeer.UnitSpec{2: {}, 5: {}, 9: {}},
			Silent:     []byte{3},
			Exceptions: []testpeer.ExceptionRange{{Unit: 9, Table: testpeer.Holding, Start: 0, End: 10, Code: 2}},
		}
		return s
	}
	t.Run("tcp", func(t *testing.T) {
		dev := testpeer.StartTCP(t, spec())
		code, out, errOut := runCmd(t, "probe", "--tcp", dev.Addr, "--scan", "--units", "1-10", "--timeout", "150ms", "--json")
		if code != exitOK || strings.TrimSpace(out) != `{"units": [2, 5, 9]}` {
			t.Errorf("exit %d: %s %s", code, out, errOut)
		}
	})
	t.Run("rtu", func(t *testing.T) {
		dev := testpeer.StartRTU(t, spec(), testpeer.LineOptions{})
		began := time.Now()
		code, out, errOut := runCmd(t, "probe", "--rtu", dev.Path, "--baud", "19200", "--scan", "--units", "1-10")
		t.Logf("scan of 10 ids on the paced line: %v\n%s", time.Since(began), out)
		if code != exitOK || !strings.Contains(out, "3 of 10 unit id(s) answered") ||
			!strings.Contains(out, "unit   2  answers\n") || !strings.Contains(out, "unit   9  answers with exception 2") {
			t.Errorf("exit %d: %s %s", code, out, errOut)
		}
		// One request per id, no retries, nothing else on the line.
		if st := dev.Line(); st.Requests != 10 || st.Replies != 3 {
			t.Errorf("line: %+v, want 10 requests and 3 replies", st)
		}
	})
}

// TestPortsRuns: on any machine, with or without adapters, exit 0.
func TestPortsRuns(t *testing.T) {
	code, out, errOut := runCmd(t, "ports")
	if code != exitOK || !(strings.Contains(out, "port ") || strings.Contains(out, "no USB serial adapters found")) {
		t.Errorf("ports: exit %d %q %q", code, out, errOut)
	}
	code, out, _ = runCmd(t, "ports", "--json")
	var v struct{ Ports []portInfo }
	if code != exitOK || json.Unmarshal([]byte(out), &v) != nil {
		t.Errorf("ports --json: exit %d %q", code, out)
	}
	t.Logf("gateway ports:\n%s", out)
}
