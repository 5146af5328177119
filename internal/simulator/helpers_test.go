package simulator

import (
	"bytes"
	"io"
	"log"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/simonvetter/modbus"
)

// logBuffer collects log output safely: the library's connection goroutines
// may still log a line after a test has returned, when t.Log would panic.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startSim starts a simulator on a free loopback port, closed at cleanup.
func startSim(t *testing.T) (*Simulator, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	sim, err := New(Config{Listen: "127.0.0.1:0"},
		slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := sim.Close(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("simulator log:\n%s", logs)
		}
	})
	return sim, logs
}

// dial connects simonvetter/modbus's client to addr, closed at cleanup.
func dial(t *testing.T, addr string) *modbus.ModbusClient {
	t.Helper()
	c, err := modbus.NewClient(&modbus.ClientConfiguration{
		URL:     "tcp://" + addr,
		Timeout: 5 * time.Second,
		Logger:  log.New(io.Discard, "", 0),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readRaw reads a point's registers (a bit as 0 or 1) over the wire.
func readRaw(c *modbus.ModbusClient, p Point) ([]uint16, error) {
	return readRange(c, p.UnitID, p.Table, p.Address, uint16(p.Registers()))
}

// readRange reads n registers or bits (as 0 or 1) of a unit's table.
func readRange(c *modbus.ModbusClient, unit uint8, table Table, addr, n uint16) ([]uint16, error) {
	if err := c.SetUnitId(unit); err != nil {
		return nil, err
	}
	var bits []bool
	var err error
	switch table {
	case Holding:
		return c.ReadRegisters(addr, n, modbus.HOLDING_REGISTER)
	case Input:
		return c.ReadRegisters(addr, n, modbus.INPUT_REGISTER)
	case Coil:
		bits, err = c.ReadCoils(addr, n)
	case DiscreteInput:
		bits, err = c.ReadDiscreteInputs(addr, n)
	}
	regs := make([]uint16, len(bits))
	for i, b := range bits {
		if b {
			regs[i] = 1
		}
	}
	return regs, err
}

// readPoint reads and decodes one point with the tests' own decoder.
func readPoint(t *testing.T, c *modbus.ModbusClient, p Point) any {
	t.Helper()
	regs, err := readRaw(c, p)
	if err != nil {
		t.Fatalf("%s: unit %d %s %d: %v", p.Name, p.UnitID, p.Table, p.Address, err)
	}
	v, err := decode(p, regs)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// point returns the named point of Map.
func point(t *testing.T, name string) Point {
	t.Helper()
	for _, p := range Map() {
		if p.Name == name {
			return p
		}
	}
	t.Fatalf("no point %q", name)
	return Point{}
}

// expected is the logical value the simulator should serve for a point at
// time at, before any write.
func expected(name string, at time.Duration) any {
	for _, e := range plant.entries {
		if e.Name == name {
			if e.Writable {
				return e.initial
			}
			return e.value(at)
		}
	}
	return nil
}
