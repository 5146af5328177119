package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fieldbridge/fieldbridge/internal/config"
	"github.com/fieldbridge/fieldbridge/internal/testpeer"
)

// httpReloadConfig is the config of TestHTTPAcrossReload; the steps edit it.
type httpReloadConfig struct {
	dataDir, broker, http, device, cloud string
	lineInterval, prefix                 string
	drive, ghost                         bool
}

func (c httpReloadConfig) String() string {
	drive := ""
	if c.drive {
		drive = `
      - name: drive
        unit: 3
        interval: 100ms
        points: [{name: speed, table: holding, address: 0}]`
	}
	ghost := ""
	if c.ghost {
		ghost = `
      - name: ghost
        unit: 9
        interval: 1s
        points: [{name: x, table: holding, address: 0}]`
	}
	return fmt.Sprintf(`gateway: {id: it, data_dir: %s}
broker: {listen: %q}
http: {listen: %q}
adapters:
  - name: steady
    type: modbus
    transport: tcp
    address: %s
    timeout: 2s
    devices:
      - name: boiler
        unit: 1
        interval: 50ms
        publish: every_poll
        points: [{name: temp, table: holding, address: 0}]
  - name: line
    type: modbus
    transport: tcp
    address: %s
    timeout: 2s
    devices:%s
      - name: meter
        unit: 2
        interval: %s
        points: [{name: power, table: holding, address: 0}]%s
bridge:
  upstreams: [{url: "tcp://%s"}]
  keepalive: 2s
  connect_timeout: 2s
  backoff_initial: 50ms
  backoff_max: 200ms
  forward: [{filter: "it/boiler/#", prefix: %q, qos: 1}]
`, c.dataDir, c.broker, c.http, c.device, c.device, ghost, c.lineInterval, drive, c.cloud, c.prefix)
}

