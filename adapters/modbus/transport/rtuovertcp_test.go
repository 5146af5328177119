package transport

import (
	"bytes"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/goburrow/modbus"
)

// rtuServerAction is how the fake device behind a fake device server
// answers one request: after turnaround, bytes written gap apart (one TCP
// segment each, as a device server that forwards every character does).
type rtuServerAction struct {
	turnaround time.Duration
	bytes      []byte
	gap        time.Duration
	close      bool
}

// rtuDeviceServer is a fake serial device server: RTU requests in, RTU
// replies out, on a raw TCP socket. req counts over all connections.
func rtuDeviceServer(sc func(conn, req int, adu []byte) rtuServerAction) func(*tcpServer, net.Conn, int) {
	return func(s *tcpServer, c net.Conn, conn int) {
		var buf []byte
		chunk := make([]byte, 300)
		for {
			for rtuRequestLen(buf) == 0 || len(buf) < rtuRequestLen(buf) {
				k, err := c.Read(chunk)
				if err != nil {
					s.count(func() { s.closed++ })
					return
				}
				buf = append(buf, chunk[:k]...)
			}
			n := rtuRequestLen(buf)
			req := buf[:n:n]
			buf = append([]byte(nil), buf[n:]...)
			var idx int
			s.count(func() { idx = s.requests; s.requests++ })
			a := sc(conn, idx, req)
			if !s.pause(a.turnaround) {
				return
			}
			if a.gap == 0 && len(a.bytes) > 0 {
				if _, err := c.Write(a.bytes); err != nil {
					return
				}
			}
			for i := 0; a.gap > 0 && i < len(a.bytes); i++ {
				if i > 0 && !s.pause(a.gap) {
					return
				}
				if _, err := c.Write(a.bytes[i : i+1]); err != nil {
					return
				}
			}
			s.count(func() { s.replied++ })
			if s.onReply != nil && len(a.bytes) > 0 {
				s.onReply()
			}
			if a.close {
				return
			}
		}
	}
}

