package httpapi

import (
	"encoding/json"
	"time"

	"github.com/fieldbridge/fieldbridge/adapters"
	"github.com/fieldbridge/fieldbridge/bridge"
	"github.com/fieldbridge/fieldbridge/internal/commands"
	"github.com/fieldbridge/fieldbridge/localbroker"
)

// Status is what the status page shows and /api/status returns.
type Status struct {
	Gateway       string      `json:"gateway"`
	Version       string      `json:"version"`
	Time          time.Time   `json:"time"`
	UptimeSeconds float64     `json:"uptime_seconds"`
	Ready         bool        `json:"ready"`
	WaitingFor    []string    `json:"waiting_for"`
	Buses         []BusView   `json:"buses"`
	Bridge        *BridgeView `json:"bridge"`
	Broker        *BrokerView `json:"broker"`
	// Commands are the …/set commands handled since the start.
	Commands *CommandsView `json:"commands"`
}

// BusView is one adapter (bus).
type BusView struct {
	Name     string `json:"name"`
	Endpoint string `json:"endpoint,omitempty"`
	// Writes are the bus's command outcomes (null for a bus without
	// writable points that never had a command).
	Writes  *WritesView  `json:"writes"`
	Devices []DeviceView `json:"devices"`
}

// WritesView is a bus's command outcomes since it started (see
// adapters.WriteCounts).
type WritesView struct {
	OK      uint64 `json:"ok"`
	Refused uint64 `json:"refused"`
	Failed  uint64 `json:"failed"`
}

// CommandsView is the command router's counters: commands received, their
// outcomes (refused counts those refused before reaching a bus too), and
// those dropped because they came faster than they could be handled.
type CommandsView struct {
	Received int64 `json:"received"`
	OK       int64 `json:"ok"`
	Refused  int64 `json:"refused"`
	Failed   int64 `json:"failed"`
	Dropped  int64 `json:"dropped"`
}

// DeviceView is one device.
type DeviceView struct {
	Name    string `json:"name"`
	Address string `json:"address,omitempty"`
	// State is online, offline, or unknown (not polled yet).
	State          string            `json:"state"`
	StateSince     *time.Time        `json:"state_since"`
	LastError      string            `json:"last_error,omitempty"`
	LastErrorTime  *time.Time        `json:"last_error_time,omitempty"`
	RequestsOK     uint64            `json:"requests_ok"`
	RequestsFailed uint64            `json:"requests_failed"`
	Requests       map[string]uint64 `json:"requests"`
	PointsBad      int               `json:"points_bad"`
	Points         []PointView       `json:"points"`
}

// PointView is one point's latest reading.
type PointView struct {
	Name string `json:"name"`
	// Value is the JSON value as published (null when never read good).
	Value json.RawMessage `json:"value"`
	Unit  string          `json:"unit,omitempty"`
	// Quality is good, bad, or none (not read yet).
	Quality string `json:"quality"`
	Error   string `json:"error,omitempty"`
	// AgeSeconds is the time since the latest good value; null if never.
	AgeSeconds *float64   `json:"age_seconds"`
	Time       *time.Time `json:"time"`
}

// BridgeView is the cloud bridge.
type BridgeView struct {
	Connected  bool   `json:"connected"`
	Upstream   string `json:"upstream"`
	Backlog    uint64 `json:"backlog"`
	QueueBytes int64  `json:"queue_bytes"`
	// OldestAgeSeconds: see oldestAge.
	OldestAgeSeconds float64 `json:"oldest_age_seconds"`
	InFlight         int     `json:"in_flight"`
	// Window is how many publishes may be in flight now (inflight: auto
	// sizes it to the link); RoundTripSeconds the shortest recent time
	// from a publish to its acknowledgement (0 before the first).
	Window           int     `json:"window"`
	RoundTripSeconds float64 `json:"round_trip_seconds"`
	Forwarded        uint64  `json:"forwarded"`
	Acked            uint64  `json:"acked"`
	Reconnects       uint64  `json:"reconnects"`
	Dropped          uint64  `json:"dropped"`
}

// BrokerView is the embedded broker.
type BrokerView struct {
	Clients          int64 `json:"clients"`
	MessagesReceived int64 `json:"messages_received"`
	MessagesSent     int64 `json:"messages_sent"`
	Dropped          int64 `json:"dropped"`
	// What the broker's security refused: connections for their
	// credentials, certificate or will; publishes and subscriptions by the
	// ACLs; connections beyond max_clients.
	AuthFailures         int64 `json:"auth_failures"`
	PublishesDenied      int64 `json:"publishes_denied"`
	SubscriptionsRefused int64 `json:"subscriptions_refused"`
	ConnectionsRefused   int64 `json:"connections_refused"`
}

// Refusals reports whether the broker refused anything (the page shows
// the counts only then).
func (b *BrokerView) Refusals() bool {
	return b.AuthFailures+b.PublishesDenied+b.SubscriptionsRefused+b.ConnectionsRefused > 0
}

// BrokerStats is the embedded broker as the HTTP side reads it.
type BrokerStats interface{ Stats() localbroker.Stats }

// CommandStats is the command router as the HTTP side reads it.
type CommandStats interface{ Stats() commands.Stats }

// BridgeStats is the cloud bridge as the HTTP side reads it.
type BridgeStats interface{ Stats() bridge.Stats }

var (
	_ BrokerStats  = (*localbroker.Broker)(nil)
	_ BridgeStats  = (*bridge.Bridge)(nil)
	_ CommandStats = (*commands.Router)(nil)
)

