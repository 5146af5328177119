package testpeer

import (
	"bufio"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

//go:embed py/device.py
var deviceScript []byte

// Table names accepted in DeviceSpec, ExceptionRange, Set and SetBits.
const (
	Holding  = "holding"
	Input    = "input"
	Coil     = "coil"
	Discrete = "discrete"
)

// DeviceSpec describes the content and behaviour of a simulated Modbus
// device (one server that answers for several unit ids).
type DeviceSpec struct {
	// Units maps a unit id to its register content. A unit id that is not
	// here never answers, like one in Silent.
	Units map[byte]UnitSpec
	// Silent lists unit ids that never answer: no reply at all on the
	// wire, not an exception.
	Silent []byte
	// Exceptions lists address ranges that answer with an exception.
	Exceptions []ExceptionRange
}

// UnitSpec is the register content of one unit id. Addresses are protocol
// addresses (zero-based); every address 0..65535 exists and unspecified
// ones read as 0 or false.
type UnitSpec struct {
	Holding, Input  map[uint16]uint16
	Coils, Discrete map[uint16]bool
}

// ExceptionRange makes any request touching Start..End (inclusive) of a
// table of a unit answer with exception Code. It applies to reads and
// writes alike (function codes 1-6, 15, 16, 22, 23).
type ExceptionRange struct {
	Unit       byte
	Table      string // Holding, Input, Coil or Discrete
	Start, End uint16
	Code       byte // e.g. 2 illegal data address, 4 device failure, 6 busy
}

// Device is a running pymodbus field device. Addr is set for a TCP device,
// Path for an RTU device.
type Device struct {
	// Addr is "127.0.0.1:port" of a Modbus TCP device.
	Addr string
	// Path is the serial port the gateway opens for an RTU device.
	Path string

	tb   testing.TB
	py   *pyDevice
	line *rtuLine // nil for TCP
}

// StartTCP starts a pymodbus Modbus TCP server on 127.0.0.1 and a free port
// (bound by the server itself, port 0, so there is no race).
func StartTCP(tb testing.TB, spec DeviceSpec) *Device {
	tb.Helper()
	py, err := startPyDevice(tb, "pymodbus tcp device", spec, "--mode", "tcp", "--host", "127.0.0.1", "--port", "0")
	if err != nil {
		tb.Fatalf("testpeer: modbus tcp device: %v", err)
	}
	return &Device{Addr: hostPort(py.port), tb: tb, py: py}
}

// Set writes register values (table Holding or Input) starting at addr of
// a unit, and returns once the device applied them. A unit that was not in
// the spec is created and starts to answer.
func (d *Device) Set(unit byte, table string, addr uint16, values ...uint16) {
	d.tb.Helper()
	if table != Holding && table != Input {
		d.tb.Fatalf("testpeer: Set: table %q is not %q or %q (use SetBits)", table, Holding, Input)
	}
	if _, err := d.py.call(map[string]any{"op": "set", "unit": unit, "table": table, "addr": addr, "values": values}); err != nil {
		d.tb.Fatalf("testpeer: set unit %d %s %d: %v", unit, table, addr, err)
	}
}

// SetBits writes bit values (table Coil or Discrete) like Set.
func (d *Device) SetBits(unit byte, table string, addr uint16, values ...bool) {
	d.tb.Helper()
	if table != Coil && table != Discrete {
		d.tb.Fatalf("testpeer: SetBits: table %q is not %q or %q (use Set)", table, Coil, Discrete)
	}
	if _, err := d.py.call(map[string]any{"op": "set", "unit": unit, "table": table, "addr": addr, "values": values}); err != nil {
		d.tb.Fatalf("testpeer: set unit %d %s %d: %v", unit, table, addr, err)
	}
}

// SetSilent makes a unit stop answering (true) or answer again (false).
func (d *Device) SetSilent(unit byte, silent bool) {
	d.tb.Helper()
	if _, err := d.py.call(map[string]any{"op": "silent", "unit": unit, "silent": silent}); err != nil {
		d.tb.Fatalf("testpeer: set unit %d silent=%v: %v", unit, silent, err)
	}
}

// Requests returns how many well-formed requests (valid frame and CRC) the
// device received for a unit since it started, silent units included.
func (d *Device) Requests(unit byte) int {
	d.tb.Helper()
	reply, err := d.py.call(map[string]any{"op": "requests"})
	if err != nil {
		d.tb.Fatalf("testpeer: request counts: %v", err)
	}
	return reply.Requests[strconv.Itoa(int(unit))]
}

// specJSON is the wire form of DeviceSpec read by device.py.
type specJSON struct {
	Units      map[string]unitJSON `json:"units"`
	Silent     []int               `json:"silent"`
	Exceptions []exceptionJSON     `json:"exceptions"`
}

type unitJSON struct {
	Holding  map[string]uint16 `json:"holding,omitempty"`
	Input    map[string]uint16 `json:"input,omitempty"`
	Coil     map[string]bool   `json:"coil,omitempty"`
	Discrete map[string]bool   `json:"discrete,omitempty"`
}

type exceptionJSON struct {
	Unit  int    `json:"unit"`
	Table string `json:"table"`
	Start int    `json:"start"`
	End   int    `json:"end"`
	Code  int    `json:"code"`
}

// encodeSpec validates spec and returns its wire form.
func encodeSpec(spec DeviceSpec) ([]byte, error) {
	w := specJSON{Units: map[string]unitJSON{}, Silent: []int{}, Exceptions: []exceptionJSON{}}
	for unit, u := range spec.Units {
		w.Units[strconv.Itoa(int(unit))] = unitJSON{
			Holding: keyed(u.Holding), Input: keyed(u.Input),
			Coil: keyed(u.Coils), Discrete: keyed(u.Discrete),
		}
	}
	for _, unit := range spec.Silent {
		w.Silent = append(w.Silent, int(unit))
	}
	for i, e := range spec.Exceptions {
		switch e.Table {
		case Holding, Input, Coil, Discrete:
		default:
			return nil, fmt.Errorf("exception range %d: unknown table %q", i, e.Table)
		}
		if e.End < e.Start {
			return nil, fmt.Errorf("exception range %d: end %d before start %d", i, e.End, e.Start)
		}
		if e.Code == 0 || e.Code > 0x7f {
			return nil, fmt.Errorf("exception range %d: code %d out of 1..127", i, e.Code)
		}
		w.Exceptions = append(w.Exceptions, exceptionJSON{int(e.Unit), e.Table, int(e.Start), int(e.End), int(e.Code)})
	}
	return json.Marshal(w)
}

func keyed[V any](m map[uint16]V) map[string]V {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]V, len(m))
	for k, v := range m {
		out[strconv.Itoa(int(k))] = v
	}
	return out
}

