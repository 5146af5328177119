package simulator

import (
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"math"
	"net"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/simonvetter/modbus"
)

// Reads must lie inside one span; gaps inside a span read as 0, anything
// else is exception 2.
func TestSpans(t *testing.T) {
	sim, _ := startSim(t)
	c := dial(t, sim.Addr())
	type read struct {
		unit       uint8
		table      Table
		addr, n    uint16
		ok         bool
		zeroFromTo [2]int // registers [from, to) of the reply that must be 0
	}
	for _, r := range []read{
		{1, Input, 0, 66, true, [2]int{8, 10}},   // a planner's merged read over gaps
		{1, Input, 46, 4, true, [2]int{0, 4}},    // a gap alone
		{1, Input, 62, 4, true, [2]int{}},        // the last point
		{1, Input, 66, 1, false, [2]int{}},       // just past the span
		{1, Input, 60, 10, false, [2]int{}},      // straddles the end
		{1, Input, 1000, 1, false, [2]int{}},     // far outside
		{1, Holding, 0, 1, false, [2]int{}},      // the meter's holding registers start at 100
		{1, Holding, 99, 2, false, [2]int{}},     // straddles the start
		{1, Holding, 100, 25, true, [2]int{}},    // the whole span
		{1, Holding, 125, 1, false, [2]int{}},    // just past it
		{1, Coil, 0, 1, false, [2]int{}},         // the meter has no coils
		{2, Holding, 5, 5, true, [2]int{0, 5}},   // gap after the alarm word
		{2, Holding, 0, 33, true, [2]int{5, 10}}, // the whole span
		{2, Holding, 33, 1, false, [2]int{}},
		{2, Input, 0, 1, false, [2]int{}}, // the drive has no input registers
		{2, DiscreteInput, 0, 4, true, [2]int{1, 3}},
		{2, DiscreteInput, 4, 1, false, [2]int{}},
		{2, Coil, 0, 2, true, [2]int{}},
		{2, Coil, 1, 2, false, [2]int{}},
	} {
		regs, err := readRange(c, r.unit, r.table, r.addr, r.n)
		switch {
		case r.ok && err != nil:
			t.Errorf("unit %d %s %d+%d: %v", r.unit, r.table, r.addr, r.n, err)
		case !r.ok && !errors.Is(err, modbus.ErrIllegalDataAddress):
			t.Errorf("unit %d %s %d+%d: err %v, want exception 2 (illegal data address)", r.unit, r.table, r.addr, r.n, err)
		case r.ok:
			for i := r.zeroFromTo[0]; i < r.zeroFromTo[1]; i++ {
				if regs[i] != 0 {
					t.Errorf("unit %d %s %d: gap reads %#04x, want 0", r.unit, r.table, int(r.addr)+i, regs[i])
				}
			}
		}
	}
}

// A unit id that is not in the map gets exception 0x0B, for reads and writes.
func TestUnknownUnit(t *testing.T) {
	sim, logs := startSim(t)
	c := dial(t, sim.Addr())
	for _, unit := range []uint8{0, 3, 247, 255} {
		if err := c.SetUnitId(unit); err != nil {
			t.Fatal(err)
		}
		if _, err := c.ReadRegisters(0, 1, modbus.HOLDING_REGISTER); !errors.Is(err, modbus.ErrGWTargetFailedToRespond) {
			t.Errorf("unit %d read: err %v, want exception 0x0B", unit, err)
		}
		if err := c.WriteCoil(0, true); !errors.Is(err, modbus.ErrGWTargetFailedToRespond) {
			t.Errorf("unit %d write: err %v, want exception 0x0B", unit, err)
		}
	}
	if !strings.Contains(logs.String(), "unknown unit") {
		t.Errorf("no debug log line for the unknown unit:\n%s", logs)
	}
}

// Writes to writable points are stored and read back; any other write is
// exception 2 and changes nothing.
func TestWrites(t *testing.T) {
	sim, _ := startSim(t)
	c := dial(t, sim.Addr())
	sim.Freeze(5 * time.Second)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	refused := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, modbus.ErrIllegalDataAddress) {
			t.Errorf("%s: err %v, want exception 2", what, err)
		}
	}
	check := func(name string, want any) {
		t.Helper()
		if got := readPoint(t, c, point(t, name)); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}

	must(c.SetUnitId(unitPumpDrive))
	must(c.WriteRegister(30, 1234)) // FC 6
	check("speed_setpoint", uint16(1234))
	// 6.25 is 0x40C80000; stored low word first (CDAB).
	must(c.WriteRegisters(31, []uint16{0x0000, 0x40C8})) // FC 16
	check("pressure_setpoint", float32(6.25))
	pi := math.Float32bits(3.5)
	must(c.WriteRegisters(30, []uint16{900, uint16(pi), uint16(pi >> 16)})) // two points in one request
	check("speed_setpoint", uint16(900))
	check("pressure_setpoint", float32(3.5))
	must(c.WriteCoil(0, false)) // FC 5
	check("pump_enable", false)
	must(c.WriteCoils(0, []bool{true})) // FC 15
	check("pump_enable", true)

	refused("read-only measurement", c.WriteRegister(0, 1))
	refused("read-only alarm word", c.WriteRegister(4, 0))
	refused("gap inside the span", c.WriteRegister(5, 1))
	refused("outside the map", c.WriteRegister(33, 1))
	refused("gap then setpoint", c.WriteRegisters(29, []uint16{1, 2}))
	refused("setpoints then outside", c.WriteRegisters(30, []uint16{7, 7, 7, 7}))
	check("speed_setpoint", uint16(900)) // the refused writes changed nothing
	refused("read-only coil", c.WriteCoil(1, true))
	refused("writable then read-only coil", c.WriteCoils(0, []bool{false, true}))
	check("pump_enable", true)
	check("beacon", beacon(5*time.Second))

	must(c.SetUnitId(unitPowerMeter))
	must(c.WriteRegister(124, 200))
	check("ct_ratio", uint16(200))
	refused("fixed serial number", c.WriteRegister(100, 0x4142))
	check("serial_abcd", serialNumber)

	// Stored values belong to one simulator: a new one starts from the defaults.
	sim2, _ := startSim(t)
	c2 := dial(t, sim2.Addr())
	if got := readPoint(t, c2, point(t, "speed_setpoint")); got != uint16(1500) {
		t.Errorf("a new simulator's speed_setpoint = %v, want 1500", got)
	}
}