// TestHTTPAcrossReload: the status page, the metrics and readiness keep
// working across a real SIGHUP reload that restarts one of two buses,
// removes a device, adds a dead one and changes a forward rule, while they are scraped all
// along: every scrape answers, the gateway stays ready, the device of the
// restarted bus never shows "unknown", the untouched bus's counters never go
// back, the restarted bus feeds the page and the metrics, the removed
// device leaves them, and the bridge's metrics carry on. A second reload
// moves the HTTP side to another address.
func TestHTTPAcrossReload(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test (pymodbus, mosquitto)")
	}
	dev := testpeer.StartTCP(t, testpeer.DeviceSpec{Units: map[byte]testpeer.UnitSpec{
		1: {Holding: map[uint16]uint16{0: 70}}, 2: {Holding: map[uint16]uint16{0: 5}}, 3: {Holding: map[uint16]uint16{0: 1500}},
	}, Silent: []byte{9}})
	cloudBroker := testpeer.StartMosquitto(t, testpeer.MosquittoOptions{})
	cloud := testpeer.Subscribe(t, testpeer.SubOptions{Addr: cloudBroker.Addr(), Filter: "b/#", QoS: 1})
	dir := t.TempDir()
	cfg := httpReloadConfig{
		dataDir: filepath.Join(dir, "data"), broker: loopbackAddr(t), http: loopbackAddr(t), device: dev.Addr,
		cloud: cloudBroker.Addr(), lineInterval: "100ms", prefix: "a/", drive: true,
	}
	path := filepath.Join(dir, "gateway.yaml")
	write := func(c httpReloadConfig) {
		t.Helper()
		if err := os.WriteFile(path, []byte(c.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(cfg)
	loaded, err := config.Load(path, config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(io.MultiWriter(logs, testLog{t}), nil))
	// SIGHUP reaches the gateway as under `gateway run`: a real signal to
	// this process, caught on the channel its wait loop reloads on.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	ctx, cancel := context.WithCancel(context.Background())
	g, err := startGateway(ctx, loaded, log, nil)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	var waited sync.WaitGroup
	waited.Add(1)
	go func() { defer waited.Done(); g.wait(ctx, hup, path) }()
	defer func() { cancel(); waited.Wait() }()
	reload := func(n int) {
		t.Helper()
		if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 20*time.Second, fmt.Sprintf("reload %d", n), func() bool {
			return strings.Count(logs.String(), `msg="config reloaded"`) == n
		})
	}

	base := "http://" + cfg.http
	waitFor(t, 15*time.Second, "/readyz 200", func() bool { code, _ := readyz(t, base); return code == http.StatusOK })
	const (
		boilerOK = `fieldbridge_modbus_requests_total{adapter="steady",device="boiler",result="ok"}`
		meterOK  = `fieldbridge_modbus_requests_total{adapter="line",device="meter",result="ok"}`
		meterUp  = `fieldbridge_device_up{adapter="line",device="meter"}`
	)
	waitFor(t, 10*time.Second, "the drive polled and the bridge acknowledging", func() bool {
		m := scrape(t, base)
		return m[`fieldbridge_modbus_requests_total{adapter="line",device="drive",result="ok"}`] >= 1 && m["fieldbridge_bridge_acked_total"] >= 5
	})

	// Scrape everything all along, as Prometheus and a browser would,
	// collecting what is wrong (this goroutine may not fail the test).
	stop := make(chan struct{})
	var scraper sync.WaitGroup
	var mu sync.Mutex
	var problems []string
	scrapes := 0
	problem := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if len(problems) < 20 {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}
	fetch := func(path string) (int, string) {
		resp, err := http.Get(base + path)
		if err != nil {
			problem("GET %s: %v", path, err)
			return 0, ""
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	scraper.Add(1)
	go func() {
		defer scraper.Done()
		lastBoiler := 0.0
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			code, body := fetch("/metrics")
			m, err := parseMetrics(body)
			switch {
			case code != http.StatusOK || err != nil:
				problem("/metrics: %d %v", code, err)
				continue
			case m["fieldbridge_ready"] != 1:
				problem("fieldbridge_ready %v", m["fieldbridge_ready"])
			case m[boilerOK] < lastBoiler:
				problem("the untouched bus's ok requests went back from %v to %v", lastBoiler, m[boilerOK])
			}
			lastBoiler = m[boilerOK]
			if _, ok := m[meterUp]; !ok {
				problem("no %s", meterUp)
			}
			if code, body := fetch("/readyz"); code != http.StatusOK {
				problem("/readyz: %d %s", code, body)
			}
			// A restarted bus's device is never "unknown" (never polled):
			// it shows its predecessor's state until its own first poll.
			// (Offline would be a real answer, e.g. a timeout on a busy
			// machine; unknown is a recorder that forgot.)
			var st struct {
				Buses []struct {
					Devices []struct{ Name, State string }
				}
			}
			code, body = fetch("/api/status?device=meter")
			if code != http.StatusOK || json.Unmarshal([]byte(body), &st) != nil || len(st.Buses) != 1 || len(st.Buses[0].Devices) != 1 {
				problem("/api/status: %d %q", code, body)
			} else if state := st.Buses[0].Devices[0].State; state == "unknown" {
				problem("the restarted bus's device shown %s", state)
			}
			if code, _ := fetch("/"); code != http.StatusOK {
				problem("/: %d", code)
			}
			mu.Lock()
			scrapes++
			mu.Unlock()
		}
	}()
	scrapesSoFar := func() int { mu.Lock(); defer mu.Unlock(); return scrapes }
	waitFor(t, 10*time.Second, "scrapes before the reload", func() bool { return scrapesSoFar() >= 3 })

	steady, line := g.currentBuses()[0], g.currentBuses()[1]
	// The reload removes the drive and adds a silent device ahead of the
	// meter: the restarted bus's first request waits out the timeout, so
	// for that long the meter shows only what the old bus had read.
	cfg.drive, cfg.ghost, cfg.lineInterval, cfg.prefix = false, true, "150ms", "b/"
	write(cfg)
	reloaded := time.Now()
	reload(1)
	if buses := g.currentBuses(); len(buses) != 2 || buses[0] != steady || buses[1] == line || len(buses[1].a.Devices()) != 2 {
		t.Fatalf("the reload did not restart exactly the line bus: %v", buses)
	}
	before := scrapesSoFar()
	waitFor(t, 10*time.Second, "scrapes after the reload", func() bool { return scrapesSoFar() >= before+10 })

	// The restarted bus feeds the page: a new value arrives through it
	// (the old bus is stopped), and its counters grow in the metrics.
	dev.Set(2, testpeer.Holding, 0, 77)
	waitFor(t, 10*time.Second, "the new value of the meter in /api/status", func() bool {
		_, body := get(t, base+"/api/status?device=meter")
		return strings.Contains(body, `"value": 77,`)
	})
	first := scrape(t, base)[meterOK]
	waitFor(t, 10*time.Second, "the restarted bus counting requests", func() bool { return scrape(t, base)[meterOK] >= first+2 })
	m := scrape(t, base)
	for series := range m {
		if strings.Contains(series, `device="drive"`) {
			t.Errorf("the removed device is still in the metrics: %s", series)
		}
	}
	if _, body := get(t, base+"/api/status"); strings.Contains(body, `"drive"`) {
		t.Errorf("the removed device is still in /api/status:\n%s", body)
	}
	// The meter's stalest value is younger than the reload: read by the
	// restarted bus.
	waitFor(t, 10*time.Second, "the meter's point age counting from a reading after the reload", func() bool {
		return scrape(t, base)[`fieldbridge_point_age_seconds{device="meter"}`] < time.Since(reloaded).Seconds()
	})
	// The bridge was reconfigured in place: its metrics go on from the
	// same counters, and what it forwards now goes under the new prefix.
	acked := m["fieldbridge_bridge_acked_total"]
	cloud.WaitFor(t, 10*time.Second, func(msg testpeer.Message) bool { return strings.HasPrefix(msg.Topic, "b/it/boiler/") })
	waitFor(t, 10*time.Second, "the bridge acknowledging after the reload", func() bool {
		m = scrape(t, base)
		return m["fieldbridge_bridge_connected"] == 1 && m["fieldbridge_bridge_acked_total"] > acked
	})
	if m["fieldbridge_bridge_window"] < 1 || m["fieldbridge_bridge_round_trip_seconds"] <= 0 {
		t.Errorf("bridge window %v, round trip %v s", m["fieldbridge_bridge_window"], m["fieldbridge_bridge_round_trip_seconds"])
	}
	if _, ok := m["fieldbridge_bridge_batches_total"]; !ok {
		t.Error("no fieldbridge_bridge_batches_total")
	}
	close(stop)
	scraper.Wait()
	for _, p := range problems {
		t.Error("while scraping across the reload: " + p)
	}
	t.Logf("%d rounds of scrapes across the reload", scrapesSoFar())

	// An http change is applied in place: the side moves, ready as before.
	oldBase := base
	cfg.http = loopbackAddr(t)
	base = "http://" + cfg.http
	write(cfg)
	reload(2)
	if code, r := readyz(t, base); code != http.StatusOK {
		t.Errorf("/readyz on the new address: %d %+v", code, r)
	}
	if m := scrape(t, base); m[boilerOK] < 1 || m["fieldbridge_ready"] != 1 {
		t.Errorf("metrics on the new address: boiler ok %v, ready %v", m[boilerOK], m["fieldbridge_ready"])
	}
	if resp, err := http.Get(oldBase + "/healthz"); err == nil {
		resp.Body.Close()
		t.Errorf("the old address %s still answers", oldBase)
	}
	if strings.Contains(logs.String(), "take effect only after a restart") {
		t.Errorf("a reload reported settings needing a restart:\n%s", logs)
	}
}
