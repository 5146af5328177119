package testpeer

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"net"
	"testing"
	"time"
)

// Minimal MQTT 3.1.1 ends for benchmarks, built on the packet reader the
// proxy uses: a subscriber and a broker that cost the machine next to
// nothing per message, so that what a benchmark measures is the program
// between them. On a 2-core VM paho took 22 µs of CPU per message as a
// subscriber and mosquitto_sub 17 µs (libmosquitto reads every packet in
// several system calls), as much as the upstream broker itself. Neither is
// a client or a broker for anything else: no keepalive, no QoS 2, no
// reconnect; a broken connection just ends them.

// RawSubscriber is a QoS 1 subscriber (clean session, no keepalive). It
// reads the socket in large chunks and acknowledges everything it has read
// in one write, then lets the next chunk gather for a millisecond:
// mosquitto writes every packet on its own, and taking each as it comes
// cost 13 µs of wake-ups and system calls per message. Arrival times are
// late by up to that millisecond.
type RawSubscriber struct {
	conn net.Conn
	done chan struct{}
}

// StartRawSubscriber connects to addr, subscribes to filter at QoS 1 and
// calls onMessage, from one goroutine in arrival order, with each
// PUBLISH's topic, payload and arrival time. It stops at the end of the
// test.
func StartRawSubscriber(tb testing.TB, addr, clientID, filter string, onMessage func(topic string, payload []byte, at time.Time)) *RawSubscriber {
	tb.Helper()
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		tb.Fatalf("testpeer: raw subscriber: %v", err)
	}
	r := bufio.NewReaderSize(conn, 256<<10)
	// CONNECT: protocol "MQTT" level 4, clean session, keepalive 0.
	vh := append(mqttString(nil, "MQTT"), 4, 0x02, 0, 0)
	// SUBSCRIBE: packet id 1, one filter at QoS 1.
	sub := append(mqttString([]byte{0, 1}, filter), 1)
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	for _, step := range []struct {
		out  []byte
		want byte // the answer's first byte
		ok   func(body []byte) bool
	}{
		{mqttFrame(0x10, append(vh, mqttString(nil, clientID)...)), 0x20, func(b []byte) bool { return len(b) == 2 && b[1] == 0 }},
		{mqttFrame(0x82, sub), 0x90, func(b []byte) bool { return len(b) == 3 && b[2] == 1 }},
	} {
		if _, err := conn.Write(step.out); err != nil {
			tb.Fatalf("testpeer: raw subscriber: %v", err)
		}
		pkt, err := readMQTTPacket(r)
		if err != nil || pkt[0] != step.want || !step.ok(mqttBody(pkt)) {
			tb.Fatalf("testpeer: raw subscriber: got %x for %#x: %v", pkt, step.out[0], err)
		}
	}
	_ = conn.SetDeadline(time.Time{})
	s := &RawSubscriber{conn: conn, done: make(chan struct{})}
	go s.read(r, onMessage)
	tb.Cleanup(func() {
		conn.Close()
		<-s.done
	})
	return s
}

func (s *RawSubscriber) read(r *bufio.Reader, onMessage func(string, []byte, time.Time)) {
	defer close(s.done)
	var acks []byte
	for {
		if r.Buffered() == 0 && len(acks) > 0 {
			if _, err := s.conn.Write(acks); err != nil {
				return
			}
			acks = acks[:0]
			time.Sleep(time.Millisecond) // the pace of the instrument, see RawSubscriber
		}
		pkt, err := readMQTTPacket(r)
		if err != nil {
			return
		}
		topic, payload, ok := publishParts(pkt)
		if !ok {
			continue
		}
		if id, ok := publishID(pkt); ok {
			acks = append(acks, mqttPuback<<4, 2, byte(id>>8), byte(id))
		}
		onMessage(topic, payload, time.Now())
	}
}

// StartAcker starts a broker on loopback that only acknowledges: CONNACK
// for CONNECT, PUBACK for every QoS 1 PUBLISH, PINGRESP for PINGREQ, the
// answers to one read in one write. It returns its address and stops at
// the end of the test.
func StartAcker(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("testpeer: acker: %v", err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go ackAll(c)
		}
	}()
	return ln.Addr().String()
}

func ackAll(c net.Conn) {
	defer c.Close()
	r := bufio.NewReaderSize(c, 64<<10)
	var out []byte
	for {
		if r.Buffered() == 0 && len(out) > 0 {
			if _, err := c.Write(out); err != nil {
				return
			}
			out = out[:0]
		}
		pkt, err := readMQTTPacket(r)
		if err != nil {
			return
		}
		switch pkt[0] >> 4 {
		case 1: // CONNECT
			out = append(out, 0x20, 2, 0, 0)
		case mqttPublish:
			if id, ok := publishID(pkt); ok && (pkt[0]>>1)&3 == 1 {
				out = append(out, mqttPuback<<4, 2, byte(id>>8), byte(id))
			}
		case 12: // PINGREQ
			out = append(out, 0xd0, 0)
		}
	}
}

// publishParts returns the topic and payload of a whole PUBLISH packet.
func publishParts(pkt []byte) (topic string, payload []byte, ok bool) {
	if pkt[0]>>4 != mqttPublish {
		return "", nil, false
	}
	b := mqttBody(pkt)
	if len(b) < 2 {
		return "", nil, false
	}
	n := 2 + int(binary.BigEndian.Uint16(b))
	if (pkt[0]>>1)&3 != 0 {
		n += 2 // the packet id
	}
	if len(b) < n {
		return "", nil, false
	}
	return string(b[2 : 2+int(binary.BigEndian.Uint16(b))]), b[n:], true
}

// mqttFrame puts the first byte and the remaining length before body.
func mqttFrame(first byte, body []byte) []byte {
	p := []byte{first}
	for n := len(body); ; {
		b := byte(n & 0x7f)
		if n >>= 7; n > 0 {
			b |= 0x80
		}
		p = append(p, b)
		if n == 0 {
			break
		}
	}
	return append(p, body...)
}

// mqttString appends s with its 2-byte length.
func mqttString(b []byte, s string) []byte {
	if len(s) > 0xffff {
		panic(fmt.Sprintf("testpeer: MQTT string of %d bytes", len(s)))
	}
	return append(binary.BigEndian.AppendUint16(b, uint16(len(s))), s...)
}
