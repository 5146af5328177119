package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fieldbridge/fieldbridge/internal/config"
	"github.com/fieldbridge/fieldbridge/internal/testpeer"
)

// runGatewayYAML starts a gateway in-process from a config text and stops
// it at the end of the test.
func runGatewayYAML(t *testing.T, text string) *gateway {
	t.Helper()
	cfg, err := config.Parse("http-test.yaml", []byte(text), config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	g, err := startGateway(ctx, cfg, slog.New(slog.NewTextHandler(testLog{t}, nil)), nil)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); g.wait(ctx, nil, "") }()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return g
}

// get fetches a URL and returns the status code and body.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(body)
}

// scrape parses a Prometheus text exposition into series → value.
func scrape(t *testing.T, base string) map[string]float64 {
	t.Helper()
	code, body := get(t, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	out, err := parseMetrics(body)
	if err != nil {
		t.Fatalf("/metrics: %v", err)
	}
	return out
}

// parseMetrics parses a Prometheus text exposition into series → value;
// a series twice is an error.
func parseMetrics(body string) (map[string]float64, error) {
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			return nil, fmt.Errorf("bad line %q", line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("bad value in %q", line)
		}
		if _, dup := out[line[:i]]; dup {
			return nil, fmt.Errorf("series %s twice", line[:i])
		}
		out[line[:i]] = v
	}
	return out, nil
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type readyJSON struct {
	Ready      bool     `json:"ready"`
	WaitingFor []string `json:"waiting_for"`
}

func readyz(t *testing.T, base string) (int, readyJSON) {
	t.Helper()
	code, body := get(t, base+"/readyz")
	var r readyJSON
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("/readyz body %q: %v", body, err)
	}
	return code, r
}

