// Package commands carries MQTT commands to the adapters: it subscribes to
// {gateway}/+/+/set on the local broker, parses each command, hands it to the
// adapter that owns the point, and publishes the outcome on the command's
// topic + "/result" (and on an MQTT 5 response topic, with its correlation
// data). Commands from local clients and from the cloud bridge's downlink
// arrive the same way, as publishes on the local broker.
package commands

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fieldbridge/fieldbridge/adapters"
)

// Broker is what the router needs of the local broker; localbroker.Broker
// satisfies it.
type Broker interface {
	Publish(topic string, payload []byte, retain bool, qos byte) error
	PublishResponse(topic string, payload, correlation []byte, qos byte) error
	ClearRetained(topic string)
}

// Message is a publish on a command topic, as the broker received it.
type Message struct {
	Topic   string
	Payload []byte
	// Retain is the flag the publisher set: a retained command is never
	// carried out.
	Retain bool
	// ClientID is the publisher, for the log.
	ClientID string
	// ResponseTopic and CorrelationData are MQTT 5's request/response
	// properties. ResponseDenied is a response topic the broker withheld
	// because the publisher may not publish there (logged, not used).
	ResponseTopic   string
	CorrelationData []byte
	ResponseDenied  string
}

// Suffixes of command and result topics.
const (
	SetSuffix    = "/set"
	ResultSuffix = "/result"
)

// resultQoS is the QoS of result messages.
const resultQoS = 1

// queueSize bounds commands waiting for the router goroutine. The broker's
// handler must never block; beyond this, commands are dropped and counted.
const queueSize = 256

// Router routes commands to adapters.
type Router struct {
	broker Broker
	log    *slog.Logger
	table  atomic.Pointer[table] // replaced whole by Update
	in     chan Message

	received, refused, ok, failed, dropped atomic.Int64
	dropLogged                             atomic.Bool
}

// table is what the router routes to: the gateway id and every point.
type table struct {
	gateway string
	points  map[string]target // "device/point"
	devices map[string]bool
}

type target struct {
	w adapters.Writer // nil: the adapter takes no writes
	p *adapters.Point
}

// Filter is the broker subscription that brings every command: for any
// gateway id, so that a reload that changes the id needs no new
// subscription (commands for other ids are ignored).
const Filter = "+/+/+" + SetSuffix

// New returns a router for the points of the given adapters.
func New(gatewayID string, as []adapters.Adapter, b Broker, log *slog.Logger) *Router {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Router{broker: b, log: log, in: make(chan Message, queueSize)}
	r.Update(gatewayID, as)
	return r
}

// Update routes commands to a new set of adapters, as a reload replaces
// buses; commands already handed to the old ones finish there. Safe to
// call while commands arrive.
func (r *Router) Update(gatewayID string, as []adapters.Adapter) {
	t := &table{gateway: gatewayID, points: map[string]target{}, devices: map[string]bool{}}
	for _, a := range as {
		w, _ := a.(adapters.Writer)
		for _, d := range a.Devices() {
			t.devices[d.Name] = true
			for _, p := range d.Points {
				t.points[d.Name+"/"+p.Name] = target{w: w, p: p}
			}
		}
	}
	r.table.Store(t)
}

// Handle takes a message from the broker's subscription. It never blocks.
func (r *Router) Handle(m Message) {
	select {
	case r.in <- m:
		r.dropLogged.Store(false)
	default:
		r.dropped.Add(1)
		if !r.dropLogged.Swap(true) {
			r.log.Warn("commands arrive faster than they can be handled; dropping them", "queue", queueSize, "topic", m.Topic)
		}
	}
}

// Run handles commands until ctx ends; those still waiting then are
// answered as not sent.
func (r *Router) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			for {
				select {
				case m := <-r.in:
					if _, _, ok := r.table.Load().split(m.Topic); ok {
						_, id, _ := adapters.ParseCommand(m.Payload)
						r.finish(m, id, adapters.WriteResult{Err: fmt.Errorf("%w: the gateway is stopping", adapters.ErrNotSent), Time: time.Now()})
					}
				default:
					return
				}
			}
		case m := <-r.in:
			r.handle(m)
		}
	}
}

