package transport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/goburrow/modbus"
)

func newTestTCP(t testing.TB, addr string, timeout time.Duration) *TCP {
	t.Helper()
	tr, err := NewTCP(TCPConfig{Address: addr, Timeout: timeout, DialTimeout: time.Second, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

// tcpReq encodes a request with goburrow's TCP packager; each packager
// counts its own transaction ids.
func tcpReq(t testing.TB, pk *modbus.TCPClientHandler, fc byte, data ...byte) []byte {
	t.Helper()
	adu, err := pk.Encode(&modbus.ProtocolDataUnit{FunctionCode: fc, Data: data})
	if err != nil {
		t.Fatal(err)
	}
	return adu
}

func tcpReadRegs(t testing.TB, pk *modbus.TCPClientHandler, addr, q uint16) []byte {
	return tcpReq(t, pk, 3, byte(addr>>8), byte(addr), byte(q>>8), byte(q))
}

func tcpPackager(unit byte) *modbus.TCPClientHandler {
	pk := modbus.NewTCPClientHandler("")
	pk.SlaveId = unit
	return pk
}

func TestTCPFunctionCodes(t *testing.T) {
	sm := newSim()
	srv := serveTCP(t, mbapDevice(func(_, _ int, adu []byte) tcpAction {
		return tcpAction{bytes: sm.tcpAnswer(adu)}
	}))
	tr := newTestTCP(t, srv.addr(), slowMachine)
	c := modbus.NewClient2(tcpPackager(9), tr)
	steps := []struct {
		name string
		call func() ([]byte, error)
		want []byte
	}{
		{"fc01", func() ([]byte, error) { return c.ReadCoils(3, 10) }, []byte{0x49, 0x02}},
		{"fc02", func() ([]byte, error) { return c.ReadDiscreteInputs(0, 12) }, []byte{0x42, 0x08}},
		{"fc03", func() ([]byte, error) { return c.ReadHoldingRegisters(10, 3) }, []byte{0, 71, 0, 78, 0, 85}},
		{"fc04", func() ([]byte, error) { return c.ReadInputRegisters(2, 2) }, []byte{1, 6, 1, 9}},
		{"fc05", func() ([]byte, error) { return c.WriteSingleCoil(4, 0xFF00) }, []byte{0xFF, 0}},
		{"fc06", func() ([]byte, error) { return c.WriteSingleRegister(5, 0xBEEF) }, []byte{0xBE, 0xEF}},
		{"fc15", func() ([]byte, error) { return c.WriteMultipleCoils(20, 10, []byte{0xFF, 0x03}) }, []byte{0, 10}},
		{"fc16", func() ([]byte, error) { return c.WriteMultipleRegisters(30, 2, []byte{0, 1, 0, 2}) }, []byte{0, 2}},
		{"fc22", func() ([]byte, error) { return c.MaskWriteRegister(5, 0x00FF, 0x1200) }, []byte{0, 0xFF, 0x12, 0}},
		{"fc23", func() ([]byte, error) { return c.ReadWriteMultipleRegisters(5, 2, 40, 1, []byte{0xCA, 0xFE}) }, []byte{0x12, 0xEF, 0, 43}},
		{"fc03 after writes", func() ([]byte, error) { return c.ReadHoldingRegisters(30, 2) }, []byte{0, 1, 0, 2}},
	}
	for _, s := range steps {
		got, err := s.call()
		wantBytes(t, s.name, got, err, s.want)
	}
	pk := tcpPackager(9)
	for _, fc := range []byte{24, 8, 17} {
		req := tcpReq(t, pk, fc, 0, 0, 0xA5, 0x37)
		if fc == 24 {
			req = tcpReq(t, pk, fc, 0, 1)
		}
		got, err := tr.Send(req)
		wantBytes(t, fmt.Sprintf("fc%02d", fc), got, err, sm.tcpAnswer(req))
	}
	if st := tr.Stats(); st.Connects != 1 || st.Responses != uint64(len(steps)+3) || st.BytesDiscarded != 0 {
		t.Errorf("stats %+v: want 1 connect, %d responses, nothing discarded", st, len(steps)+3)
	}
}

func TestTCPExceptionThenNormal(t *testing.T) {
	sm := newSim()
	srv := serveTCP(t, mbapDevice(func(_, _ int, adu []byte) tcpAction {
		return tcpAction{bytes: sm.tcpAnswer(adu)}
	}))
	tr := newTestTCP(t, srv.addr(), slowMachine)
	c := modbus.NewClient2(tcpPackager(1), tr)
	for i := range 3 {
		_, err := c.ReadHoldingRegisters(1020, 10)
		var me *modbus.ModbusError
		if !errors.As(err, &me) || me.ExceptionCode != 2 {
			t.Fatalf("round %d: got %v, want modbus exception 2", i, err)
		}
		got, err := c.ReadHoldingRegisters(uint16(i), 1)
		wantBytes(t, "after exception", got, err, []byte{0, byte(i*7 + 1)})
	}
	if st := tr.Stats(); st.Connects != 1 || st.Responses != 6 {
		t.Errorf("stats %+v: want 1 connect and 6 responses", st)
	}
}

func TestTCPTruncatedReply(t *testing.T) {
	sm := newSim()
	srv := serveTCP(t, mbapDevice(func(_, n int, adu []byte) tcpAction {
		full := sm.tcpAnswer(adu)
		switch n {
		case 0:
			return tcpAction{bytes: []byte{}} // nothing
		case 1:
			return tcpAction{bytes: full[:5]} // part of the header
		case 2:
			return tcpAction{bytes: full[:11]} // header and part of the PDU
		}
		return tcpAction{bytes: full}
	}))
	tr := newTestTCP(t, srv.addr(), 100*time.Millisecond)
	pk := tcpPackager(1)
	_, err := tr.Send(tcpReadRegs(t, pk, 0, 3))
	wantKind(t, err, ErrTimeout, fmt.Sprintf("read %s: timeout after 100ms (0 of 7 bytes)", srv.addr()))
	_, err = tr.Send(tcpReadRegs(t, pk, 0, 3))
	wantKind(t, err, ErrTimeout, "(5 of 7 bytes)")
	_, err = tr.Send(tcpReadRegs(t, pk, 0, 3))
	wantKind(t, err, ErrTimeout, "(11 of 15 bytes)")
	tr.SetTimeout(slowMachine)
	req := tcpReadRegs(t, pk, 0, 3)
	got, err := tr.Send(req)
	wantBytes(t, "after timeouts", got, err, sm.tcpAnswer(req))
	if st := tr.Stats(); st.Timeouts != 3 || st.Connects != 4 {
		t.Errorf("stats %+v: want 3 timeouts and a new connection after each", st)
	}
}

// goburrow's own TCP transporter keeps the connection after a timeout, so a
// late reply is read as the next one and every transaction id after it is
// off by one. Here the connection is dropped and the late reply dies with it.
func TestTCPLateReplyIsNotTakenForTheNext(t *testing.T) {
	sm := newSim()
	release := make(chan struct{})
	srv := serveTCP(t, mbapDevice(func(_, n int, adu []byte) tcpAction {
		if n == 0 {
			<-release // answer only after the client gave up
			return tcpAction{bytes: sm.tcpAnswer(adu)}
		}
		return tcpAction{bytes: sm.tcpAnswer(adu)}
	}))
	tr := newTestTCP(t, srv.addr(), 80*time.Millisecond)
	c := modbus.NewClient2(tcpPackager(1), tr)
	_, err := c.ReadHoldingRegisters(0, 2)
	wantKind(t, err, ErrTimeout)
	tr.d.mu.Lock()
	kept := tr.d.conn != nil
	tr.d.mu.Unlock()
	if kept {
		t.Error("connection kept after a timeout")
	}
	close(release)
	tr.SetTimeout(slowMachine)
	for i := range 3 {
		got, err := c.ReadHoldingRegisters(uint16(100+i), 2)
		want := binary.BigEndian.AppendUint16(nil, uint16((100+i)*7+1))
		want = binary.BigEndian.AppendUint16(want, uint16((101+i)*7+1))
		wantBytes(t, "after the timeout", got, err, want)
	}
	if st := tr.Stats(); st.Connects != 2 {
		t.Errorf("%d connects, want a new connection after the timeout", st.Connects)
	}
	waitFor(t, "the server to see the first connection closed", 5*time.Second, func() bool {
		_, closed, _ := srv.stats()
		return closed >= 1
	})
}

func TestTCPFrameErrors(t *testing.T) {
	sm := newSim()
	cases := []struct {
		name     string
		mangle   func(b []byte) []byte
		contains string
	}{
		{"transaction id", func(b []byte) []byte { b[1]++; return b }, "transaction id mismatch"},
		{"protocol id", func(b []byte) []byte { b[3] = 1; return b }, "protocol id 0x0001, want 0"},
		{"length too big", func(b []byte) []byte { b[4], b[5] = 1, 0; return b }, "invalid length 256 in header"},
		{"length zero", func(b []byte) []byte { b[4], b[5] = 0, 0; return b }, "invalid length 0 in header"},
		{"unit id", func(b []byte) []byte { b[6]++; return b }, "unit id mismatch (got 2, want 1)"},
		{"function", func(b []byte) []byte { b[7] = 4; return b }, "unexpected function 0x04, want 0x03"},
		{"byte count", func(b []byte) []byte { b[8] = 2; return b }, "unexpected byte count 2, want 4"},
		{"pdu shorter than byte count", func(b []byte) []byte {
			b = b[:len(b)-1]
			b[5]--
			return b
		}, "bad length 5, want 6"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := serveTCP(t, mbapDevice(func(_, n int, adu []byte) tcpAction {
				if n == 0 {
					return tcpAction{bytes: c.mangle(sm.tcpAnswer(adu))}
				}
				return tcpAction{bytes: sm.tcpAnswer(adu)}
			}))
			tr := newTestTCP(t, srv.addr(), slowMachine)
			pk := tcpPackager(1)
			_, err := tr.Send(tcpReadRegs(t, pk, 0, 2))
			wantKind(t, err, ErrFrame, c.contains, srv.addr())
			req := tcpReadRegs(t, pk, 0, 2)
			got, err := tr.Send(req)
			wantBytes(t, "next", got, err, sm.tcpAnswer(req))
			if st := tr.Stats(); st.Connects != 2 || st.FrameErrors != 1 {
				t.Errorf("stats %+v: want a new connection after the frame error", st)
			}
		})
	}
}

// Devices close idle connections. If that is seen before the request is
// written, the transport redials without failing it; if the device closes
// after reading the request, that Send fails and the next one redials.
func TestTCPPeerCloses(t *testing.T) {
	sm := newSim()
	srv := serveTCP(t, mbapDevice(func(_, n int, adu []byte) tcpAction {
		switch n {
		case 0:
			return tcpAction{bytes: sm.tcpAnswer(adu), close: true}
		case 2:
			return tcpAction{close: true}
		}
		return tcpAction{bytes: sm.tcpAnswer(adu)}
	}))
	tr := newTestTCP(t, srv.addr(), slowMachine)
	pk := tcpPackager(1)
	req := tcpReadRegs(t, pk, 0, 1)
	got, err := tr.Send(req)
	wantBytes(t, "first", got, err, sm.tcpAnswer(req))
	waitFor(t, "the server to close", 5*time.Second, func() bool {
		_, closed, _ := srv.stats()
		return closed == 0 && srv.connsDone() == 1
	})
	req = tcpReadRegs(t, pk, 1, 1)
	got, err = tr.Send(req)
	wantBytes(t, "after the peer closed the idle connection", got, err, sm.tcpAnswer(req))

	_, err = tr.Send(tcpReadRegs(t, pk, 2, 1))
	wantTransportError(t, err, "connection closed by peer (0 of 7 bytes)")
	req = tcpReadRegs(t, pk, 3, 1)
	got, err = tr.Send(req)
	wantBytes(t, "after the peer closed mid-request", got, err, sm.tcpAnswer(req))
	if st := tr.Stats(); st.Connects != 3 || st.TransportErrors != 1 || st.Responses != 3 {
		t.Errorf("stats %+v: want 3 connects, 1 transport error, 3 responses", st)
	}
}

func TestTCPConnectionRefusedThenUp(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	tr := newTestTCP(t, addr, slowMachine)
	pk := tcpPackager(1)
	for range 2 {
		_, err = tr.Send(tcpReadRegs(t, pk, 0, 1))
		wantTransportError(t, err, "connection refused")
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("error %q does not wrap ECONNREFUSED", err)
		}
	}
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", addr, err)
	}
	sm := newSim()
	serveOn(t, ln, mbapDevice(func(_, _ int, adu []byte) tcpAction { return tcpAction{bytes: sm.tcpAnswer(adu)} }))
	req := tcpReadRegs(t, pk, 0, 1)
	got, err := tr.Send(req)
	wantBytes(t, "after the server came up", got, err, sm.tcpAnswer(req))
	if st := tr.Stats(); st.TransportErrors != 2 || st.Connects != 1 {
		t.Errorf("stats %+v: want 2 transport errors, 1 connect", st)
	}
}