// TestHTTPAfterRealPoll: pymodbus with a live unit (one block answering
// exception 2) and a dead unit; the gateway's /readyz is 503 until both
// have been polled, then 200; /metrics then counts what happened on the
// wire, per device and result; the status page, loaded in headless
// chromium, shows a live value that changes between two loads and the
// dead device offline, and a screenshot is left for people to look at.
func TestHTTPAfterRealPoll(t *testing.T) {
	dev := testpeer.StartTCP(t, testpeer.DeviceSpec{
		Units: map[byte]testpeer.UnitSpec{
			1: {Holding: map[uint16]uint16{0: 0x4365, 1: 0xCCCD, 2: 0xFF33}, Coils: map[uint16]bool{0: true}},
		},
		Silent:     []byte{9},
		Exceptions: []testpeer.ExceptionRange{{Unit: 1, Table: testpeer.Holding, Start: 100, End: 199, Code: 2}},
	})
	httpAddr := loopbackAddr(t)
	base := "http://" + httpAddr
	runGatewayYAML(t, `
gateway: {id: it}
broker: {listen: "`+loopbackAddr(t)+`"}
http: {listen: "`+httpAddr+`"}
adapters:
  - name: bus
    type: modbus
    transport: tcp
    address: `+dev.Addr+`
    timeout: 700ms
    retries: 0
    devices:
      - name: meter
        unit: 1
        interval: 200ms
        points:
          - {name: voltage, table: holding, address: 0, type: float32, unit: V}
          - {name: temp, table: holding, address: 2, type: int16, scale: 0.1, unit: "°C"}
          - {name: pump, table: coil, address: 0}
      - name: extra
        unit: 1
        interval: 200ms
        points:
          - {name: raw_temp, table: holding, address: 2, type: int16}
          - {name: missing, table: holding, address: 150}
      - name: dead
        unit: 9
        interval: 200ms
        points:
          - {name: x, table: holding, address: 0}
`)
	// The dead unit's first cycle takes the whole timeout: not ready yet.
	code, r := readyz(t, base)
	if code != http.StatusServiceUnavailable || r.Ready || len(r.WaitingFor) != 1 || r.WaitingFor[0] != "bus bus: first cycle" {
		t.Fatalf("/readyz before the first cycle: %d %+v", code, r)
	}
	if code, body := get(t, base+"/healthz"); code != http.StatusOK || !strings.Contains(body, `"ok"`) {
		t.Fatalf("/healthz: %d %s", code, body)
	}
	waitFor(t, 15*time.Second, "/readyz 200", func() bool { code, _ := readyz(t, base); return code == http.StatusOK })

	var m map[string]float64
	waitFor(t, 10*time.Second, "metrics of a few cycles", func() bool {
		m = scrape(t, base)
		return m[`fieldbridge_modbus_requests_total{adapter="bus",device="dead",result="timeout"}`] >= 2 &&
			m[`fieldbridge_modbus_requests_total{adapter="bus",device="extra",result="exception"}`] >= 2
	})
	want := map[string]float64{
		`fieldbridge_device_up{adapter="bus",device="meter"}`:                                1,
		`fieldbridge_device_up{adapter="bus",device="dead"}`:                                 0,
		`fieldbridge_points_bad{device="meter"}`:                                             0,
		`fieldbridge_points_bad{device="extra"}`:                                             1, // missing: exception 2
		`fieldbridge_points_bad{device="dead"}`:                                              1,
		`fieldbridge_points{device="meter"}`:                                                 3,
		`fieldbridge_device_up{adapter="bus",device="extra"}`:                                1, // an exception is an answer
		`fieldbridge_ready`:                                                                  1,
		`fieldbridge_modbus_requests_total{adapter="bus",device="meter",result="crc"}`:       0,
		`fieldbridge_modbus_requests_total{adapter="bus",device="meter",result="transport"}`: 0,
		`fieldbridge_modbus_requests_total{adapter="bus",device="meter",result="timeout"}`:   0,
		`fieldbridge_modbus_requests_total{adapter="bus",device="dead",result="ok"}`:         0,
	}
	for series, v := range want {
		if got, ok := m[series]; !ok || got != v {
			t.Errorf("%s = %v (present %v), want %v", series, got, ok, v)
		}
	}
	atLeast := map[string]float64{
		`fieldbridge_modbus_requests_total{adapter="bus",device="meter",result="ok"}`: 4, // two blocks a cycle
		`fieldbridge_modbus_requests_total{adapter="bus",device="extra",result="ok"}`: 2,
		`fieldbridge_modbus_wire_bytes_total{adapter="bus",direction="out"}`:          12 * 6,
		`fieldbridge_modbus_wire_bytes_total{adapter="bus",direction="in"}`:           9 * 4,
		`fieldbridge_modbus_request_duration_seconds_count{adapter="bus"}`:            8,
		`fieldbridge_broker_messages_received_total`:                                  4,
		`fieldbridge_publisher_published_total{adapter="bus"}`:                        4,
		`go_goroutines`:                 1,
		`process_resident_memory_bytes`: 1 << 20,
	}
	for series, v := range atLeast {
		if got, ok := m[series]; !ok || got < v {
			t.Errorf("%s = %v (present %v), want at least %v", series, got, ok, v)
		}
	}
	// Every point of the meter was read a moment ago; the dead device was
	// never read, and neither was the point of extra in the exception
	// range: their stalest values are as old as the gateway.
	age := func(dev string) float64 { return m[`fieldbridge_point_age_seconds{device="`+dev+`"}`] }
	if age("meter") < 0 || age("meter") > 1 {
		t.Errorf("point age of meter: %v s", age("meter"))
	}
	if age("dead") < age("meter")+0.5 || age("extra") < age("meter")+0.5 {
		t.Errorf("point ages: dead %v s, extra %v s, live meter %v s", age("dead"), age("extra"), age("meter"))
	}
	// A timeout takes the whole timeout: the histogram shows it.
	if slow, all := m[`fieldbridge_modbus_request_duration_seconds_bucket{adapter="bus",le="0.5"}`],
		m[`fieldbridge_modbus_request_duration_seconds_bucket{adapter="bus",le="+Inf"}`]; all-slow < 2 {
		t.Errorf("request durations: %v of %v above 0.5 s, want the dead device's timeouts", all-slow, all)
	}
	for series := range m {
		if strings.HasPrefix(series, "fieldbridge_bridge_") || strings.HasPrefix(series, "fieldbridge_queue_") {
			t.Errorf("%s without a bridge", series)
		}
	}

	// /api/status says the same as the page will.
	var st struct {
		Buses []struct {
			Devices []struct {
				Name, State string
				LastError   string `json:"last_error"`
				Points      []struct {
					Name    string
					Value   json.RawMessage
					Quality string
				}
			}
		}
	}
	_, body := get(t, base+"/api/status")
	if err := json.Unmarshal([]byte(body), &st); err != nil || len(st.Buses) != 1 || len(st.Buses[0].Devices) != 3 {
		t.Fatalf("/api/status: %v\n%s", err, body)
	}
	meter, extra, dead := st.Buses[0].Devices[0], st.Buses[0].Devices[1], st.Buses[0].Devices[2]
	if meter.State != "online" || dead.State != "offline" || !strings.Contains(dead.LastError, "no response") ||
		string(meter.Points[0].Value) != "229.8" || extra.Points[1].Quality != "bad" || !strings.Contains(extra.LastError, "exception 2") {
		t.Errorf("/api/status: %s", body)
	}

	t.Run("status page in chromium", func(t *testing.T) {
		chromium := testpeer.StartChromium(t)
		voltageCell := func(dom string) string {
			row := between(dom, `id="point-meter.voltage"`, "</tr>")
			return between(row, `<td class="v">`, "</td>")
		}
		dom := chromium.DumpDOM(base + "/")
		if got := voltageCell(dom); !strings.HasPrefix(got, "229.8") || !strings.Contains(got, "V") {
			t.Fatalf("first load: voltage cell %q\n%s", got, dom)
		}
		if !strings.Contains(dom, `id="device-dead" data-state="offline"`) || !strings.Contains(between(dom, `id="device-dead"`, "</section>"), `badge offline`) {
			t.Errorf("dead device not shown offline:\n%s", dom)
		}
		if !strings.Contains(dom, `name="viewport"`) || strings.Contains(dom, "<script") || !strings.Contains(dom, `http-equiv="refresh"`) {
			t.Errorf("page head: viewport, no script, meta refresh expected")
		}

		dev.Set(1, testpeer.Holding, 0, 0x4366, 0x0000) // 230
		waitFor(t, 10*time.Second, "the new value in /api/status", func() bool {
			_, body := get(t, base+"/api/status?device=meter")
			return strings.Contains(body, `"value": 230,`)
		})
		dom = chromium.DumpDOM(base + "/")
		if got := voltageCell(dom); !strings.HasPrefix(got, "230 ") {
			t.Errorf("second load: voltage cell %q, want 230 V", got)
		}

		dir := os.Getenv("FIELDBRIDGE_ARTIFACTS")
		if dir == "" {
			dir = os.TempDir()
		}
		shot := filepath.Join(dir, "fieldbridge-status-page.png")
		chromium.Screenshot(base+"/", shot, 400, 1000)
		t.Logf("status page screenshot (400 px wide, as on a phone): %s", shot)
	})
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

// TestHTTPBridgeOutage: through real outages of mosquitto as the cloud
// broker, the bridge metrics go connected 0 → 1 → 0 → 1, the queue's
// records rise while it is down and drain once it is back, reconnects are
// counted, and /readyz waits for the first connection.
func TestHTTPBridgeOutage(t *testing.T) {
	cloud := testpeer.StartMosquitto(t, testpeer.MosquittoOptions{})
	cloud.Stop() // the gateway starts during an outage
	dev := testpeer.StartTCP(t, testpeer.DeviceSpec{Units: map[byte]testpeer.UnitSpec{1: {Holding: map[uint16]uint16{0: 1, 1: 2}}}})
	httpAddr := loopbackAddr(t)
	base := "http://" + httpAddr
	runGatewayYAML(t, fmt.Sprintf(`
gateway: {id: plant1, data_dir: %q}
broker: {listen: %q}
http: {listen: %q}
bridge:
  upstreams: [{url: "tcp://%s"}]
  keepalive: 2s
  connect_timeout: 1s
  backoff_initial: 50ms
  backoff_max: 300ms
  forward: [{filter: "plant1/#", prefix: "site/", qos: 1}]
adapters:
  - name: bus
    type: modbus
    transport: tcp
    address: %s
    devices:
      - name: meter
        unit: 1
        interval: 50ms
        publish: every_poll
        points:
          - {name: a, table: holding, address: 0}
          - {name: b, table: holding, address: 1}
`, t.TempDir(), loopbackAddr(t), httpAddr, cloud.Addr(), dev.Addr))

	records := func(m map[string]float64) float64 { return m["fieldbridge_queue_records"] }
	var m map[string]float64
	waitFor(t, 10*time.Second, "a backlog while the cloud is down", func() bool {
		m = scrape(t, base)
		return records(m) >= 20
	})
	if m["fieldbridge_bridge_connected"] != 0 || m["fieldbridge_bridge_reconnects_total"] != 0 || m["fieldbridge_queue_oldest_age_seconds"] <= 0 {
		t.Errorf("during the first outage: connected %v reconnects %v oldest %v", m["fieldbridge_bridge_connected"], m["fieldbridge_bridge_reconnects_total"], m["fieldbridge_queue_oldest_age_seconds"])
	}
	code, r := readyz(t, base)
	if code != http.StatusServiceUnavailable || len(r.WaitingFor) != 1 || !strings.HasPrefix(r.WaitingFor[0], "bridge: first connection to tcp://") {
		t.Errorf("/readyz before the bridge connected: %d %+v", code, r)
	}
	rising := records(m)
	waitFor(t, 10*time.Second, "the backlog rising", func() bool { m = scrape(t, base); return records(m) > rising })

	cloud.Start()
	waitFor(t, 15*time.Second, "connected and drained", func() bool {
		m = scrape(t, base)
		return m["fieldbridge_bridge_connected"] == 1 && records(m) < 10
	})
	if code, _ := readyz(t, base); code != http.StatusOK {
		t.Errorf("/readyz after the first connection: %d", code)
	}
	if m["fieldbridge_bridge_acked_total"] < rising || m["fieldbridge_bridge_forwarded_total"] < m["fieldbridge_bridge_acked_total"] {
		t.Errorf("after the drain: acked %v forwarded %v, backlog was %v", m["fieldbridge_bridge_acked_total"], m["fieldbridge_bridge_forwarded_total"], rising)
	}

	cloud.Stop()
	waitFor(t, 15*time.Second, "disconnected with a new backlog", func() bool {
		m = scrape(t, base)
		return m["fieldbridge_bridge_connected"] == 0 && records(m) >= 20
	})
	cloud.Start()
	waitFor(t, 15*time.Second, "reconnected and drained", func() bool {
		m = scrape(t, base)
		return m["fieldbridge_bridge_connected"] == 1 && records(m) < 10 && m["fieldbridge_bridge_reconnects_total"] >= 1
	})
	if code, _ := readyz(t, base); code != http.StatusOK {
		t.Errorf("/readyz after an outage later: %d (readiness must not flip back)", code)
	}
	for _, reason := range []string{"full", "expired", "corrupt", "overflow", "invalid", "shutdown"} {
		if v, ok := m[`fieldbridge_queue_dropped_total{reason="`+reason+`"}`]; !ok || v != 0 {
			t.Errorf("dropped %s = %v (present %v)", reason, v, ok)
		}
	}
}
