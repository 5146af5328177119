package bridge

import (
	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// downlinkHandler returns the paho handler of one subscribe rule. It runs
// on paho's router goroutine, in order; the local publish is in-process
// and does not block.
//
// A message is acknowledged to the cloud broker only after it was
// published locally (auto-ack is off): one that could not be (the local
// broker is shutting down) stays unacknowledged, and a persistent session
// would deliver it again. It is published locally without the retain flag:
// a command kept by the local broker would be replayed to every new local
// subscriber. Messages published here carry the bridge's origin, so the
// forward rules never send them back up.
func (b *Bridge) downlinkHandler(r *SubscribeRule) mqtt.MessageHandler {
	return func(_ mqtt.Client, m mqtt.Message) {
		defer func() {
			// A panic here would end paho's router goroutine, and with it
			// the process; the message stays unacknowledged instead.
			if p := recover(); p != nil {
				b.st.downFailed.Add(1)
				b.log.Error("downlink handler panicked", "topic", m.Topic(), "panic", p)
			}
		}()
		b.st.downReceived.Add(1)
		if m.Retained() && !r.AcceptRetained {
			b.st.downRetained.Add(1)
			b.log.Info("retained cloud message ignored (accept_retained is off)", "topic", m.Topic())
			m.Ack()
			return
		}
		local, ok := r.localTopic(m.Topic())
		if !ok {
			b.st.downFailed.Add(1)
			b.log.Warn("cloud message does not start with strip_prefix, ignored", "topic", m.Topic(), "strip_prefix", r.StripPrefix)
			m.Ack()
			return
		}
		if err := b.src.PublishAs(b.origin, local, m.Payload(), false, m.Qos()); err != nil {
			b.st.downFailed.Add(1)
			b.log.Error("cannot publish cloud message locally", "topic", local, "err", err)
			return
		}
		m.Ack()
	}
}
