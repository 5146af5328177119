package bridgebench

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"
)

// rawSubscriber is the benchmarks' measuring instrument: a minimal MQTT
// 3.1.1 subscriber (QoS 1, clean session, no keepalive) that reads the
// socket in large chunks and acknowledges everything it has read in one
// write, a millisecond apart at most. On this 2-core VM paho took 22 µs of CPU per message as a
// subscriber and mosquitto_sub 17 µs, as much as the upstream broker
// itself: the instrument, not the bridges, set the drain figures at 0 ms.
// It is no client for a product (no reconnect, no QoS 2, no keepalive);
// a broken connection ends it and is reported by the test's counts.
type rawSubscriber struct {
	conn net.Conn
	done chan struct{}
}

// startRawSubscriber connects to addr, subscribes to filter at QoS 1 and
// calls onMessage (from one goroutine, in arrival order) with each
// PUBLISH's topic, payload and arrival time. Packets that are not PUBLISH
// are skipped.
func startRawSubscriber(t *testing.T, addr, clientID, filter string, onMessage func(topic string, payload []byte, at time.Time)) *rawSubscriber {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatalf("raw subscriber: %v", err)
	}
	r := bufio.NewReaderSize(conn, 256<<10)
	// CONNECT: protocol "MQTT" level 4, clean session, keepalive 0.
	vh := append(mqttString(nil, "MQTT"), 4, 0x02, 0, 0)
	if _, err := conn.Write(mqttPacket(0x10, append(vh, mqttString(nil, clientID)...))); err != nil {
		t.Fatalf("raw subscriber: connect: %v", err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if typ, body, err := readMQTTPacket(r); err != nil || typ != 0x20 || len(body) != 2 || body[1] != 0 {
		t.Fatalf("raw subscriber: CONNACK %#x %v: %v", typ, body, err)
	}
	// SUBSCRIBE, packet id 1, one filter at QoS 1.
	if _, err := conn.Write(mqttPacket(0x82, append(mqttString([]byte{0, 1}, filter), 1))); err != nil {
		t.Fatalf("raw subscriber: subscribe: %v", err)
	}
	if typ, body, err := readMQTTPacket(r); err != nil || typ != 0x90 || len(body) != 3 || body[2] != 1 {
		t.Fatalf("raw subscriber: SUBACK %#x %v: %v", typ, body, err)
	}
	_ = conn.SetReadDeadline(time.Time{})
	s := &rawSubscriber{conn: conn, done: make(chan struct{})}
	go s.read(r, onMessage)
	t.Cleanup(func() {
		conn.Close()
		<-s.done
	})
	return s
}

func (s *rawSubscriber) read(r *bufio.Reader, onMessage func(string, []byte, time.Time)) {
	defer close(s.done)
	var acks []byte
	for {
		// Acknowledge what was read once nothing more is buffered: one
		// write for a whole chunk of messages. Then let the next chunk
		// gather for a millisecond: mosquitto writes every packet on its
		// own, and reading each as it comes cost 13 µs of wake-ups and
		// syscalls per message here. Arrival times are late by up to
		// that millisecond, which rates over seconds and lags in
		// milliseconds do not see.
		if r.Buffered() == 0 && len(acks) > 0 {
			if _, err := s.conn.Write(acks); err != nil {
				return
			}
			acks = acks[:0]
			time.Sleep(time.Millisecond)
		}
		typ, body, err := readMQTTPacket(r)
		if err != nil {
			return
		}
		if typ>>4 != 3 {
			continue
		}
		at := time.Now()
		qos := typ >> 1 & 3
		if len(body) < 2 {
			return
		}
		n := int(binary.BigEndian.Uint16(body))
		if len(body) < 2+n {
			return
		}
		topic, rest := string(body[2:2+n]), body[2+n:]
		if qos > 0 {
			if len(rest) < 2 {
				return
			}
			acks = append(acks, 0x40, 2, rest[0], rest[1])
			rest = rest[2:]
		}
		onMessage(topic, rest, at)
	}
}

// readMQTTPacket reads one packet: its first byte and its body (a fresh
// slice).
func readMQTTPacket(r *bufio.Reader) (byte, []byte, error) {
	typ, err := r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, shift := 0, 0
	for {
		b, err := r.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		n |= int(b&0x7f) << shift
		if b&0x80 == 0 {
			break
		}
		if shift += 7; shift > 21 {
			return 0, nil, errors.New("malformed remaining length")
		}
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, err
	}
	return typ, body, nil
}

// mqttPacket frames body behind the first byte and the remaining length.
func mqttPacket(first byte, body []byte) []byte {
	p := []byte{first}
	n := len(body)
	for {
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
		panic(fmt.Sprintf("mqttString: %d bytes", len(s)))
	}
	return append(binary.BigEndian.AppendUint16(b, uint16(len(s))), s...)
}
