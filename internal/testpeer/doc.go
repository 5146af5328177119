// Package testpeer starts, controls and stops the real third-party programs
// that fieldbridge's integration tests talk to, so that those tests run
// against peers no one here wrote rather than mocks:
//
//   - StartTCP, StartRTU: a pymodbus 3.0.0 field device (Debian
//     python3-pymodbus, run by /usr/bin/python3) over Modbus TCP, or over
//     an RTU line that behaves like RS-485: two socat pty pairs with a
//     pacing relay between them (see StartRTU). Device content, silent
//     units and exception ranges come from a DeviceSpec and can be changed
//     while it runs (Set, SetBits, SetSilent); Get, GetBits and Functions
//     show what the device holds and which function codes it received, so
//     a test sees a write land (or a refused one leave nothing).
//   - StartMosquitto: mosquitto as the cloud broker, with its own config on
//     a free port, optional TLS (GenerateCerts) and passwords; Stop, Kill
//     and Start again on the same port for outage tests.
//   - Subscribe, Publish, PublishLines, StartPublisher: mosquitto_sub and
//     mosquitto_pub as local MQTT clients (StartPublisher publishes lines
//     as the test writes them and counts the broker's acknowledgements).
//   - StartPaho: an MQTT client on Debian's python3-paho-mqtt, for what
//     mosquitto_sub/pub cannot do: MQTT 5 properties, sessions that come
//     back, WebSocket, TLS with client certificates. Request is one MQTT 5
//     request/response exchange on it (response topic, correlation data).
//   - StartProxy: a TCP proxy that cuts or blackholes a link.
//   - StartChromium: Debian's headless chromium, to load a page the way a
//     browser builds it (DumpDOM) and to draw it (Screenshot).
//   - Subpackage powercut: a FUSE file system that loses power (only
//     fsynced data and directory entries survive a cut, tails are torn).
//
// It is meant for _test.go files only. Every helper takes the test, uses
// 127.0.0.1 and free ports, stops what it started in t.Cleanup (by pid,
// process group included), waits for readiness by polling with a deadline,
// and logs the peer's output when the test failed. A missing peer program
// skips the test, or fails it when FIELDBRIDGE_REQUIRE_PEERS=1 (CI).
//
// Methods that take no testing.TB report failures through the test given
// to the constructor: call them from that test's goroutine.
//
// A typical gateway test:
//
//	dev := testpeer.StartRTU(t, testpeer.DeviceSpec{
//		Units: map[byte]testpeer.UnitSpec{1: {Holding: map[uint16]uint16{0: 215}}},
//	}, testpeer.LineOptions{})
//	cloud := testpeer.StartMosquitto(t, testpeer.MosquittoOptions{})
//	sub := testpeer.Subscribe(t, testpeer.SubOptions{Addr: cloud.Addr(), Filter: "site/#", QoS: 1})
//	// ... run the gateway with dev.Path and cloud.Addr() ...
//	dev.Set(1, testpeer.Holding, 0, 216)
//	sub.WaitFor(t, 5*time.Second, func(m testpeer.Message) bool { return string(m.Payload) == "21.6" })
package testpeer
