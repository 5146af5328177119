package testpeer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// testSpec is the device used by the TCP and RTU self-tests.
func testSpec() DeviceSpec {
	return DeviceSpec{
		Units: map[byte]UnitSpec{
			1: {
				Holding: map[uint16]uint16{0: 1234, 1: 5678, 2: 0xBEEF},
				Input:   map[uint16]uint16{7: 77},
				Coils:   map[uint16]bool{0: true, 2: true},
			},
			2: {Holding: map[uint16]uint16{0: 22}},
		},
		Silent: []byte{2},
		Exceptions: []ExceptionRange{
			{Unit: 1, Table: Holding, Start: 100, End: 109, Code: 2},
			{Unit: 1, Table: Input, Start: 50, End: 50, Code: 4},
		},
	}
}

// tcpClient sends hand-written Modbus TCP requests.
type tcpClient struct {
	t    *testing.T
	conn net.Conn
	tid  uint16
}

func dialModbus(t *testing.T, addr string) *tcpClient {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return &tcpClient{t: t, conn: conn}
}

// request sends unit+pdu and returns the reply PDU, or nil if nothing
// arrived within wait.
func (c *tcpClient) request(unit byte, pdu []byte, wait time.Duration) []byte {
	c.t.Helper()
	c.tid++
	adu := binary.BigEndian.AppendUint16(nil, c.tid)
	adu = binary.BigEndian.AppendUint16(adu, 0)
	adu = binary.BigEndian.AppendUint16(adu, uint16(len(pdu)+1))
	adu = append(append(adu, unit), pdu...)
	if _, err := c.conn.Write(adu); err != nil {
		c.t.Fatalf("write request: %v", err)
	}
	_ = c.conn.SetReadDeadline(time.Now().Add(wait))
	head := make([]byte, 7)
	if _, err := readFull(c.conn, head); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil
		}
		c.t.Fatalf("read reply header: %v", err)
	}
	if got := binary.BigEndian.Uint16(head); got != c.tid {
		c.t.Fatalf("reply transaction id %d, want %d", got, c.tid)
	}
	if head[6] != unit {
		c.t.Fatalf("reply unit %d, want %d", head[6], unit)
	}
	body := make([]byte, int(binary.BigEndian.Uint16(head[4:]))-1)
	if _, err := readFull(c.conn, body); err != nil {
		c.t.Fatalf("read reply body: %v", err)
	}
	return body
}

func readFull(conn net.Conn, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := conn.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// readPDU builds a read request PDU (function codes 1-4).
func readPDU(fc byte, addr, count uint16) []byte {
	pdu := []byte{fc}
	pdu = binary.BigEndian.AppendUint16(pdu, addr)
	return binary.BigEndian.AppendUint16(pdu, count)
}

// registersPDU is the expected reply PDU of a register read.
func registersPDU(fc byte, values ...uint16) []byte {
	pdu := []byte{fc, byte(2 * len(values))}
	for _, v := range values {
		pdu = binary.BigEndian.AppendUint16(pdu, v)
	}
	return pdu
}

func expectPDU(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: reply % x, want % x", what, got, want)
	}
}

func TestTCPDevice(t *testing.T) {
	d := StartTCP(t, testSpec())
	c := dialModbus(t, d.Addr)
	const wait = 2 * time.Second

	expectPDU(t, "holding 0..2", c.request(1, readPDU(3, 0, 3), wait), registersPDU(3, 1234, 5678, 0xBEEF))
	expectPDU(t, "input 6..7", c.request(1, readPDU(4, 6, 2), wait), registersPDU(4, 0, 77))
	expectPDU(t, "coils 0..3", c.request(1, readPDU(1, 0, 4), wait), []byte{1, 1, 0b0101})
	expectPDU(t, "holding 98..101 (touches exception range)", c.request(1, readPDU(3, 98, 4), wait), []byte{0x83, 2})
	expectPDU(t, "input 50 (exception 4)", c.request(1, readPDU(4, 50, 1), wait), []byte{0x84, 4})
	expectPDU(t, "holding 110 (after the range)", c.request(1, readPDU(3, 110, 1), wait), registersPDU(3, 0))

	start := time.Now()
	if got := c.request(2, readPDU(3, 0, 1), 500*time.Millisecond); got != nil {
		t.Fatalf("silent unit 2 answered % x", got)
	}
	if got := c.request(9, readPDU(3, 0, 1), 500*time.Millisecond); got != nil {
		t.Fatalf("unknown unit 9 answered % x", got)
	}
	t.Logf("two silent requests took %v", time.Since(start))

	// Runtime control: values, a dead unit coming back, a unit going dead.
	d.Set(1, Holding, 1, 42, 43)
	d.SetBits(1, Coil, 0, false)
	d.SetSilent(2, false)
	expectPDU(t, "holding after Set", c.request(1, readPDU(3, 0, 3), wait), registersPDU(3, 1234, 42, 43))
	expectPDU(t, "coils after SetBits", c.request(1, readPDU(1, 0, 3), wait), []byte{1, 1, 0b100})
	expectPDU(t, "unit 2 after SetSilent(false)", c.request(2, readPDU(3, 0, 1), wait), registersPDU(3, 22))
	d.SetSilent(1, true)
	if got := c.request(1, readPDU(3, 0, 1), 500*time.Millisecond); got != nil {
		t.Fatalf("unit 1 answered % x after SetSilent(true)", got)
	}
	// A unit that was not in the spec comes alive with Set.
	d.Set(9, Input, 3, 99)
	expectPDU(t, "new unit 9", c.request(9, readPDU(4, 3, 1), wait), registersPDU(4, 99))

	if got, want := d.Requests(1), 9; got != want {
		t.Errorf("Requests(1) = %d, want %d", got, want)
	}
	if got, want := d.Requests(2), 2; got != want {
		t.Errorf("Requests(2) = %d, want %d", got, want)
	}
	if got, want := d.Requests(9), 2; got != want {
		t.Errorf("Requests(9) = %d, want %d", got, want)
	}
}

func TestEncodeSpecRejects(t *testing.T) {
	for _, e := range []ExceptionRange{
		{Table: "holdings", Start: 1, End: 1, Code: 2},
		{Table: Holding, Start: 2, End: 1, Code: 2},
		{Table: Holding, Start: 1, End: 1, Code: 0},
	} {
		if _, err := encodeSpec(DeviceSpec{Exceptions: []ExceptionRange{e}}); err == nil {
			t.Errorf("encodeSpec accepted %+v", e)
		}
	}
}