// handle checks a command and hands it to its adapter.
func (r *Router) handle(m Message) {
	t := r.table.Load()
	device, point, ok := t.split(m.Topic)
	if !ok {
		return // another gateway's command (the filter takes any id)
	}
	if m.Retain && len(m.Payload) == 0 {
		return // a retained message being deleted: nothing was asked
	}
	r.received.Add(1)
	value, id, perr := adapters.ParseCommand(m.Payload)
	refuse := func(format string, args ...any) {
		r.finish(m, id, adapters.WriteResult{Err: fmt.Errorf("%w: "+format, append([]any{adapters.ErrRefused}, args...)...), Time: time.Now()})
	}
	if m.Retain {
		// A retained command would be carried out again by every restart
		// and replayed to every new subscriber: never execute one, and do
		// not leave it in the broker.
		r.broker.ClearRetained(m.Topic)
		refuse("a retained command is never carried out: publish commands without the retain flag (it was removed from the broker)")
		return
	}
	tg, ok := t.points[device+"/"+point]
	switch {
	case !ok && !t.devices[device]:
		refuse("no device %q", device)
		return
	case !ok:
		refuse("device %s has no point %q", device, point)
		return
	case tg.w == nil:
		refuse("point %s/%s cannot be written: its adapter takes no commands", device, point)
		return
	case perr != nil && tg.p.Writable:
		refuse("%s/%s: %s", device, point, perr)
		return
	}
	// A point that is not writable is refused by its adapter, which knows
	// why (read-only table, or writable not set).
	tg.w.Write(adapters.Command{Point: tg.p, Value: value}, func(res adapters.WriteResult) { r.finish(m, id, res) })
}

// split takes {gateway}/{device}/{point}/set apart; ok is false for
// another gateway id.
func (t *table) split(topic string) (device, point string, ok bool) {
	rest, ok := strings.CutPrefix(topic, t.gateway+"/")
	if !ok {
		return "", "", false
	}
	rest, ok = strings.CutSuffix(rest, SetSuffix)
	if !ok {
		return "", "", false
	}
	device, point, ok = strings.Cut(rest, "/")
	if !ok || device == "" || point == "" || strings.Contains(point, "/") {
		return "", "", false
	}
	return device, point, true
}

// finish publishes a command's result and logs it. It may run on a bus
// goroutine: it must not block.
func (r *Router) finish(m Message, id []byte, res adapters.WriteResult) {
	payload := appendResult(nil, id, res)
	topic := m.Topic + ResultSuffix
	switch {
	case res.Err == nil:
		r.ok.Add(1)
		r.log.Info("command carried out", "topic", m.Topic, "client", m.ClientID, "read_back", res.ReadBack.String())
	case errors.Is(res.Err, adapters.ErrRefused):
		r.refused.Add(1)
		r.log.Info("command refused", "topic", m.Topic, "client", m.ClientID, "err", res.Err)
	default:
		r.failed.Add(1)
		r.log.Warn("command failed", "topic", m.Topic, "client", m.ClientID, "err", res.Err)
	}
	if err := r.broker.Publish(topic, payload, false, resultQoS); err != nil {
		r.log.Warn("cannot publish a command result", "topic", topic, "err", err)
	}
	if m.ResponseDenied != "" {
		r.log.Info("command's response topic ignored: the client may not publish there", "topic", m.Topic, "client", m.ClientID, "response_topic", m.ResponseDenied)
	}
	if m.ResponseTopic == "" {
		return
	}
	if err := checkResponseTopic(m.ResponseTopic); err != nil {
		r.log.Info("command's response topic ignored", "topic", m.Topic, "response_topic", m.ResponseTopic, "err", err)
		return
	}
	if err := r.broker.PublishResponse(m.ResponseTopic, payload, m.CorrelationData, resultQoS); err != nil {
		r.log.Warn("cannot publish a command response", "topic", m.ResponseTopic, "err", err)
	}
}

// checkResponseTopic refuses what must not carry a reply: a topic no
// subscriber could match, and a command topic, where the reply (a JSON
// object with a "value") would be taken for a command and carried out.
func checkResponseTopic(topic string) error {
	if err := adapters.CheckTopic(topic); err != nil {
		return err
	}
	if strings.HasSuffix(topic, SetSuffix) {
		return fmt.Errorf("response topic %q is a command topic (it ends in %s)", topic, SetSuffix)
	}
	return nil
}

// Stats are the router's counters.
type Stats struct {
	// Received commands; OK those the device acknowledged; Refused those
	// refused before the bus; Failed the others (not sent, refused by the
	// device, unknown outcome); Dropped those lost to a full queue.
	Received, OK, Refused, Failed, Dropped int64
}

// Stats returns the router's counters.
func (r *Router) Stats() Stats {
	return Stats{Received: r.received.Load(), OK: r.ok.Load(), Refused: r.refused.Load(), Failed: r.failed.Load(), Dropped: r.dropped.Load()}
}
