// Package publisher turns adapter samples into MQTT messages on the local
// broker: one retained JSON payload per point topic, published on change (or
// every poll), with a bad-quality payload once per change of error, and the
// devices' availability.
package publisher

import (
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fieldbridge/fieldbridge/adapters"
)

// Broker is where messages go; localbroker.Broker satisfies it.
type Broker interface {
	Publish(topic string, payload []byte, retain bool, qos byte) error
}

// QoS of value and availability messages: subscribers get the lower of this
// and the QoS they asked for.
const qos = 1

// Publisher implements adapters.Sink.
type Publisher struct {
	broker Broker
	log    *slog.Logger
	state  []pointState // indexed by Point.ID
	bufs   sync.Pool

	published, unchanged, failed atomic.Int64
	errLogged                    atomic.Bool
}

var _ adapters.Sink = (*Publisher)(nil)

// pointState is what was last published for a point. Each point belongs to
// exactly one bus goroutine, so its state needs no lock.
type pointState struct {
	published bool
	good      bool
	value     adapters.Value
	errText   string
}

// New returns a publisher for the given points (numbered by adapters.Number).
func New(b Broker, points []*adapters.Point, log *slog.Logger) *Publisher {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Publisher{broker: b, log: log, state: make([]pointState, len(points))}
	p.bufs.New = func() any { b := make([]byte, 0, 256); return &b }
	return p
}

// Publish publishes the samples of one request.
func (p *Publisher) Publish(samples []adapters.Sample) {
	bp := p.bufs.Get().(*[]byte)
	buf := *bp
	var ts []byte // formatted once per batch: one request, one timestamp
	var tsTime time.Time
	for i := range samples {
		s := &samples[i]
		pt := s.Point
		st := &p.state[pt.ID]
		if s.Err == nil && !s.Force && !p.changed(st, pt, s.Value) {
			p.unchanged.Add(1)
			continue
		}
		var errText string
		if s.Err != nil {
			errText = s.Err.Error()
			if st.published && !st.good && st.errText == errText {
				p.unchanged.Add(1)
				continue
			}
		}
		if ts == nil || !s.Time.Equal(tsTime) {
			tsTime = s.Time
			ts = appendTime(ts[:0], s.Time)
		}
		if s.Err == nil {
			buf = appendGood(buf[:0], s.Value, ts, pt.Unit)
		} else {
			buf = appendBad(buf[:0], errText, ts)
		}
		if !p.send(pt.Topic, buf) {
			continue // state unchanged: try again next time
		}
		st.published = true
		st.good = s.Err == nil
		st.value = s.Value
		st.errText = errText
	}
	*bp = buf
	p.bufs.Put(bp)
}

// changed reports whether a good value must be published.
func (p *Publisher) changed(st *pointState, pt *adapters.Point, v adapters.Value) bool {
	switch {
	case !st.published || !st.good || pt.Publish == adapters.EveryPoll:
		return true
	case pt.Deadband > 0:
		n, ok1 := v.Number()
		last, ok2 := st.value.Number()
		if ok1 && ok2 {
			return math.Abs(n-last) >= pt.Deadband
		}
	}
	return !v.Equal(st.value)
}

// Availability publishes a device's "online"/"offline", retained.
func (p *Publisher) Availability(d *adapters.Device, online bool) {
	payload := "offline"
	if online {
		payload = "online"
	}
	p.send(d.AvailabilityTopic, []byte(payload))
}

func (p *Publisher) send(topic string, payload []byte) bool {
	if err := p.broker.Publish(topic, payload, true, qos); err != nil {
		p.failed.Add(1)
		if !p.errLogged.Swap(true) {
			p.log.Warn("publishing to the local broker failed", "topic", topic, "err", err)
		}
		return false
	}
	p.errLogged.Store(false)
	p.published.Add(1)
	return true
}

// Stats are the publisher's counters.
type Stats struct {
	// Published messages; Unchanged samples not published (on_change,
	// repeated errors); Failed publishes.
	Published, Unchanged, Failed int64
}

// Stats returns the publisher's counters.
func (p *Publisher) Stats() Stats {
	return Stats{Published: p.published.Load(), Unchanged: p.unchanged.Load(), Failed: p.failed.Load()}
}
