package testpeer

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

// MQTT control packet types the proxy looks at.
const (
	mqttPublish = 3
	mqttPuback  = 4
	mqttPubrec  = 5
)

// readMQTTPacket reads one whole MQTT control packet (fixed header,
// remaining length, body) and returns its bytes.
func readMQTTPacket(r *bufio.Reader) ([]byte, error) {
	first, err := r.ReadByte()
	if err != nil {
		return nil, err
	}
	hdr := []byte{first}
	var n, shift int
	for i := 0; ; i++ {
		if i == 4 {
			return nil, errors.New("mqtt: remaining length over 4 bytes")
		}
		b, err := r.ReadByte()
		if err != nil {
			return nil, noEOF(err)
		}
		hdr = append(hdr, b)
		n |= int(b&0x7f) << shift
		shift += 7
		if b&0x80 == 0 {
			break
		}
	}
	pkt := make([]byte, len(hdr)+n)
	copy(pkt, hdr)
	if _, err := io.ReadFull(r, pkt[len(hdr):]); err != nil {
		return nil, noEOF(err)
	}
	return pkt, nil
}

func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// mqttPacketLen returns the length of the whole packet at the start of b,
// or 0 when b does not hold a whole one.
func mqttPacketLen(b []byte) int {
	n, shift := 0, 0
	for i := 1; i < len(b) && i <= 4; i++ {
		n |= int(b[i]&0x7f) << shift
		shift += 7
		if b[i]&0x80 == 0 {
			if total := i + 1 + n; total <= len(b) {
				return total
			}
			return 0
		}
	}
	return 0
}

// body returns the variable header and payload of a whole packet.
func mqttBody(pkt []byte) []byte {
	i := 1
	for i < len(pkt) && pkt[i]&0x80 != 0 {
		i++
	}
	return pkt[i+1:]
}

// publishID returns the packet id of a QoS 1 or 2 PUBLISH.
func publishID(pkt []byte) (uint16, bool) {
	if pkt[0]>>4 != mqttPublish || (pkt[0]>>1)&3 == 0 {
		return 0, false
	}
	b := mqttBody(pkt)
	if len(b) < 2 {
		return 0, false
	}
	tl := int(binary.BigEndian.Uint16(b))
	if len(b) < 2+tl+2 {
		return 0, false
	}
	return binary.BigEndian.Uint16(b[2+tl:]), true
}

// ackID returns the packet id of a PUBACK or PUBREC.
func ackID(pkt []byte) (uint16, bool) {
	if t := pkt[0] >> 4; t != mqttPuback && t != mqttPubrec {
		return 0, false
	}
	b := mqttBody(pkt)
	if len(b) < 2 {
		return 0, false
	}
	return binary.BigEndian.Uint16(b), true
}

// mqttGate is the broker side of one proxied MQTT connection as a cloud
// broker with a per-client limit sees it (AWS IoT Core: 100 unacknowledged
// QoS 1 publishes; then it stops reading until it has acknowledged some).
type mqttGate struct {
	max int
	st  *proxyCounters

	mu      sync.Mutex
	cond    *sync.Cond
	unacked map[uint16]struct{}
	closed  bool
}

func newMQTTGate(max int, st *proxyCounters) *mqttGate {
	g := &mqttGate{max: max, st: st, unacked: map[uint16]struct{}{}}
	g.cond = sync.NewCond(&g.mu)
	return g
}

// admit lets a publish through to the broker, first waiting while the
// limit is reached. It reports false once the gate is closed.
func (g *mqttGate) admit(id uint16) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.max > 0 && len(g.unacked) >= g.max {
		g.st.stall()
		for !g.closed && len(g.unacked) >= g.max {
			g.cond.Wait()
		}
	}
	if g.closed {
		return false
	}
	g.unacked[id] = struct{}{}
	g.st.peak(len(g.unacked))
	return true
}

// acked releases a publish once the broker's acknowledgement leaves it.
func (g *mqttGate) acked(id uint16) {
	g.mu.Lock()
	delete(g.unacked, id)
	g.cond.Broadcast()
	g.mu.Unlock()
}

func (g *mqttGate) close() {
	g.mu.Lock()
	g.closed = true
	g.cond.Broadcast()
	g.mu.Unlock()
}

// proxyCounters are what a Proxy saw, over all its connections.
type proxyCounters struct {
	mu     sync.Mutex
	max    int
	stalls int
}

func (s *proxyCounters) peak(n int) {
	s.mu.Lock()
	s.max = max(s.max, n)
	s.mu.Unlock()
}

func (s *proxyCounters) stall() {
	s.mu.Lock()
	s.stalls++
	s.mu.Unlock()
}

// ProxyStats are the MQTT-level observations of a Proxy with MaxUnacked or
// AckDelay set.
type ProxyStats struct {
	// MaxUnacked is the most QoS 1/2 publishes seen unacknowledged at the
	// broker at once on one connection.
	MaxUnacked int
	// Stalls counts how often the MaxUnacked limit held the client back.
	Stalls int
}

func (s *proxyCounters) snapshot() ProxyStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return ProxyStats{MaxUnacked: s.max, Stalls: s.stalls}
}

func (s ProxyStats) String() string {
	return fmt.Sprintf("max unacked %d, stalls %d", s.MaxUnacked, s.Stalls)
}
