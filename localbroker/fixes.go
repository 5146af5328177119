package localbroker

import (
	"sort"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// fixHook works around what third-party clients found in mochi v2.7.9
// (LIBRARIES.md lists them; each has a test in fixes_test.go):
//
//   - the MQTT 5 CONNACK lacks Maximum Packet Size and Topic Alias Maximum;
//   - a 3.1.1 client gets a DISCONNECT at shutdown or takeover, which 3.1.1
//     does not have (mosquitto_sub: "protocol error");
//   - messages queued for an offline MQTT 5 session keep the old
//     connection's topic alias, with an empty topic;
//   - a session's queue is re-sent sorted by the low 16 bits of its
//     creation second, from a map: shuffled within a second, and across
//     the wrap every 18 hours;
//   - outbound packet ids start at 1 on each connection, in the same
//     namespace mochi keeps client packet ids in: mosquitto_sub -c, which
//     resubscribes with id 1, is refused with 0x91, and a client's QoS 1
//     publish deletes the broker's unacknowledged message with its id;
//   - an offline session that expires is deleted without its
//     subscriptions, which stay in the topic index for good.
//
// (Retained values that expired with broker.message_expiry are fixed by not
// giving mochi a maximum message expiry at all: see sweepExpired.)
type fixHook struct {
	mqtt.HookBase
	b *Broker
}

func (*fixHook) ID() string { return "fieldbridge-fixes" }

func (*fixHook) Provides(b byte) bool {
	switch b {
	case mqtt.OnConnect, mqtt.OnSessionEstablish, mqtt.OnPacketEncode, mqtt.OnClientExpired:
		return true
	}
	return false
}

// firstPacketID is where the broker's packet ids start on a connection:
// clients count theirs from 1, so the two rarely meet.
const firstPacketID = 32768

// OnConnect runs after the CONNECT is parsed, before the session exists.
func (h *fixHook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	// max_clients, as mochi would check it (it is told no limit, so that a
	// reload can change this one).
	if atomic.LoadInt64(&h.b.srv.Info.ClientsConnected) >= h.b.maxClients.Load() {
		code := packets.ErrServerBusy
		if cl.Properties.ProtocolVersion < 5 {
			code = packets.ErrServerUnavailable
		}
		_ = h.b.srv.SendConnack(cl, code, false, nil)
		return code
	}
	// No outbound topic aliases for sessions that outlive the connection:
	// what is queued for them is re-sent on a connection that never saw
	// the alias. (Clean sessions keep them.)
	if cl.Properties.ProtocolVersion == 5 && cl.Properties.Props.SessionExpiryInterval > 0 {
		cl.Properties.Props.TopicAliasMaximum = 0
	}
	// mochi has no way to set the counter; taking ids costs ~1 ms once
	// per connection.
	for i := 1; i < firstPacketID; i++ {
		if _, err := cl.NextPacketID(); err != nil {
			break
		}
	}
	return nil
}

// OnClientExpired runs in mochi's loop just before it deletes an expired
// offline session: take its subscriptions with it.
func (h *fixHook) OnClientExpired(cl *mqtt.Client) {
	h.b.srv.UnsubscribeClient(cl)
}

// OnSessionEstablish runs before mochi hands a resumed session's queue to
// the new connection: put the queue in the order it was sent.
func (h *fixHook) OnSessionEstablish(cl *mqtt.Client, pk packets.Packet) {
	if pk.Connect.Clean {
		return
	}
	old, ok := h.b.srv.Clients.Get(cl.ID)
	if !ok || old == cl || (old.Properties.Clean && old.Properties.ProtocolVersion < 5) {
		return
	}
	h.b.reorderQueue(old)
}

// reorderQueue restamps a session's queued publishes so that mochi's resend
// sort (by uint16 of the creation second) yields the order they were given
// packet ids in, which is the order they were queued: ids are handed out
// cyclically, so the oldest is the farthest behind the next id.
func (b *Broker) reorderQueue(cl *mqtt.Client) {
	var pubs []packets.Packet
	for _, p := range cl.State.Inflight.GetAll(false) {
		if p.FixedHeader.Type != packets.Publish {
			continue
		}
		if p.TopicName == "" {
			// Queued with an alias of a connection that is gone: no new
			// connection can resolve it.
			if cl.State.Inflight.Delete(p.PacketID) {
				atomic.AddInt64(&b.srv.Info.Inflight, -1)
				b.aliasDropped.Add(1)
			}
			continue
		}
		pubs = append(pubs, p)
	}
	if len(pubs) == 0 {
		return
	}
	ref, err := cl.NextPacketID()
	if err != nil {
		ref = 0
	}
	behind := func(id uint16) int { return (int(ref) - int(id) + 65535) % 65535 }
	sort.Slice(pubs, func(i, j int) bool { return behind(pubs[i].PacketID) > behind(pubs[j].PacketID) })
	created := make([]int64, len(pubs))
	for i, p := range pubs {
		created[i] = p.Created
	}
	for i, s := range restamp(created) {
		p := pubs[i]
		p.Created = s
		if p.Expiry < 0 {
			// mochi's mark for "send when quota frees": the resend sends
			// everything, and the mark would send it a second time.
			p.Expiry = 0
		}
		p.Properties.TopicAliasFlag, p.Properties.TopicAlias = false, 0
		cl.State.Inflight.Set(p)
	}
}

// restamp returns creation seconds, in queue order, whose low 16 bits
// increase strictly and which are never earlier than the real ones (so a
// queued message never expires early; it may expire a few seconds late).
func restamp(real []int64) []int64 {
	out := make([]int64, len(real))
	greedy := func(floor int64) {
		prev := floor - 1
		for i, r := range real {
			v := max(r, prev+1)
			out[i], prev = v, v
		}
	}
	greedy(real[0])
	if last := out[len(out)-1]; out[0]>>16 != last>>16 {
		// The run crosses a wrap of the low 16 bits: start it at the
		// beginning of the last epoch instead.
		greedy(last >> 16 << 16)
	}
	return out
}

// OnPacketEncode adjusts packets just before they are written.
func (h *fixHook) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	switch pk.FixedHeader.Type {
	case packets.Connack:
		if cl.Properties.ProtocolVersion == 5 && pk.ReasonCode < packets.ErrUnspecifiedError.Code {
			caps := h.b.srv.Options.Capabilities
			pk.Properties.MaximumPacketSize = caps.MaximumPacketSize
			pk.Properties.TopicAliasMaximum = caps.TopicAliasMaximum
		}
	case packets.Disconnect:
		if cl.Properties.ProtocolVersion < 5 {
			// 3.1.1 has no server DISCONNECT: a packet type that cannot be
			// encoded makes mochi write nothing, and it then closes the
			// connection as it meant to.
			pk.FixedHeader.Type = packets.Reserved
		}
	}
	return pk
}

// sweepExpired drops queued messages older than message_expiry, once a
// second until done closes. mochi would do it too, given a maximum message
// expiry, but it also deletes every retained value older than that, and
// retained values must live until replaced.
func (b *Broker) sweepExpired(done <-chan struct{}) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case now := <-t.C:
			maxAge := int64(time.Duration(b.messageExpiry.Load()) / time.Second)
			for _, cl := range b.srv.Clients.GetAll() {
				if cl.State.Inflight.Len() > 0 {
					n := len(cl.ClearExpiredInflights(now.Unix(), maxAge))
					b.expired.Add(int64(n))
				}
			}
		}
	}
}