// pyDevice is the device.py process and its control channel.
type pyDevice struct {
	proc   *process
	port   int // TCP port, 0 for RTU
	stdin  io.WriteCloser
	events chan pyReply // JSON lines from stdout, in order

	mu     sync.Mutex // one command at a time
	nextID int
}

// pyReply is one JSON line printed by device.py.
type pyReply struct {
	Event    string         `json:"event"`
	Port     int            `json:"port"`
	ID       int            `json:"id"`
	OK       bool           `json:"ok"`
	Error    string         `json:"error"`
	Requests map[string]int `json:"requests"`
	// Values answers "get"; Functions answers "functions".
	Values    []any `json:"values"`
	Functions []int `json:"functions"`
}

// startPyDevice writes the script and spec to a temp dir, starts the
// script with args and waits for its ready line.
func startPyDevice(tb testing.TB, name string, spec DeviceSpec, args ...string) (*pyDevice, error) {
	tb.Helper()
	python := lookPython(tb)
	specData, err := encodeSpec(spec)
	if err != nil {
		return nil, fmt.Errorf("device spec: %w", err)
	}
	dir := tb.TempDir()
	script := filepath.Join(dir, "device.py")
	specPath := filepath.Join(dir, "spec.json")
	if err := os.WriteFile(script, deviceScript, 0o644); err != nil {
		return nil, fmt.Errorf("write device script: %w", err)
	}
	if err := os.WriteFile(specPath, specData, 0o644); err != nil {
		return nil, fmt.Errorf("write device spec: %w", err)
	}

	cmd := exec.Command(python, append([]string{"-u", script, "--spec", specPath}, args...)...)
	cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("device stdin: %w", err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("device stdout: %w", err)
	}
	cmd.Stdout = outW
	proc, err := startProcess(name, cmd)
	outW.Close()
	if err != nil {
		outR.Close()
		return nil, err
	}
	d := &pyDevice{proc: proc, stdin: stdin, events: make(chan pyReply, 16)}
	readerDone := make(chan struct{})
	go d.readStdout(outR, readerDone)

	logOutputOnFailure(tb, name, proc.out.String)
	tb.Cleanup(func() {
		// Closing stdin is the script's stop signal; SIGTERM after a grace.
		_ = stdin.Close()
		select {
		case <-proc.done:
		case <-time.After(2 * time.Second):
			proc.stop(2 * time.Second)
		}
		<-readerDone
	})

	select {
	case ev := <-d.events:
		if ev.Event != "ready" {
			return nil, fmt.Errorf("device said %+v before ready", ev)
		}
		d.port = ev.Port
		return d, nil
	case <-proc.done:
		return nil, fmt.Errorf("device did not start: %w", proc.exitError())
	case <-time.After(startTimeout):
		return nil, fmt.Errorf("device not ready after %v", startTimeout)
	}
}

// readStdout turns stdout lines into events; other lines go to the log.
func (d *pyDevice) readStdout(r *os.File, done chan<- struct{}) {
	defer close(done)
	defer r.Close()
	defer close(d.events)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var ev pyReply
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			fmt.Fprintf(d.proc.out, "stdout: %s\n", sc.Bytes())
			continue
		}
		select {
		case d.events <- ev:
		default: // nobody will ever read it: keep it for the log
			fmt.Fprintf(d.proc.out, "unclaimed: %s\n", sc.Bytes())
		}
	}
}

// call sends one command and waits for its acknowledgement.
func (d *pyDevice) call(cmd map[string]any) (pyReply, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.nextID++
	id := d.nextID
	cmd["id"] = id
	line, err := json.Marshal(cmd)
	if err != nil {
		return pyReply{}, fmt.Errorf("encode command: %w", err)
	}
	if _, err := d.stdin.Write(append(line, '\n')); err != nil {
		return pyReply{}, fmt.Errorf("send command to device: %w", err)
	}
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for {
		select {
		case ev, ok := <-d.events:
			if !ok {
				<-d.proc.done
				return pyReply{}, d.proc.exitError()
			}
			if ev.ID != id {
				continue // a late answer to an abandoned call
			}
			if !ev.OK {
				return ev, fmt.Errorf("device refused %s: %s", line, ev.Error)
			}
			return ev, nil
		case <-timeout.C:
			return pyReply{}, fmt.Errorf("no answer from device to %s", line)
		}
	}
}