func newTestRTUOverTCP(t testing.TB, addr string, baud int, timeout time.Duration) *RTUOverTCP {
	t.Helper()
	tr, err := NewRTUOverTCP(RTUOverTCPConfig{Address: addr, Baud: baud, Timeout: timeout, DialTimeout: time.Second, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

func TestRTUOverTCPPacedRepliesAndExceptions(t *testing.T) {
	sm := newSim()
	srv := serveTCP(t, rtuDeviceServer(func(_, n int, req []byte) rtuServerAction {
		return rtuServerAction{turnaround: turnaround(n), bytes: sm.rtuAnswer(req), gap: testCharTime}
	}))
	tr := newTestRTUOverTCP(t, srv.addr(), testBaud, slowMachine)
	pk := modbus.NewRTUClientHandler("")
	pk.SlaveId = 4
	c := modbus.NewClient2(pk, tr)
	for i := range 3 {
		got, err := c.ReadInputRegisters(uint16(i), 2)
		wantBytes(t, "fc04", got, err, []byte{1, byte(i*3 + 0), 1, byte(i*3 + 3)})
		_, err = c.ReadCoils(2040, 100) // past the end
		var me *modbus.ModbusError
		if !errors.As(err, &me) || me.ExceptionCode != 2 {
			t.Fatalf("got %v, want exception 2", err)
		}
		got, err = c.WriteSingleRegister(7, uint16(0x4200+i))
		wantBytes(t, "fc06 after exception", got, err, []byte{0x42, byte(i)})
	}
	if st := tr.Stats(); st.Connects != 1 || st.Responses != 9 || st.BytesDiscarded != 0 {
		t.Errorf("stats %+v: want 1 connect, 9 responses, nothing discarded", st)
	}
}

// The connection is kept across a timeout (the device server is fine, the
// device was slow), so a late reply must be drained or flushed, never read as
// the reply to the next request. Both paths are forced: the late reply comes
// once between two requests, and once while the transport drains after the
// timeout.
func TestRTUOverTCPLateReplyIsDrained(t *testing.T) {
	sm := newSim()
	req1, req2 := readRegs(t, 1, 0, 2), readRegs(t, 1, 100, 2)
	late := sm.rtuAnswer(req1)
	release := []chan struct{}{make(chan struct{}), make(chan struct{})}
	written := make(chan struct{}, 2)
	held := 0 // replies held back so far; the server's goroutine only
	srv := serveTCP(t, rtuDeviceServer(func(_, n int, req []byte) rtuServerAction {
		if bytes.Equal(req, req1) {
			<-release[held] // hold the reply until the test says
			held++
			return rtuServerAction{bytes: late}
		}
		return rtuServerAction{turnaround: turnaround(n), bytes: sm.rtuAnswer(req), gap: testCharTime}
	}))
	srv.onReply = func() { written <- struct{}{} }
	tr := newTestRTUOverTCP(t, srv.addr(), testBaud, 60*time.Millisecond)

	// Late reply between requests: flushed before the next is written.
	_, err := tr.Send(req1)
	wantKind(t, err, ErrTimeout, "(0 of 9 bytes)")
	close(release[0])
	<-written // on loopback it is now in our receive buffer
	tr.SetTimeout(slowMachine)
	got, err := tr.Send(req2)
	tr.SetTimeout(0)
	wantBytes(t, "after a late reply between requests", got, err, sm.rtuAnswer(req2))
	<-written

	// Late reply during the drain that follows the timeout.
	tr.eng.drainHook = func() {
		tr.eng.drainHook = nil
		close(release[1])
		<-written
	}
	_, err = tr.Send(req1)
	wantKind(t, err, ErrTimeout)
	if d := tr.Stats().BytesDiscarded; d != 2*uint64(len(late)) {
		t.Errorf("%d bytes discarded, want both late replies (%d)", d, 2*len(late))
	}
	tr.SetTimeout(slowMachine)
	got, err = tr.Send(req2)
	wantBytes(t, "after a late reply during the drain", got, err, sm.rtuAnswer(req2))
	if st := tr.Stats(); st.Connects != 1 {
		t.Errorf("%d connects: a timeout must not cost the connection", st.Connects)
	}
}

func TestRTUOverTCPCRCErrorThenNext(t *testing.T) {
	sm := newSim()
	srv := serveTCP(t, rtuDeviceServer(func(_, n int, req []byte) rtuServerAction {
		f := sm.rtuAnswer(req)
		if n == 0 {
			f[3] ^= 0x10
			f = append(f, 0x00, 0x11) // and trailing noise, drained too
		}
		return rtuServerAction{turnaround: turnaround(n), bytes: f, gap: testCharTime}
	}))
	tr := newTestRTUOverTCP(t, srv.addr(), testBaud, slowMachine)
	req := readRegs(t, 1, 0, 2)
	_, err := tr.Send(req)
	wantKind(t, err, ErrFrame, srv.addr()+": crc mismatch")
	got, err := tr.Send(req)
	wantBytes(t, "next", got, err, sm.rtuAnswer(req))
	if st := tr.Stats(); st.Connects != 1 || st.BytesDiscarded != 11 {
		t.Errorf("stats %+v: want the connection kept and 11 bytes discarded", st)
	}
}

func TestRTUOverTCPPeerCloses(t *testing.T) {
	sm := newSim()
	srv := serveTCP(t, rtuDeviceServer(func(_, n int, req []byte) rtuServerAction {
		switch n {
		case 0:
			return rtuServerAction{bytes: sm.rtuAnswer(req), close: true}
		case 2:
			return rtuServerAction{close: true}
		}
		return rtuServerAction{bytes: sm.rtuAnswer(req)}
	}))
	tr := newTestRTUOverTCP(t, srv.addr(), 0, slowMachine)
	req := readRegs(t, 1, 0, 1)
	got, err := tr.Send(req)
	wantBytes(t, "first", got, err, sm.rtuAnswer(req))
	waitFor(t, "the server to close", 5*time.Second, func() bool { return srv.connsDone() == 1 })
	got, err = tr.Send(req)
	wantBytes(t, "after the idle connection was closed", got, err, sm.rtuAnswer(req))
	_, err = tr.Send(req)
	wantTransportError(t, err, "read "+srv.addr(), "EOF")
	got, err = tr.Send(req)
	wantBytes(t, "after the peer closed mid-request", got, err, sm.rtuAnswer(req))
	if st := tr.Stats(); st.Connects != 3 || st.TransportErrors != 1 {
		t.Errorf("stats %+v: want 3 connects, 1 transport error", st)
	}
}

func TestRTUOverTCPRefusedThenUp(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	tr := newTestRTUOverTCP(t, addr, 9600, slowMachine)
	req := readRegs(t, 1, 0, 1)
	_, err = tr.Send(req)
	wantTransportError(t, err, "connection refused")
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", addr, err)
	}
	sm := newSim()
	serveOn(t, ln, rtuDeviceServer(func(_, _ int, req []byte) rtuServerAction {
		return rtuServerAction{bytes: sm.rtuAnswer(req)}
	}))
	got, err := tr.Send(req)
	wantBytes(t, "after the server came up", got, err, sm.rtuAnswer(req))
}

func TestRTUOverTCPCloseUnblocksSend(t *testing.T) {
	srv := serveTCP(t, rtuDeviceServer(func(int, int, []byte) rtuServerAction { return rtuServerAction{} }))
	tr := newTestRTUOverTCP(t, srv.addr(), 9600, time.Hour)
	ch := sendAsync(t, func() ([]byte, error) { return tr.Send(readRegs(t, 1, 0, 1)) })
	waitFor(t, "the request at the server", 5*time.Second, func() bool {
		_, _, reqs := srv.stats()
		return reqs == 1
	})
	tr.Close()
	r := await(t, ch, 5*time.Second)
	wantKind(t, r.err, ErrClosed)
}

func TestRTUOverTCPBroadcast(t *testing.T) {
	srv := serveTCP(t, rtuDeviceServer(func(_, _ int, req []byte) rtuServerAction {
		return rtuServerAction{}
	}))
	tr := newTestRTUOverTCP(t, srv.addr(), 9600, slowMachine)
	resp, err := tr.Send(rtuRequest(t, 0, 5, 0, 1, 0xFF, 0))
	wantKind(t, err, ErrNoResponse)
	if resp != nil || tr.Stats().Broadcasts != 1 {
		t.Errorf("broadcast: resp % x, stats %+v", resp, tr.Stats())
	}
}
