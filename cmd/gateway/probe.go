package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/goburrow/modbus"

	"github.com/fieldbridge/fieldbridge/adapters/modbus/transport"
)

// `gateway probe` and `gateway probe --scan`: commissioning without a config
// file, through the gateway's own transports (the t3.5 pacing and framing of
// a running bus) and decoders.

// probeLink is what probe needs of a transport.
type probeLink interface {
	modbus.Transporter
	SetTimeout(time.Duration)
	Close() error
}

// linkFlags are the connection flags shared by probe and scan.
type linkFlags struct {
	tcp, rtu, rtuOverTCP string
	baud, stopBits       int
	parity               string
	timeout              time.Duration
}

func (lf *linkFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&lf.tcp, "tcp", "", "Modbus TCP device `host:port`")
	fs.StringVar(&lf.rtu, "rtu", "", "serial `port` for Modbus RTU, e.g. /dev/ttyUSB0")
	fs.StringVar(&lf.rtuOverTCP, "rtuovertcp", "", "serial device server `host:port` (RTU frames over TCP)")
	fs.IntVar(&lf.baud, "baud", 9600, "serial speed (--rtu; for --rtuovertcp, timing only)")
	fs.StringVar(&lf.parity, "parity", "E", "serial parity: N, E or O")
	fs.IntVar(&lf.stopBits, "stop-bits", 1, "serial stop bits: 1 or 2")
	fs.DurationVar(&lf.timeout, "timeout", 0, "reply timeout (default 1s; with --scan 100ms on serial, 300ms over TCP)")
}

// open builds the transport and its packager for one unit; describe names
// the link for messages.
func (lf *linkFlags) open(scan bool) (probeLink, func(unit byte) modbus.Packager, string, error) {
	n := 0
	for _, s := range []string{lf.tcp, lf.rtu, lf.rtuOverTCP} {
		if s != "" {
			n++
		}
	}
	if n != 1 {
		return nil, nil, "", errors.New("name one of --tcp HOST:PORT, --rtu DEVICE or --rtuovertcp HOST:PORT")
	}
	timeout := lf.timeout
	if timeout == 0 {
		switch {
		case !scan:
			timeout = time.Second
		case lf.rtu != "":
			timeout = 100 * time.Millisecond
		default:
			timeout = 300 * time.Millisecond
		}
	}
	rtuPackager := func(unit byte) modbus.Packager {
		h := modbus.NewRTUClientHandler("")
		h.SlaveId = unit
		return h
	}
	switch {
	case lf.tcp != "":
		t, err := transport.NewTCP(transport.TCPConfig{Address: withPort(lf.tcp), Timeout: timeout})
		return t, func(unit byte) modbus.Packager {
			h := modbus.NewTCPClientHandler("")
			h.SlaveId = unit
			return h
		}, "tcp " + withPort(lf.tcp), err
	case lf.rtuOverTCP != "":
		t, err := transport.NewRTUOverTCP(transport.RTUOverTCPConfig{Address: withPort(lf.rtuOverTCP), Timeout: timeout, Baud: lf.baud})
		return t, rtuPackager, "rtuovertcp " + withPort(lf.rtuOverTCP), err
	}
	parity := strings.ToUpper(lf.parity)
	if len(parity) != 1 || !strings.Contains("NEO", parity) {
		return nil, nil, "", fmt.Errorf("--parity %q: use N, E or O", lf.parity)
	}
	t, err := transport.NewSerial(transport.SerialConfig{Device: lf.rtu, Baud: lf.baud, Parity: parity[0], StopBits: lf.stopBits, Timeout: timeout})
	return t, rtuPackager, fmt.Sprintf("rtu %s %d 8%s%d", lf.rtu, lf.baud, parity, lf.stopBits), err
}

// withPort adds Modbus's port 502 to a bare host.
func withPort(addr string) string {
	if !strings.Contains(addr, ":") || strings.HasSuffix(addr, "]") {
		return addr + ":502"
	}
	return addr
}

// tableFlag is a Modbus table with its read function.
type tableFlag struct {
	name string
	bits bool
	read func(c modbus.Client, start, count uint16) ([]byte, error)
}

func parseTableFlag(s string) (tableFlag, error) {
	switch strings.ToLower(s) {
	case "holding", "":
		return tableFlag{"holding", false, modbus.Client.ReadHoldingRegisters}, nil
	case "input":
		return tableFlag{"input", false, modbus.Client.ReadInputRegisters}, nil
	case "coil", "coils":
		return tableFlag{"coil", true, modbus.Client.ReadCoils}, nil
	case "discrete":
		return tableFlag{"discrete", true, modbus.Client.ReadDiscreteInputs}, nil
	}
	return tableFlag{}, fmt.Errorf("--table %q: use holding, input, coil or discrete", s)
}

func init() {
	register(command{
		name:    "probe",
		summary: "read a register block and show every type and byte order; --scan finds unit ids",
		usage: `probe (--tcp HOST:PORT | --rtu DEVICE [--baud N --parity E --stop-bits 1] | --rtuovertcp HOST:PORT)
               [--unit N] [--table holding] [--start N] [--count N] [--timeout D] [--json]
       gateway probe ... --scan [--units 1-247] [--json]`,
		about: `Probe reads a block of registers from one device and prints, for every
register, every plausible interpretation side by side: uint16, int16, hex and
ASCII, and from that register on int32, uint32 and float32, int64, uint64 and
float64 in the four byte orders a config can name (ABCD, CDAB, BADC, DCBA; for
64-bit types CDAB is GHEFCDAB). The column that shows the number the device's
display shows names the type and order to write in the config. Implausible
floats (NaN, infinities, denormals, beyond 1e15) show as – (null in --json).
Coils and discrete inputs print as bits. No config file is needed, and nothing
else is touched.

With --scan it tries every unit id of --units with one short request (one
register at --start of --table; default timeout 100ms on serial, 300ms over
TCP) and lists the ids that answer; a Modbus exception counts as an answer. On
a serial line it keeps the line silent for t3.5 before each request, and shows
its progress on a terminal.

Exit codes: 0 read (or scanned), 1 the device did not answer or the link
failed (the message says what to check), 2 bad flags.`,
		run: cmdProbe,
	})
}