// dropped sums every way a message meant for the cloud was lost.
func dropped(st bridge.Stats) uint64 {
	return st.DroppedFull + st.Expired + st.Corrupt + st.HandoffOverflow + st.DroppedInvalid + st.DroppedShutdown
}

// oldestAge is how long the oldest message in the bridge's queue has
// waited: exact, or up to one queue segment's span more (see
// queue.Stats.OldestTime); 0 with nothing queued.
func oldestAge(st bridge.Stats, now time.Time) time.Duration {
	if st.Queue.OldestTime.IsZero() || st.Pending == 0 {
		return 0
	}
	return max(now.Sub(st.Queue.OldestTime), 0)
}

func stateName(s int) string {
	switch s {
	case stateOnline:
		return "online"
	case stateOffline:
		return "offline"
	}
	return "unknown"
}

// status builds the whole Status; device limits it to one device ("" for
// all).
func (s *Server) status(device string) Status {
	now := s.now()
	st := Status{
		Gateway: s.GatewayID(), Version: s.o.Version, Time: now,
		UptimeSeconds: now.Sub(s.start).Seconds(),
		Buses:         []BusView{},
	}
	st.Ready, st.WaitingFor = s.readiness()
	for _, b := range s.o.Source.Buses() {
		bv, reqs := s.busView(&b)
		for i, d := range b.Adapter.Devices() {
			if device != "" && d.Name != device {
				continue
			}
			dv := s.deviceView(b.Recorder, d, now)
			if i < len(reqs) {
				dv.Requests = map[string]uint64{}
				for r, n := range reqs[i].Requests {
					dv.Requests[adapters.Result(r).String()] = n
					if adapters.Result(r) == adapters.ResultOK {
						dv.RequestsOK += n
					} else {
						dv.RequestsFailed += n
					}
				}
				dv.Address = reqs[i].Address
			}
			bv.Devices = append(bv.Devices, dv)
		}
		if device == "" || len(bv.Devices) > 0 {
			st.Buses = append(st.Buses, bv)
		}
	}
	if br := s.o.Source.Bridge(); br != nil {
		bs := br.Stats()
		st.Bridge = &BridgeView{
			Connected: bs.Connected, Upstream: bs.Upstream, Backlog: bs.Pending, QueueBytes: bs.Queue.Bytes,
			OldestAgeSeconds: oldestAge(bs, now).Seconds(),
			InFlight:         bs.InFlight, Window: bs.Window, RoundTripSeconds: bs.RoundTrip.Seconds(),
			Forwarded: bs.Forwarded, Acked: bs.Acked, Reconnects: bs.Reconnects,
			Dropped: dropped(bs),
		}
	}
	if s.o.Broker != nil {
		b := s.o.Broker.Stats()
		st.Broker = &BrokerView{Clients: b.Clients, MessagesReceived: b.MessagesReceived, MessagesSent: b.MessagesSent, Dropped: b.MessagesDropped,
			AuthFailures: b.AuthFailures, PublishesDenied: b.PublishesDenied, SubscriptionsRefused: b.SubscriptionsRefused, ConnectionsRefused: b.ConnectionsRefused}
	}
	if s.o.Commands != nil {
		c := s.o.Commands.Stats()
		st.Commands = &CommandsView{Received: c.Received, OK: c.OK, Refused: c.Refused, Failed: c.Failed, Dropped: c.Dropped}
	}
	return st
}

// busView is a bus without its devices, and the adapter's counters per
// device (nil for an adapter that keeps none).
func (s *Server) busView(b *Bus) (BusView, []adapters.DeviceStatus) {
	if r, ok := b.Adapter.(adapters.StatusReporter); ok {
		bs := r.Status()
		bv := BusView{Name: b.busName(&bs), Endpoint: bs.Endpoint}
		if w := bs.Writes; w != (adapters.WriteCounts{}) || hasWritable(b.Adapter) {
			bv.Writes = &WritesView{OK: w.OK, Refused: w.Refused, Failed: w.Failed}
		}
		return bv, bs.Devices
	}
	return BusView{Name: b.busName(nil)}, nil
}

// hasWritable reports whether any point of a takes commands.
func hasWritable(a adapters.Adapter) bool {
	for _, d := range a.Devices() {
		for _, p := range d.Points {
			if p.Writable {
				return true
			}
		}
	}
	return false
}

func (s *Server) deviceView(rec *Recorder, d *adapters.Device, now time.Time) DeviceView {
	dv := DeviceView{Name: d.Name, State: "unknown", Points: []PointView{}}
	dr := rec.device(d)
	if dr == nil {
		return dv
	}
	snap := dr.snapshot(true)
	dv.State = stateName(snap.state)
	if !snap.since.IsZero() {
		t := snap.since
		dv.StateSince = &t
	}
	if snap.lastErr != nil {
		dv.LastError = snap.lastErr.Error()
		t := snap.lastErrTime
		dv.LastErrorTime = &t
	}
	for i, p := range d.Points {
		pr := snap.points[i]
		pv := PointView{Name: p.Name, Unit: p.Unit, Quality: "none", Value: json.RawMessage("null")}
		if pr.seen {
			t := pr.at
			pv.Time = &t
			pv.Quality = "good"
			if pr.err != nil {
				pv.Quality, pv.Error = "bad", pr.err.Error()
				dv.PointsBad++
			} else {
				pv.Value = pr.value.AppendJSON(nil)
			}
		}
		if !pr.lastGood.IsZero() {
			age := now.Sub(pr.lastGood).Seconds()
			pv.AgeSeconds = &age
		}
		dv.Points = append(dv.Points, pv)
	}
	return dv
}