// Several clients at once, reading and writing on the real clock: run with
// -race. Each response must still be internally consistent.
func TestConcurrentClients(t *testing.T) {
	sim, _ := startSim(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for i := range 4 {
		c := dial(t, sim.Addr())
		wg.Go(func() {
			for j := range 50 {
				if err := c.SetUnitId(unitPowerMeter); err != nil {
					errs <- err
					return
				}
				regs, err := c.ReadRegisters(20, 8, modbus.INPUT_REGISTER)
				if err != nil {
					errs <- err
					return
				}
				a, _ := decode(point(t, "counter_abcd"), regs[0:2])
				d, _ := decode(point(t, "counter_dcba"), regs[6:8])
				if a != d {
					errs <- errors.New("torn counter group")
					return
				}
				if err := c.SetUnitId(unitPumpDrive); err != nil {
					errs <- err
					return
				}
				if err := c.WriteRegister(30, uint16(i*100+j)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// Close stops serving, releases the port, and leaves no goroutine behind.
func TestClose(t *testing.T) {
	before := runtime.NumGoroutine()
	sim, err := New(Config{Listen: "127.0.0.1:0"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	addr := sim.Addr()
	var clients []*modbus.ModbusClient
	for range 3 {
		c := dial(t, addr)
		if err := c.SetUnitId(unitPowerMeter); err != nil {
			t.Fatal(err)
		}
		if _, err := c.ReadRegisters(0, 2, modbus.INPUT_REGISTER); err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	if err := sim.Close(); err != nil {
		t.Fatal(err)
	}
	if err := sim.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := clients[0].ReadRegisters(0, 2, modbus.INPUT_REGISTER); err == nil {
		t.Error("read after Close succeeded")
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("port not released: %v", err)
	}
	l.Close()
	for _, c := range clients {
		c.Close()
	}
	// The library's connection goroutines return on their own once Stop has
	// closed their sockets; give them a moment, without asserting wall time.
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<16)
		t.Errorf("%d goroutines after Close, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
	if err := sim.Start(); err == nil {
		t.Error("Start after Close succeeded")
	}
	// A request that slipped past Stop is refused rather than served.
	if _, err := (handler{sim}).HandleInputRegisters(&modbus.InputRegistersRequest{UnitId: 1, Quantity: 1}); err != modbus.ErrServerDeviceFailure {
		t.Errorf("handler after Close: err %v, want server device failure", err)
	}
}

func TestLifecycleErrors(t *testing.T) {
	sim, err := New(Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sim.host != "127.0.0.1" || sim.port != 5020 {
		t.Errorf("default listen = %s:%d, want %s", sim.host, sim.port, DefaultListen)
	}
	if err := sim.Close(); err != nil {
		t.Errorf("Close before Start: %v", err)
	}
	for _, listen := range []string{"5020", "127.0.0.1:99999", "127.0.0.1:modbus", "127.0.0.1:-1"} {
		if _, err := New(Config{Listen: listen}, nil); err == nil {
			t.Errorf("listen %q accepted", listen)
		}
	}

	started, _ := startSim(t)
	if err := started.Start(); err == nil {
		t.Error("second Start succeeded")
	}

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	sim, err = New(Config{Listen: busy.Addr().String()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start(); !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("Start on a busy port: err %v, want EADDRINUSE", err)
	}
	if sim.Addr() != "" {
		t.Errorf("Addr after a failed Start = %q, want empty", sim.Addr())
	}
}

// The library's own log lines reach the injected slog logger at their level
// instead of stdout. A malformed request makes it log a protocol error.
func TestLibraryLogsViaSlog(t *testing.T) {
	sim, logs := startSim(t)
	conn, err := net.Dial("tcp", sim.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// MBAP: transaction 1, protocol 0, length 5, unit 1; FC 3 with a 3-byte
	// payload where 4 are required.
	frame := binary.BigEndian.AppendUint16(nil, 1)
	frame = append(frame, 0, 0, 0, 5, 1, 3, 0, 0, 1)
	if _, err := conn.Write(frame); err != nil {
		t.Fatal(err)
	}
	// The library closes the link on a protocol error.
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(conn); err != nil {
		t.Fatalf("waiting for the server to hang up: %v", err)
	}
	if out := logs.String(); !strings.Contains(out, "level=WARN msg=\"protocol error, closing link") {
		t.Errorf("no WARN protocol error in the log:\n%s", out)
	}
}

func TestLibLogLevels(t *testing.T) {
	logs := &logBuffer{}
	w := libLog{slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	for _, line := range []string{
		"modbus-server(x) [info]: hello\n",
		"modbus-server(x) [error]: broken\n",
		"no brackets at all\n",
	} {
		if n, err := w.Write([]byte(line)); err != nil || n != len(line) {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	for _, want := range []string{
		`level=INFO msg=hello component=modbus-server(x)`,
		`level=ERROR msg=broken component=modbus-server(x)`,
		`level=INFO msg="no brackets at all" component=""`,
	} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
}
