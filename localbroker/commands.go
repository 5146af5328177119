package localbroker

import (
	"bytes"
	"fmt"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// What commands need from the broker beyond Subscribe and Publish: the whole
// message as the client sent it (its retain flag and MQTT 5 response topic
// and correlation data), replies carrying correlation data, and removing a
// retained message nobody should ever receive.

// Message is a publish as the broker received it.
type Message struct {
	Topic   string
	Payload []byte
	// Retain is the flag the publisher set, also for live deliveries (MQTT
	// clears it towards ordinary subscribers). A message replayed from the
	// retained store at subscribe time has it set too.
	Retain bool
	QoS    byte
	// ClientID is the publisher: a network client's id, "inline" for
	// Publish, or the origin given to PublishAs.
	ClientID string
	// ResponseTopic and CorrelationData are the MQTT 5 request/response
	// properties (empty for MQTT 3.1.1 clients). A reply is published by
	// the gateway, past the ACLs, so a response topic the publisher may
	// not publish to itself is withheld: ResponseTopic is empty and
	// ResponseDenied names it (and the denial is counted). Otherwise a
	// client could have the gateway publish where its ACL forbids it to.
	ResponseTopic   string
	CorrelationData []byte
	ResponseDenied  string
}

// SubscribeMessages calls handler for every message matching filter,
// retained ones included at once, like Subscribe. The handler gets copies it
// may keep, and runs on the publisher's goroutine: it must not block.
func (b *Broker) SubscribeMessages(filter string, handler func(Message)) (unsubscribe func(), err error) {
	id := int(b.subID.Add(1))
	fn := func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
		m := Message{
			Topic:           pk.TopicName,
			Payload:         bytes.Clone(pk.Payload),
			Retain:          pk.FixedHeader.Retain,
			QoS:             pk.FixedHeader.Qos,
			ClientID:        pk.Origin,
			ResponseTopic:   pk.Properties.ResponseTopic,
			CorrelationData: bytes.Clone(pk.Properties.CorrelationData),
		}
		if m.ResponseTopic != "" && !b.mayPublish(pk.Origin, m.ResponseTopic) {
			m.ResponseTopic, m.ResponseDenied = "", m.ResponseTopic
			b.sec.publishesDenied.Add(1)
		}
		handler(m)
	}
	if err := b.srv.Subscribe(filter, id, fn); err != nil {
		return nil, fmt.Errorf("broker: subscribe %q: %w", filter, err)
	}
	return func() { _ = b.srv.Unsubscribe(filter, id) }, nil
}

// mayPublish reports whether the client that published a message (by its
// id, the message's origin) may publish to topic under the ACLs in force.
// It runs on that client's goroutine, during its publish: the client is
// connected. In-process publishers (the publisher, the bridge's downlink)
// may publish anywhere; an origin that is neither is refused.
func (b *Broker) mayPublish(origin, topic string) bool {
	if cl, ok := b.srv.Clients.Get(origin); ok && !cl.Net.Inline {
		a, user := b.auth.state.Load().aclFor(cl)
		return a.canPublish(topic, user, cl.ID)
	}
	b.mu.Lock()
	_, inProcess := b.origins[origin]
	b.mu.Unlock()
	return inProcess || origin == mqtt.InlineClientId
}

// PublishResponse publishes a reply to an MQTT 5 request: not retained,
// carrying the request's correlation data (which MQTT 3.1.1 subscribers do
// not receive).
func (b *Broker) PublishResponse(topic string, payload, correlation []byte, qos byte) error {
	if b.closed.Load() {
		return ErrClosed
	}
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos},
		TopicName:   topic,
		Payload:     payload,
		PacketID:    uint16(qos), // mochi checks that QoS>0 packets carry an id
	}
	pk.Properties.CorrelationData = correlation
	pk.Properties.ContentType = "application/json"
	return b.srv.InjectPacket(b.responder(), pk)
}

// responder is the in-process client replies are published as. It has the
// inline client's id, so replies look like any in-process publish (the
// bridge forwards them like results).
func (b *Broker) responder() *mqtt.Client {
	const id = mqtt.InlineClientId
	b.mu.Lock()
	defer b.mu.Unlock()
	cl, ok := b.origins[id]
	if !ok {
		cl = b.srv.NewClient(nil, mqtt.LocalListener, id, true)
		b.origins[id] = cl
	}
	return cl
}

// ClearRetained removes the retained message of a topic without delivering
// anything to subscribers (an empty retained publish would reach them).
func (b *Broker) ClearRetained(topic string) {
	if b.closed.Load() {
		return
	}
	b.srv.Topics.RetainMessage(packets.Packet{TopicName: topic})
	atomic.StoreInt64(&b.srv.Info.Retained, int64(b.srv.Topics.Retained.Len()))
}
