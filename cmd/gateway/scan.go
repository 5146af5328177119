package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/goburrow/modbus"

	"github.com/fieldbridge/fieldbridge/adapters/modbus/transport"
)

// scanResult is what one unit id did with the scan's request.
type scanResult uint8

const (
	scanSilent    scanResult = iota // no reply: nobody there
	scanData                        // a normal reply
	scanException                   // a Modbus exception: somebody there
	scanCorrupt                     // bytes that were not a valid reply
)

// runScan tries every unit id with one short read (one register or bit at
// start) and lists those that answer; an exception counts as an answer.
// The serial transport keeps the line silent for t3.5 before each request,
// as a running bus does, so a scan never runs frames together.
func runScan(link probeLink, packager func(byte) modbus.Packager, where string, tf tableFlag, start uint16, ids []int, asJSON bool, stdout, stderr io.Writer) int {
	progress := isTerminal(stderr)
	began := time.Now()
	var found, corrupt []int
	notes := map[int]string{}
	for i, id := range ids {
		if progress {
			fmt.Fprintf(stderr, "\rscanning %s: unit %d (%d of %d), %d found ", where, id, i+1, len(ids), len(found))
		}
		c := modbus.NewClient2(packager(byte(id)), link)
		_, err := tf.read(c, start, 1)
		switch r, note := classifyScan(err); r {
		case scanData, scanException:
			found = append(found, id)
			notes[id] = note
		case scanCorrupt:
			corrupt = append(corrupt, id)
			notes[id] = note
		default:
			if note != "" { // the link itself failed: no point going on
				if progress {
					fmt.Fprintln(stderr)
				}
				fmt.Fprintf(stderr, "gateway probe --scan: %s: %s\n", where, note)
				return exitFail
			}
		}
	}
	took := time.Since(began)
	if progress {
		fmt.Fprint(stderr, "\r\033[K")
	}
	if asJSON {
		fmt.Fprintf(stdout, "{\"units\": %s", jsonInts(found))
		if len(corrupt) > 0 {
			fmt.Fprintf(stdout, ", \"corrupt_replies\": %s", jsonInts(corrupt))
		}
		fmt.Fprintln(stdout, "}")
		return exitOK
	}
	fmt.Fprintf(stdout, "%s: %d of %d unit id(s) answered (%s %d, %s)\n", where, len(found), len(ids), tf.name, start, took.Round(time.Millisecond))
	for _, id := range found {
		fmt.Fprintf(stdout, "  unit %3d  %s\n", id, notes[id])
	}
	for _, id := range corrupt {
		fmt.Fprintf(stdout, "  unit %3d  %s\n", id, notes[id])
	}
	return exitOK
}

// classifyScan sorts the outcome of a scan request; the note says what was
// seen. A silent id has no note unless the link itself failed.
func classifyScan(err error) (scanResult, string) {
	var me *modbus.ModbusError
	switch {
	case err == nil:
		return scanData, "answers"
	case errors.As(err, &me):
		if me.ExceptionCode == 10 || me.ExceptionCode == 11 {
			return scanSilent, "" // a TCP gateway saying nobody answered behind it
		}
		return scanException, fmt.Sprintf("answers with exception %d (present; try another --table or --start to read it)", me.ExceptionCode)
	case errors.Is(err, transport.ErrTimeout):
		return scanSilent, ""
	case errors.Is(err, transport.ErrFrame):
		return scanCorrupt, "corrupt reply (wrong baud rate or parity, or two devices with this id?)"
	case errors.Is(err, transport.ErrClosed), errors.Is(err, transport.ErrNoResponse):
		return scanSilent, ""
	}
	var ioErr interface{ Timeout() bool }
	if errors.As(err, &ioErr) && ioErr.Timeout() {
		return scanSilent, ""
	}
	return scanSilent, err.Error()
}

// parseUnits reads "1-247" or "1,2,10-20".
func parseUnits(s string) ([]int, error) {
	var out []int
	seen := map[int]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, err1 := strconv.Atoi(lo)
		b := a
		var err2 error
		if isRange {
			b, err2 = strconv.Atoi(hi)
		}
		if err1 != nil || err2 != nil || a < 0 || b > 255 || a > b {
			return nil, fmt.Errorf("--units %q: write ids 0–255 as 1-247 or 1,2,10-20", s)
		}
		for id := a; id <= b; id++ {
			if !seen[id] {
				seen[id] = true
				out = append(out, id)
			}
		}
	}
	return out, nil
}

func jsonInts(v []int) string {
	parts := make([]string, len(v))
	for i, n := range v {
		parts[i] = strconv.Itoa(n)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// isTerminal reports whether w is a terminal (progress lines go there, not
// into files and pipes).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
