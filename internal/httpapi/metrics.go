package httpapi

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/VictoriaMetrics/metrics"

	"github.com/fieldbridge/fieldbridge/adapters"
)

// The metrics are read from the counters every part keeps (Stats,
// Status, the recorder) at scrape time, into a fresh metrics.Set: nothing
// is updated on the poll path for them, and a device that disappears (a
// reload) leaves no stale series behind. Series are per device, never per
// point: 4,000 points make no more series than the devices they are on.

var exposeOnce sync.Once

// handleMetrics writes the Prometheus text format.
func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	exposeOnce.Do(func() { metrics.ExposeMetadata(true) }) // # TYPE lines, once per family
	var buf bytes.Buffer
	s.writeMetrics(&buf)
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	_, _ = w.Write(buf.Bytes())
}

func (s *Server) writeMetrics(w io.Writer) {
	set := metrics.NewSet()
	now := s.now()
	gauge := func(name string, v float64) { set.NewGauge(name, nil).Set(v) }
	counter := func(name string, v uint64) { set.NewCounter(name).Set(v) }
	boolean := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}

	gauge(`fieldbridge_build_info{version=`+quote(s.o.Version)+`}`, 1)
	ready, _ := s.readiness()
	gauge("fieldbridge_ready", boolean(ready))

	var hists []histogram
	for _, b := range s.o.Source.Buses() {
		var bs adapters.BusStatus
		rep, hasStatus := b.Adapter.(adapters.StatusReporter)
		if hasStatus {
			bs = rep.Status()
		}
		bus := `adapter=` + quote(b.busName(&bs))
		if hasStatus {
			counter(`fieldbridge_modbus_wire_bytes_total{`+bus+`,direction="out"}`, bs.BytesOut)
			counter(`fieldbridge_modbus_wire_bytes_total{`+bus+`,direction="in"}`, bs.BytesIn)
			counter(`fieldbridge_modbus_writes_total{`+bus+`,result="ok"}`, bs.Writes.OK)
			counter(`fieldbridge_modbus_writes_total{`+bus+`,result="refused"}`, bs.Writes.Refused)
			counter(`fieldbridge_modbus_writes_total{`+bus+`,result="failed"}`, bs.Writes.Failed)
			hists = append(hists, histogram{labels: bus, h: bs.Durations})
		}
		for i, d := range b.Adapter.Devices() {
			dev := `device=` + quote(d.Name)
			both := `adapter=` + quote(d.Adapter) + `,` + dev
			if dr := b.Recorder.device(d); dr != nil {
				agg := dr.aggregate(b.Recorder.start)
				gauge(`fieldbridge_device_up{`+both+`}`, boolean(dr.snapshot(false).state == stateOnline))
				gauge(`fieldbridge_points_bad{`+dev+`}`, float64(agg.bad))
				gauge(`fieldbridge_points{`+dev+`}`, float64(agg.total))
				if agg.total > 0 {
					gauge(`fieldbridge_point_age_seconds{`+dev+`}`, max(0, now.Sub(agg.stalest).Seconds()))
				}
			}
			if hasStatus && i < len(bs.Devices) {
				for r, n := range bs.Devices[i].Requests {
					counter(`fieldbridge_modbus_requests_total{`+both+`,result="`+adapters.Result(r).String()+`"}`, n)
				}
			}
		}
		// Each bus has its own publisher (a reload restarts it with its
		// bus, and its counters start again from zero, as after a restart
		// of the gateway: Prometheus' rate and increase allow for that).
		if b.Publisher != nil {
			ps := b.Publisher.Stats()
			counter(`fieldbridge_publisher_published_total{`+bus+`}`, uint64(ps.Published))
			counter(`fieldbridge_publisher_unchanged_total{`+bus+`}`, uint64(ps.Unchanged))
			counter(`fieldbridge_publisher_failed_total{`+bus+`}`, uint64(ps.Failed))
		}
	}

	if s.o.Broker != nil {
		b := s.o.Broker.Stats()
		gauge("fieldbridge_broker_clients", float64(b.Clients))
		gauge("fieldbridge_broker_retained", float64(b.Retained))
		counter("fieldbridge_broker_messages_received_total", uint64(b.MessagesReceived))
		counter("fieldbridge_broker_messages_sent_total", uint64(b.MessagesSent))
		counter("fieldbridge_broker_dropped_total", uint64(b.MessagesDropped))
		counter("fieldbridge_broker_auth_failures_total", uint64(b.AuthFailures))
		counter("fieldbridge_broker_publishes_denied_total", uint64(b.PublishesDenied))
		counter("fieldbridge_broker_subscriptions_refused_total", uint64(b.SubscriptionsRefused))
		counter("fieldbridge_broker_connections_refused_total", uint64(b.ConnectionsRefused))
		counter("fieldbridge_broker_queued_expired_total", uint64(b.QueuedExpired))
		counter("fieldbridge_broker_queued_dropped_total", uint64(b.QueuedDropped))
		counter("fieldbridge_broker_inflight_dropped_total", uint64(b.InflightDropped))
	}
	if s.o.Commands != nil {
		c := s.o.Commands.Stats()
		counter("fieldbridge_commands_received_total", uint64(c.Received))
		counter(`fieldbridge_commands_total{result="ok"}`, uint64(c.OK))
		counter(`fieldbridge_commands_total{result="refused"}`, uint64(c.Refused))
		counter(`fieldbridge_commands_total{result="failed"}`, uint64(c.Failed))
		counter("fieldbridge_commands_dropped_total", uint64(c.Dropped))
	}
	if s.o.Auth != nil {
		counter("fieldbridge_http_auth_failures_total", s.authFailures.Load())
	}
	if br := s.o.Source.Bridge(); br != nil {
		bs := br.Stats()
		gauge("fieldbridge_bridge_connected", boolean(bs.Connected))
		counter("fieldbridge_bridge_connects_total", bs.Connects)
		counter("fieldbridge_bridge_reconnects_total", bs.Reconnects)
		counter("fieldbridge_bridge_connect_failures_total", bs.ConnectFailures)
		gauge("fieldbridge_bridge_inflight", float64(bs.InFlight))
		gauge("fieldbridge_bridge_window", float64(bs.Window))
		gauge("fieldbridge_bridge_round_trip_seconds", bs.RoundTrip.Seconds())
		counter("fieldbridge_bridge_batches_total", bs.Batches)
		counter("fieldbridge_bridge_batch_oversize_total", bs.BatchOversize)
		counter("fieldbridge_bridge_queued_total", bs.Queued)
		counter("fieldbridge_bridge_forwarded_total", bs.Forwarded)
		counter("fieldbridge_bridge_acked_total", bs.Acked)
		counter("fieldbridge_bridge_resent_total", bs.Resent)
		counter("fieldbridge_bridge_downlink_received_total", bs.DownlinkReceived)
		gauge("fieldbridge_queue_records", float64(bs.Pending))
		gauge("fieldbridge_queue_bytes", float64(bs.Queue.Bytes))
		gauge("fieldbridge_queue_oldest_age_seconds", oldestAge(bs, now).Seconds())
		for _, d := range []struct {
			reason string
			n      uint64
		}{
			{"full", bs.DroppedFull}, {"expired", bs.Expired}, {"corrupt", bs.Corrupt},
			{"overflow", bs.HandoffOverflow}, {"invalid", bs.DroppedInvalid}, {"shutdown", bs.DroppedShutdown},
		} {
			counter(`fieldbridge_queue_dropped_total{reason="`+d.reason+`"}`, d.n)
		}
		counter("fieldbridge_queue_write_errors_total", bs.QueueWriteErrors)
	}
	if len(hists) > 0 {
		set.RegisterMetricsWriter(func(w io.Writer) { writeHistograms(w, "fieldbridge_modbus_request_duration_seconds", hists) })
	}
	set.WritePrometheus(w)
	metrics.WriteProcessMetrics(w)
}

