package httpapi

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fieldbridge/fieldbridge/adapters"
	"github.com/fieldbridge/fieldbridge/bridge"
	"github.com/fieldbridge/fieldbridge/internal/testpeer"
)

// What the HTTP side must do across a reload of the gateway: follow the
// buses and the bridge as they are now, keep readiness once earned, keep a
// restarted bus's last readings, and move its own listener.

// liveSource is a Source a test changes as a reload would.
type liveSource struct {
	mu     sync.Mutex
	buses  []Bus
	bridge BridgeStats
}

func (s *liveSource) Buses() []Bus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buses
}

func (s *liveSource) Bridge() BridgeStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bridge
}

func (s *liveSource) set(bridge BridgeStats, buses ...Bus) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buses, s.bridge = buses, bridge
}

// statusAdapter reports a bus status; its first cycle is done when cycled
// is set.
type statusAdapter struct {
	fakeAdapter
	name   string
	cycled atomic.Bool
	ok     atomic.Uint64
}

func (a *statusAdapter) Status() adapters.BusStatus {
	st := adapters.BusStatus{Name: a.name, FirstCycleDone: a.cycled.Load()}
	for _, d := range a.devs {
		ds := adapters.DeviceStatus{Device: d}
		ds.Requests[adapters.ResultOK] = a.ok.Load()
		st.Devices = append(st.Devices, ds)
	}
	return st
}

func newBus(name string, devs ...*adapters.Device) (Bus, *statusAdapter) {
	a := &statusAdapter{fakeAdapter: fakeAdapter{devs}, name: name}
	as := []adapters.Adapter{a}
	adapters.Number(as)
	return Bus{Name: name, Adapter: a, Recorder: NewRecorder(as, nullSink{}, time.Now())}, a
}

type bridgeStats bridge.Stats

func (b bridgeStats) Stats() bridge.Stats { return bridge.Stats(b) }

func checkedConfig(t *testing.T, c Config) Config {
	t.Helper()
	var r reporter
	c.Check(nil, false, &r)
	if len(r.errs) > 0 {
		t.Fatal(r.errs)
	}
	return c
}

// TestReadinessAcrossReload: not ready while the gateway starts or a bus
// has not cycled; ready for good once it was, even when a reload then
// brings a bus that has not cycled yet; a bus that replaced one which had
// cycled does not hold up a gateway that was not ready yet.
func TestReadinessAcrossReload(t *testing.T) {
	var started atomic.Bool
	line, lineA := newBus("line", testDevice("meter", "power"))
	src := &liveSource{}
	src.set(nil, line)
	s, err := New(Options{Config: checkedConfig(t, Config{Listen: str("")}), Source: src, Started: started.Load})
	if err != nil {
		t.Fatal(err)
	}
	if ok, w := s.readiness(); ok || len(w) != 1 || w[0] != "gateway: starting" {
		t.Fatalf("while starting: %v %q", ok, w)
	}
	started.Store(true)
	if ok, w := s.readiness(); ok || len(w) != 1 || w[0] != "bus line: first cycle" {
		t.Fatalf("before the first cycle: %v %q", ok, w)
	}
	// A reload restarts the bus after its first cycle, before anybody
	// asked: the new one counts with its predecessor's cycle.
	lineA.cycled.Store(true)
	restarted, _ := newBus("line", testDevice("meter", "power"))
	restarted.CycledBefore = true
	added, addedA := newBus("new", testDevice("drive", "speed"))
	src.set(nil, restarted, added)
	if ok, w := s.readiness(); ok || len(w) != 1 || w[0] != "bus new: first cycle" {
		t.Fatalf("after a reload that restarted a cycled bus and added one: %v %q", ok, w)
	}
	addedA.cycled.Store(true)
	if ok, _ := s.readiness(); !ok {
		t.Fatal("not ready once every bus cycled")
	}
	// Ready for good: a later reload with a fresh bus and a bridge that has
	// never connected changes nothing.
	fresh, _ := newBus("other", testDevice("pump", "on"))
	src.set(bridgeStats{Upstream: "tcp://cloud:1883"}, fresh)
	if ok, w := s.readiness(); !ok || len(w) != 0 {
		t.Fatalf("after a later reload: %v %q", ok, w)
	}
}

