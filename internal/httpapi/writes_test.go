package httpapi

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/fieldbridge/fieldbridge/adapters"
	"github.com/fieldbridge/fieldbridge/internal/commands"
	"github.com/fieldbridge/fieldbridge/localbroker"
)

// writesAdapter is a bus that counts commands.
type writesAdapter struct {
	statusAdapter
	writes adapters.WriteCounts
}

func (a *writesAdapter) Status() adapters.BusStatus {
	st := a.statusAdapter.Status()
	st.Writes = a.writes
	return st
}

type brokerStats localbroker.Stats

func (b brokerStats) Stats() localbroker.Stats { return localbroker.Stats(b) }

type commandStats commands.Stats

func (c commandStats) Stats() commands.Stats { return commands.Stats(c) }

// TestWritesAndRefusals: the write outcomes of each bus, the command
// router's counters and what the broker's security refused are metrics,
// in /api/status and on the page; a bus without writable points and
// without commands shows no writes line.
func TestWritesAndRefusals(t *testing.T) {
	pump := testDevice("pump", "speed", "flow")
	pump.Points[0].Writable = true
	wa := &writesAdapter{statusAdapter: statusAdapter{fakeAdapter: fakeAdapter{[]*adapters.Device{pump}}, name: "line"},
		writes: adapters.WriteCounts{OK: 5, Refused: 2, Failed: 1}}
	ro, _ := newBus("steady", testDevice("boiler", "temp"))
	as := []adapters.Adapter{wa}
	adapters.Number(as)
	line := Bus{Name: "line", Adapter: wa, Recorder: NewRecorder(as, nullSink{}, time.Now())}
	s, err := New(Options{
		Config: checkedConfig(t, Config{Listen: str("")}), Source: FixedSource([]Bus{line, ro}, nil),
		Broker:   brokerStats{Clients: 2, AuthFailures: 3, PublishesDenied: 4, SubscriptionsRefused: 1, ConnectionsRefused: 6, QueuedExpired: 7, QueuedDropped: 8, InflightDropped: 9},
		Commands: commandStats{Received: 10, OK: 5, Refused: 3, Failed: 1, Dropped: 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	s.writeMetrics(&b)
	m := b.String()
	for _, want := range []string{
		`fieldbridge_modbus_writes_total{adapter="line",result="ok"} 5`,
		`fieldbridge_modbus_writes_total{adapter="line",result="refused"} 2`,
		`fieldbridge_modbus_writes_total{adapter="line",result="failed"} 1`,
		`fieldbridge_modbus_writes_total{adapter="steady",result="ok"} 0`,
		"fieldbridge_broker_auth_failures_total 3\n",
		"fieldbridge_broker_publishes_denied_total 4\n",
		"fieldbridge_broker_subscriptions_refused_total 1\n",
		"fieldbridge_broker_connections_refused_total 6\n",
		"fieldbridge_broker_queued_expired_total 7\n",
		"fieldbridge_broker_queued_dropped_total 8\n",
		"fieldbridge_broker_inflight_dropped_total 9\n",
		"fieldbridge_commands_received_total 10\n",
		`fieldbridge_commands_total{result="ok"} 5`,
		`fieldbridge_commands_total{result="refused"} 3`,
		`fieldbridge_commands_total{result="failed"} 1`,
		"fieldbridge_commands_dropped_total 1\n",
		"# TYPE fieldbridge_commands_total counter",
	} {
		if !strings.Contains(m, want) {
			t.Errorf("no %q in\n%s", want, m)
		}
	}
	if strings.Contains(m, "fieldbridge_http_auth_failures_total") {
		t.Error("auth failures counted without authentication")
	}

	st := s.status("")
	if w := st.Buses[0].Writes; w == nil || *w != (WritesView{OK: 5, Refused: 2, Failed: 1}) || st.Buses[1].Writes != nil {
		t.Errorf("writes in the status: %+v, %+v", st.Buses[0].Writes, st.Buses[1].Writes)
	}
	if c := st.Commands; c == nil || *c != (CommandsView{Received: 10, OK: 5, Refused: 3, Failed: 1, Dropped: 1}) {
		t.Errorf("commands in the status: %+v", st.Commands)
	}
	if br := st.Broker; br == nil || br.AuthFailures != 3 || br.PublishesDenied != 4 || br.SubscriptionsRefused != 1 || br.ConnectionsRefused != 6 {
		t.Errorf("broker in the status: %+v", st.Broker)
	}

	rec := httptest.NewRecorder()
	s.handlePage(rec, httptest.NewRequest("GET", "/", nil))
	page := rec.Body.String()
	for _, want := range []string{
		`id="writes-line">writes ok 5 · refused 2 · failed 1<`,
		`refused: logins 3 · publishes 4 · subscriptions 1 · connections 6`,
		`<strong>commands</strong><span><b>10</b> received</span><span class="muted">ok 5 · refused 3 · failed 1 · dropped 1</span>`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the page does not show %q:\n%s", want, page)
		}
	}
	if strings.Contains(page, `id="writes-steady"`) {
		t.Error("a bus without writable points shows writes")
	}
}