// histogram is one bus's request durations.
type histogram struct {
	labels string
	h      adapters.Histogram
}

// writeHistograms writes a Prometheus histogram family (cumulative le
// buckets, sum, count) from the adapters' own bucket counts: the poll path
// keeps them in atomics of its own (adapters.DurationHistogram), since
// adapters import nothing outside the standard library.
func writeHistograms(w io.Writer, name string, hs []histogram) {
	fmt.Fprintf(w, "# HELP %s Time from sending a request to having its reply or giving up.\n# TYPE %s histogram\n", name, name)
	for _, h := range hs {
		var cum uint64
		for i, n := range h.h.Counts {
			cum += n
			le := "+Inf"
			if i < len(adapters.DurationBuckets) {
				le = strconv.FormatFloat(adapters.DurationBuckets[i].Seconds(), 'g', -1, 64)
			}
			fmt.Fprintf(w, "%s_bucket{%s,le=%q} %d\n", name, h.labels, le, cum)
		}
		fmt.Fprintf(w, "%s_sum{%s} %g\n", name, h.labels, h.h.Sum.Seconds())
		fmt.Fprintf(w, "%s_count{%s} %d\n", name, h.labels, h.h.Count)
	}
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

// quote renders a Prometheus label value.
func quote(v string) string { return `"` + labelEscaper.Replace(v) + `"` }