// TestMetricsFollowTheSource: a bus removed by a reload leaves no series;
// a restarted one shows its new counters; the bridge's window metrics.
func TestMetricsFollowTheSource(t *testing.T) {
	steady, steadyA := newBus("steady", testDevice("boiler", "temp"))
	line, _ := newBus("line", testDevice("meter", "power"), testDevice("drive", "speed"))
	steadyA.ok.Store(7)
	src := &liveSource{}
	src.set(bridgeStats{Connected: true, Connects: 1, Window: 48, RoundTrip: 35 * time.Millisecond, Batches: 3, BatchOversize: 1}, steady, line)
	s, err := New(Options{Config: checkedConfig(t, Config{Listen: str("")}), Source: src})
	if err != nil {
		t.Fatal(err)
	}
	metrics := func() string {
		var b strings.Builder
		s.writeMetrics(&b)
		return b.String()
	}
	m := metrics()
	for _, want := range []string{
		`fieldbridge_device_up{adapter="bus",device="drive"} 0`,
		`fieldbridge_modbus_requests_total{adapter="bus",device="boiler",result="ok"} 7`,
		"fieldbridge_bridge_connected 1\n",
		"fieldbridge_bridge_window 48\n",
		"fieldbridge_bridge_round_trip_seconds 0.035\n",
		"fieldbridge_bridge_batches_total 3\n",
		"fieldbridge_bridge_batch_oversize_total 1\n",
	} {
		if !strings.Contains(m, want) {
			t.Errorf("before the reload: no %q in\n%s", want, m)
		}
	}
	rec := httptest.NewRecorder()
	s.handlePage(rec, httptest.NewRequest("GET", "/", nil))
	if page := rec.Body.String(); !strings.Contains(page, "in flight 0 of 48") || !strings.Contains(page, "round trip 35 ms") {
		t.Errorf("the page does not show the window and the round trip:\n%s", between(page, `id="bridge"`, "</div>"))
	}
	if st := s.status(""); st.Bridge == nil || st.Bridge.Window != 48 || st.Bridge.RoundTripSeconds != 0.035 {
		t.Errorf("status bridge: %+v", st.Bridge)
	}

	// The reload: drive removed, line restarted, the bridge removed.
	restarted, _ := newBus("line", testDevice("meter", "power"))
	restarted.Recorder.Inherit(line.Recorder)
	src.set(nil, steady, restarted)
	m = metrics()
	if strings.Contains(m, `"drive"`) || strings.Contains(m, "fieldbridge_bridge_") || strings.Contains(m, "fieldbridge_queue_") {
		t.Errorf("after the reload, series of what is gone:\n%s", m)
	}
	if !strings.Contains(m, `fieldbridge_points{device="meter"} 1`) || !strings.Contains(m, `fieldbridge_modbus_requests_total{adapter="bus",device="boiler",result="ok"} 7`) {
		t.Errorf("after the reload:\n%s", m)
	}
	if st := s.status(""); len(st.Buses) != 2 || len(st.Buses[1].Devices) != 1 || st.Buses[1].Devices[0].Name != "meter" || st.Bridge != nil {
		t.Errorf("status after the reload: %+v", st)
	}
}

// TestRecorderInherit: a recorder that replaces another takes over the
// devices and points it has too, by name, and the start.
func TestRecorderInherit(t *testing.T) {
	a, b := testDevice("a", "x", "y"), testDevice("b", "z")
	old := []adapters.Adapter{adapterOf(a, b)}
	adapters.Number(old)
	start := time.Unix(1000, 0)
	prev := NewRecorder(old, nullSink{}, start)
	at := start.Add(time.Minute)
	fail := errors.New("unit 1: no response")
	prev.Publish([]adapters.Sample{{Point: a.Points[0], Value: adapters.Int(1), Time: at}, {Point: a.Points[1], Value: adapters.Int(2), Time: at}})
	prev.Publish([]adapters.Sample{{Point: b.Points[0], Err: fail, Time: at}})
	prev.Availability(a, true)
	prev.Availability(b, false)

	// The new config: a lost x and gained w; b is gone; c is new.
	a2, c := testDevice("a", "y", "w"), testDevice("c", "v")
	next := []adapters.Adapter{adapterOf(a2, c)}
	adapters.Number(next)
	r := NewRecorder(next, nullSink{}, start.Add(time.Hour))
	r.Inherit(prev)
	if !r.start.Equal(start) {
		t.Errorf("start %v, want the predecessor's %v", r.start, start)
	}
	sa := r.byDev[a2].snapshot(true)
	if sa.state != stateOnline || !sa.points[0].seen || sa.points[0].value != adapters.Int(2) || !sa.points[0].lastGood.Equal(at) || sa.points[1].seen {
		t.Errorf("a: %+v", sa)
	}
	if sc := r.byDev[c].snapshot(true); sc.state != stateUnknown || sc.points[0].seen {
		t.Errorf("c (new): %+v", sc)
	}
	// What the new bus records replaces what was inherited.
	later := at.Add(time.Second)
	r.Publish([]adapters.Sample{{Point: a2.Points[0], Err: fail, Time: later}})
	if g := r.byDev[a2].aggregate(r.start); g.bad != 1 || !g.stalest.Equal(start) {
		t.Errorf("a after a new reading: %+v (w never read: stalest is the start)", g)
	}
}

