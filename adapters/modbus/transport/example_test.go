package transport_test

import (
	"errors"
	"log/slog"
	"time"

	"github.com/goburrow/modbus"

	"github.com/fieldbridge/fieldbridge/adapters/modbus/transport"
)

// One transport per bus, one goburrow packager per device on it.
func ExampleNewSerial() {
	bus, err := transport.NewSerial(transport.SerialConfig{
		Device: "/dev/ttyUSB0", Baud: 9600, Parity: 'E', Timeout: 500 * time.Millisecond,
		Logger: slog.Default().With("bus", "line1"),
	})
	if err != nil {
		panic(err) // a config error: report it at load time
	}
	defer bus.Close()

	meter := modbus.NewRTUClientHandler("")
	meter.SlaveId = 3
	client := modbus.NewClient2(meter, bus)

	bus.SetTimeout(300 * time.Millisecond) // this device answers fast
	regs, err := client.ReadHoldingRegisters(0, 10)
	var exc *modbus.ModbusError
	switch {
	case err == nil:
		_ = regs
	case errors.As(err, &exc):
		// The device answered with an exception: the bus is fine.
	case errors.Is(err, transport.ErrTimeout), errors.Is(err, transport.ErrFrame):
		// The device is silent or the line is noisy: back off this device.
	case errors.Is(err, transport.ErrClosed):
		// Shutting down.
	default:
		// The port itself failed (USB adapter unplugged): back off the bus;
		// the next Send reopens it.
	}
}

func ExampleNewTCP() {
	plc, err := transport.NewTCP(transport.TCPConfig{Address: "192.0.2.10:502", Timeout: time.Second})
	if err != nil {
		panic(err)
	}
	defer plc.Close()
	unit := modbus.NewTCPClientHandler("")
	unit.SlaveId = 1
	client := modbus.NewClient2(unit, plc)
	before := plc.Stats()
	client.ReadInputRegisters(0, 4)
	after := plc.Stats()
	_ = after.BytesWritten + after.BytesRead - before.BytesWritten - before.BytesRead // bytes on the wire this cycle
}
