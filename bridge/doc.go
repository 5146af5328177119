// Package bridge carries messages between the gateway's local broker and a
// cloud MQTT broker, with store-and-forward: every local message matching a
// forward rule enters a durable queue (package queue), which writes to disk
// whatever the cloud has not acknowledged within the sync interval, and
// leaves it only once the cloud broker acknowledged it, so outages of any
// length that the quota holds, crashes and power cuts lose nothing that
// reached the disk.
//
// # Flow and goroutines
//
//	local broker ──handler──► hand-off channel ──writer──► queue ──sender──► paho ──► cloud
//	                                                              ◄──────── tokens
//	local broker ◄──PublishAs── downlink handler (paho) ◄──────────────────────────── cloud
//
// Run owns every goroutine it starts and waits for each:
//
//   - the writer (handoff.go) batches records from the hand-off channel
//     into queue.Append; the broker's handler only copies and hands off;
//   - the session loop (session.go) is the only place that connects: one
//     fresh paho client per connection, paho's own reconnect off,
//     backoff with jitter, failover across upstreams;
//   - per connection, the sender (sender.go) publishes while the window
//     (window.go: sized to the link) and the rate limit allow, packs the
//     records of batching rules into batches (batch.go), and confirms
//     acknowledgements in order.
//
// # Delivery
//
// At-least-once, in order per topic: the queue is FIFO, a record is
// acknowledged in the queue only when its token completed without error on
// the connection that is still current, and after any error the next
// connection resends from the oldest unacknowledged record. The cloud may
// see again what was in flight when a link died (at most the window, at most
// max_inflight), and, after a crash or power cut, the records acknowledged
// since the queue last persisted its cursor (package queue: at most about a
// sync interval's worth, none while the link keeps up).
//
// QoS 0 forward rules are queued like the others, but a QoS 0 publish has no
// acknowledgement: it counts as delivered once paho wrote it to the
// connection. If the link dies at that moment, the messages written to it
// and not yet read by the broker are lost (at most the window).
//
// # Status topic
//
// After every connect the bridge publishes "online" (retained, QoS 1) to
// the status topic, ahead of any data on the same connection; the will on the same topic is "offline"
// (retained, QoS 1). A clean shutdown publishes "offline" and disconnects
// so the will does not fire; a connection the bridge drops because it
// stopped working is closed without DISCONNECT, so the broker publishes the
// will and the cloud sees "offline" until the gateway is back.
package bridge
