// Package transport moves Modbus frames between the gateway and its field devices.
//
// It provides three byte transports, one instance per bus, each implementing
// goburrow/modbus's Transporter so that it plugs into the client with
// modbus.NewClient2:
//
//   - TCP: Modbus TCP (MBAP header) to a device or gateway on port 502.
//   - Serial: Modbus RTU on an RS-485 or RS-232 serial port (go.bug.st/serial).
//   - RTUOverTCP: raw RTU frames on a TCP socket to a serial device server
//     (Moxa NPort, USR-TCP232, …) in "TCP server / raw socket" mode.
//
// The handlers of goburrow/modbus (NewTCPClientHandler(""), NewRTUClientHandler(""))
// are used only as Packagers, one per device, because their transporters lose
// frame synchronisation: the RTU one reads exception replies one byte short and
// the TCP one keeps a socket whose next bytes may be a late reply. The transports
// here read exactly one reply per request, using the request to know what to
// expect, and on any doubt resynchronise the line (RTU) or drop the connection
// (TCP) before the next request.
//
//	tr, err := transport.NewSerial(transport.SerialConfig{Device: "/dev/ttyUSB0", Baud: 9600, Parity: 'E'})
//	if err != nil { ... }
//	defer tr.Close()
//	pk := modbus.NewRTUClientHandler("")
//	pk.SlaveId = 3
//	client := modbus.NewClient2(pk, tr)
//	regs, err := client.ReadHoldingRegisters(0, 10)
//
// # Concurrency
//
// A bus is owned by one goroutine: Send must not be called concurrently on one
// transport (a serial line is half-duplex; two requests in flight corrupt both).
// SetTimeout is called by that goroutine between requests. Close and Stats may be
// called from any goroutine; Close makes a pending Send return ErrClosed.
//
// # Errors
//
// Errors are classified with errors.Is: ErrTimeout (no or incomplete reply in
// time), ErrFrame (a reply arrived but was not a valid answer to the request),
// ErrClosed (the transport was closed) and ErrNoResponse (a broadcast was sent;
// no reply is expected). Any other error is a transport error (dial, open, read or
// write failed); the transport has then dropped its connection or port and the
// next Send reconnects. Backoff between attempts is the caller's job.
//
// # Timing
//
// RTU frames are delimited by silence. Before each request the RTU transports
// wait until the line has been silent for t3.5 (FrameGap) since the last byte sent
// or received, discarding anything that arrives meanwhile. The response timeout
// starts when the request has left the wire: the request's transmission time at
// the configured baud rate is added to it, because Write returns as soon as the
// bytes are in the kernel's buffer.
//
// USB serial adapters based on FTDI chips deliver received bytes in bursts set
// by their latency timer, 16 ms by default. Replies of known length are framed by
// their length and are not affected, but line-silence detection (draining after
// an error, replies to unusual function codes) works best with the timer set to
// 1 ms: echo 1 > /sys/bus/usb-serial/devices/ttyUSB0/latency_timer.
package transport