func cmdProbe(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("probe")
	var lf linkFlags
	lf.register(fs)
	unit := fs.Int("unit", 1, "unit id (slave address)")
	table := fs.String("table", "holding", "holding, input, coil or discrete")
	start := fs.Int("start", 0, "first 0-based address")
	count := fs.Int("count", 10, "registers (or bits) to read")
	asJSON := fs.Bool("json", false, "print JSON")
	scan := fs.Bool("scan", false, "find the unit ids that answer instead of reading a block")
	units := fs.String("units", "1-247", "unit ids to try with --scan, e.g. 1-247 or 1,2,10-20")
	if ok, code := parse(fs, args, stdout, stderr); !ok {
		return code
	}
	tf, err := parseTableFlag(*table)
	if err != nil {
		fmt.Fprintln(stderr, "gateway probe:", err)
		return exitUsage
	}
	link, packager, where, err := lf.open(*scan)
	if err != nil {
		fmt.Fprintln(stderr, "gateway probe:", err)
		return exitUsage
	}
	defer link.Close()
	if *scan {
		ids, err := parseUnits(*units)
		if err != nil {
			fmt.Fprintln(stderr, "gateway probe:", err)
			return exitUsage
		}
		return runScan(link, packager, where, tf, uint16(*start), ids, *asJSON, stdout, stderr)
	}
	perRequest := 125
	if tf.bits {
		perRequest = 2000
	}
	switch {
	case *unit < 0 || *unit > 255:
		fmt.Fprintf(stderr, "gateway probe: --unit %d is out of range 0–255\n", *unit)
		return exitUsage
	case *start < 0 || *count < 1 || *start+*count > 65536:
		fmt.Fprintf(stderr, "gateway probe: --start %d --count %d: the block must lie within 0..65535\n", *start, *count)
		return exitUsage
	case *count > 20*perRequest:
		fmt.Fprintf(stderr, "gateway probe: --count %d: at most %d\n", *count, 20*perRequest)
		return exitUsage
	}
	client := modbus.NewClient2(packager(byte(*unit)), link)
	// A block larger than one request allows is read in the largest pieces
	// a request allows.
	var data []byte
	for at := *start; at < *start+*count; at += perRequest {
		n := min(perRequest, *start+*count-at)
		part, err := tf.read(client, uint16(at), uint16(n))
		if err != nil {
			fmt.Fprintf(stderr, "gateway probe: %s unit %d %s %d..%d: %v\n", where, *unit, tf.name, at, at+n-1, describeProbeError(err))
			return exitFail
		}
		if tf.bits {
			data = appendBits(data, part, n)
		} else {
			data = append(data, part...)
		}
	}
	if tf.bits {
		bits := make([]bool, *count)
		for i := range bits {
			bits[i] = data[i] == 1
		}
		if *asJSON {
			writeBitsJSON(stdout, *start, bits)
		} else {
			fmt.Fprintf(stdout, "%s unit %d %s %d..%d\n\n", where, *unit, tf.name, *start, *start+*count-1)
			writeBitsText(stdout, *start, bits)
		}
		return exitOK
	}
	regs := make([]uint16, *count)
	for i := range regs {
		regs[i] = uint16(data[2*i])<<8 | uint16(data[2*i+1])
	}
	ds, err := newProbeDecoders()
	if err != nil {
		fmt.Fprintln(stderr, "gateway probe:", err)
		return exitFail
	}
	rows := ds.interpret(*start, regs)
	if *asJSON {
		writeProbeJSON(stdout, rows)
		return exitOK
	}
	fmt.Fprintf(stdout, "%s unit %d %s %d..%d (%d registers)\n\n", where, *unit, tf.name, *start, *start+*count-1, *count)
	writeProbeText(stdout, rows)
	return exitOK
}

// appendBits unpacks n bits of a coil reply, one byte (0/1) each.
func appendBits(dst, packed []byte, n int) []byte {
	for i := 0; i < n; i++ {
		dst = append(dst, packed[i/8]>>(i%8)&1)
	}
	return dst
}

// describeProbeError says what a failed read means for someone at the
// device with a manual in hand.
func describeProbeError(err error) string {
	var me *modbus.ModbusError
	switch {
	case errors.As(err, &me):
		hint := ""
		switch me.ExceptionCode {
		case 1:
			hint = " — the device does not support this table (try --table input or holding)"
		case 2:
			hint = " — no such register here (check the address; manuals often count from 1 or use 40001-style numbers)"
		}
		return fmt.Sprintf("modbus exception %d%s", me.ExceptionCode, hint)
	case errors.Is(err, transport.ErrTimeout):
		return fmt.Sprintf("%v — nothing answered (wrong unit id, baud rate, parity or wiring?)", err)
	case errors.Is(err, transport.ErrFrame):
		return fmt.Sprintf("%v — a reply arrived but was corrupt (wrong baud rate or parity, or two devices with the same unit id?)", err)
	}
	return err.Error()
}