func TestTCPCloseUnblocksSend(t *testing.T) {
	srv := serveTCP(t, mbapDevice(func(int, int, []byte) tcpAction { return tcpAction{} }))
	tr := newTestTCP(t, srv.addr(), time.Hour)
	pk := tcpPackager(1)
	ch := sendAsync(t, func() ([]byte, error) { return tr.Send(tcpReadRegs(t, pk, 0, 1)) })
	waitFor(t, "the request at the server", 5*time.Second, func() bool {
		_, _, reqs := srv.stats()
		return reqs == 1
	})
	tr.Close()
	r := await(t, ch, 5*time.Second)
	wantKind(t, r.err, ErrClosed, srv.addr())
	_, err := tr.Send(tcpReadRegs(t, pk, 0, 1))
	wantKind(t, err, ErrClosed)
	if st := tr.Stats(); st.Timeouts+st.TransportErrors != 0 {
		t.Errorf("stats %+v: a closed Send counted as a failure", st)
	}
}

// Bytes after a valid reply mean the connection can no longer be trusted:
// the reply is returned, and the next Send starts on a new connection.
func TestTCPExtraBytesAfterReply(t *testing.T) {
	sm := newSim()
	srv := serveTCP(t, mbapDevice(func(_, n int, adu []byte) tcpAction {
		if n == 0 {
			return tcpAction{bytes: append(sm.tcpAnswer(adu), 0xDE, 0xAD)}
		}
		return tcpAction{bytes: sm.tcpAnswer(adu)}
	}))
	tr := newTestTCP(t, srv.addr(), slowMachine)
	pk := tcpPackager(1)
	req := tcpReadRegs(t, pk, 0, 1)
	got, err := tr.Send(req)
	wantBytes(t, "first", got, err, sm.tcpAnswer(req))
	req = tcpReadRegs(t, pk, 1, 1)
	got, err = tr.Send(req)
	wantBytes(t, "second", got, err, sm.tcpAnswer(req))
	if st := tr.Stats(); st.Connects != 2 || st.BytesDiscarded != 2 {
		t.Errorf("stats %+v: want the extra bytes discarded and a new connection", st)
	}
}

func TestTCPConfig(t *testing.T) {
	for _, a := range []string{"", "localhost", "1.2.3.4"} {
		if _, err := NewTCP(TCPConfig{Address: a}); err == nil {
			t.Errorf("NewTCP accepted address %q", a)
		}
	}
	tr, err := NewTCP(TCPConfig{Address: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	if tr.d.dialTimeout != DefaultDialTimeout || time.Duration(tr.cur.Load()) != DefaultTimeout {
		t.Error("zero timeouts did not take the defaults")
	}
	for _, req := range [][]byte{{0, 1, 0, 0, 0, 2, 1}, {0, 1, 0, 0, 0, 9, 1, 3}, {0, 1, 0, 1, 0, 2, 1, 3}} {
		if _, err := tr.Send(req); err == nil {
			t.Errorf("Send accepted request % x", req)
		}
	}
	if tr.Stats().Requests != 0 {
		t.Error("invalid requests were counted")
	}
}
