package transport

import (
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"
)

// BenchmarkTCPSend measures one Modbus TCP transaction (FC03, 10 registers)
// against an in-process server on loopback: the transport's own cost plus
// two loopback hops.
func BenchmarkTCPSend(b *testing.B) {
	reply := tcpFrame(0, 1, append([]byte{3, 20}, make([]byte, 20)...))
	srv := serveTCP(b, func(s *tcpServer, c net.Conn, _ int) {
		var req [MaxTCPADU]byte
		out := append([]byte(nil), reply...)
		for {
			if _, err := io.ReadFull(c, req[:mbapLen]); err != nil {
				return
			}
			if _, err := io.ReadFull(c, req[mbapLen:6+int(binary.BigEndian.Uint16(req[4:]))]); err != nil {
				return
			}
			copy(out[:2], req[:2])
			if _, err := c.Write(out); err != nil {
				return
			}
		}
	})
	tr := newTestTCP(b, srv.addr(), time.Second)
	reqs := make([][]byte, 256)
	for i := range reqs {
		reqs[i] = tcpFrame(uint16(i), 1, []byte{3, 0, 0, 0, 10})
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := tr.Send(reqs[i%len(reqs)]); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reportWire(b, tr.Stats())
}

// BenchmarkRTUOverTCPSend is the same transaction as RTU frames on a raw
// socket, the way a serial device server carries them (baud unknown: no
// inter-frame wait on our side).
func BenchmarkRTUOverTCPSend(b *testing.B) {
	reply := rtuFrame(1, append([]byte{3, 20}, make([]byte, 20)...))
	srv := serveTCP(b, func(s *tcpServer, c net.Conn, _ int) {
		var req [8]byte
		for {
			if _, err := io.ReadFull(c, req[:]); err != nil {
				return
			}
			if _, err := c.Write(reply); err != nil {
				return
			}
		}
	})
	tr := newTestRTUOverTCP(b, srv.addr(), 0, time.Second)
	req := rtuFrame(1, []byte{3, 0, 0, 0, 10})
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := tr.Send(req); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reportWire(b, tr.Stats())
}

// BenchmarkRTUReadFrame measures frame assembly alone: a 125-register reply
// (255 bytes) arriving one byte per read as on a real line, in 16-byte
// pieces as from a USB adapter, and whole as from a device server.
func BenchmarkRTUReadFrame(b *testing.B) {
	req := rtuFrame(1, []byte{3, 0, 0, 0, 125})
	reply := rtuFrame(1, append([]byte{3, 250}, make([]byte, 250)...))
	for _, chunk := range []int{1, 16, 256} {
		b.Run(map[int]string{1: "bytewise", 16: "chunks16", 256: "whole"}[chunk], func(b *testing.B) {
			fr := newTestReader()
			l := &scriptLine{data: reply, chunk: chunk}
			deadline := time.Now().Add(time.Hour)
			b.ReportAllocs()
			b.SetBytes(int64(len(reply)))
			for b.Loop() {
				l.pos = 0
				if _, err := fr.readFrame(l, req, deadline, time.Hour); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// reportWire adds the figures the poll planner cares about: requests and
// bytes on the wire per transaction.
func reportWire(b *testing.B, st Stats) {
	if st.Requests == 0 {
		return
	}
	b.ReportMetric(float64(st.BytesWritten+st.BytesRead)/float64(st.Requests), "wire-bytes/req")
}