// TestReconfigureListener: a reload moves the listener to a new address,
// switches it to HTTPS on the same address, refuses a taken address while
// serving on, turns it off and on again; uptime and readiness carry on.
func TestReconfigureListener(t *testing.T) {
	bus, busA := newBus("line", testDevice("meter", "power"))
	busA.cycled.Store(true)
	first, second := freeAddr(t), freeAddr(t)
	s, err := New(Options{Config: checkedConfig(t, Config{Listen: str(first)}), Source: FixedSource([]Bus{bus}, nil)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	certs := testpeer.GenerateCerts(t, t.TempDir())
	pem, err := os.ReadFile(certs.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true}}
	answers := func(url string) bool {
		resp, err := client.Get(url)
		if err != nil {
			return false
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	if !answers("http://" + first + "/readyz") {
		t.Fatal("not serving on the first address")
	}
	began := s.status("").UptimeSeconds

	if err := s.Reconfigure(checkedConfig(t, Config{Listen: str(second)}), "gw2"); err != nil {
		t.Fatal(err)
	}
	if answers("http://"+first+"/healthz") || !answers("http://"+second+"/readyz") || s.Addr() != second {
		t.Fatalf("after moving to %s: still on the old address, or not on the new one (Addr %q)", second, s.Addr())
	}
	if st := s.status(""); st.Gateway != "gw2" || st.UptimeSeconds < began || !st.Ready {
		t.Errorf("after the move: gateway %q uptime %v (was %v) ready %v", st.Gateway, st.UptimeSeconds, began, st.Ready)
	}

	tlsCfg := checkedConfig(t, Config{Listen: str(second), TLS: &TLS{CertFile: certs.ServerCertFile, KeyFile: certs.ServerKeyFile}})
	if err := s.Reconfigure(tlsCfg, "gw2"); err != nil {
		t.Fatal(err)
	}
	if answers("http://"+second+"/healthz") || !answers("https://"+second+"/healthz") {
		t.Fatal("not HTTPS only on the same address after turning TLS on")
	}
	// Unchanged: the listener stays (the certificate is read again).
	if err := s.Reconfigure(tlsCfg, "gw2"); err != nil || !answers("https://"+second+"/healthz") {
		t.Fatalf("the same config again: %v", err)
	}

	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	err = s.Reconfigure(checkedConfig(t, Config{Listen: str(taken.Addr().String())}), "gw2")
	if err == nil || !strings.Contains(err.Error(), taken.Addr().String()) {
		t.Errorf("a taken address: %v", err)
	}
	if !answers("https://"+second+"/healthz") || s.Addr() != second {
		t.Fatal("a failed move did not keep serving as before")
	}

	if err := s.Reconfigure(checkedConfig(t, Config{Listen: str("")}), "gw2"); err != nil || s.Addr() != "" || answers("https://"+second+"/healthz") {
		t.Fatalf("turned off: %v, Addr %q", err, s.Addr())
	}
	if err := s.Reconfigure(checkedConfig(t, Config{Listen: str(first)}), "gw2"); err != nil || !answers("http://"+first+"/readyz") {
		t.Fatalf("turned on again: %v", err)
	}
}

func TestMillis(t *testing.T) {
	for sec, want := range map[float64]string{0.0004: "0.4 ms", 0.035: "35 ms", 1.25: "1.2 s"} {
		if got := millis(sec); got != want {
			t.Errorf("millis(%v) = %q, want %q", sec, got, want)
		}
	}
}

// between returns the text after the first from up to the next to.
func between(s, from, to string) string {
	_, after, ok := strings.Cut(s, from)
	if !ok {
		return ""
	}
	in, _, _ := strings.Cut(after, to)
	return in
}
