// Package bench holds the gateway's end-to-end benchmarks. They print
// figures; they assert nothing about speed.
//
//	go test ./bench -run '^$' -bench Pipeline -benchtime 1x
//	go test ./bench -run '^$' -bench EndToEnd -benchtime 1x   # pymodbus + a separate gateway process
package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fieldbridge/fieldbridge/adapters"
	_ "github.com/fieldbridge/fieldbridge/adapters/modbus"
	"github.com/fieldbridge/fieldbridge/internal/config"
	"github.com/fieldbridge/fieldbridge/internal/publisher"
	"github.com/fieldbridge/fieldbridge/internal/testpeer"
	"github.com/fieldbridge/fieldbridge/localbroker"
)

// loadConfig is the load: devices × 500 holding registers (uint16,
// every_poll) every 100 ms, one bus per device.
func loadConfig(gatewayID, addr string, devices, registers int, interval time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "gateway: {id: %s}\nbroker: {listen: \"127.0.0.1:0\"}\nadapters:\n", gatewayID)
	for d := 0; d < devices; d++ {
		fmt.Fprintf(&b, "  - name: bus%d\n    type: modbus\n    transport: tcp\n    address: %q\n    timeout: 1s\n    devices:\n", d, addr)
		fmt.Fprintf(&b, "      - name: dev%d\n        unit: %d\n        interval: %s\n        publish: every_poll\n        points:\n", d, d+1, interval)
		for r := 0; r < registers; r++ {
			fmt.Fprintf(&b, "          - {name: r%d, table: holding, address: %d, unit: V}\n", r, r)
		}
	}
	return b.String()
}

// fastDevice is a minimal Modbus TCP responder for FC03: it answers every
// read with changing register values and costs little CPU, so the figure is
// mostly the gateway's.
func fastDevice(tb testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var wg sync.WaitGroup
	tb.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				req := make([]byte, 12)
				resp := make([]byte, 9+250)
				var tick uint16
				for {
					if _, err := io.ReadFull(c, req); err != nil {
						return
					}
					n := int(binary.BigEndian.Uint16(req[10:]))
					copy(resp, req[:4])
					binary.BigEndian.PutUint16(resp[4:], uint16(3+2*n))
					resp[6], resp[7], resp[8] = req[6], req[7], byte(2*n)
					tick++
					for i := 0; i < n; i++ {
						binary.BigEndian.PutUint16(resp[9+2*i:], tick+uint16(i))
					}
					if _, err := c.Write(resp[:9+2*n]); err != nil {
						return
					}
				}
			}()
		}
	}()
	return l.Addr().String()
}

// BenchmarkPipeline measures the CPU of the whole process per point polled,
// decoded and published into the embedded broker, with one external
// subscriber (mosquitto_sub) receiving everything. 8 devices × 500
// registers every 100 ms = 40,000 points/s. With metrics=on the samples
// pass through the HTTP side's recorder and /metrics is scraped every
// second (Prometheus usually scrapes every 15 s), so the difference is the
// cost of the HTTP side on the poll path at its worst. With auth=on the
// subscriber logs in as a user whose ACL is checked for every message
// delivered to it (a deny rule for commands first, then read on everything).
func BenchmarkPipeline(b *testing.B) {
	for _, run := range []struct {
		name          string
		metrics, auth bool
	}{
		{"metrics=off", false, false},
		{"metrics=on", true, false},
		{"auth=on", false, true},
	} {
		b.Run(run.name, func(b *testing.B) { benchPipeline(b, run.metrics, run.auth) })
	}
}

// benchUsers is a broker.users section for the auth=on runs (password
// "bench", bcrypt cost 4).
const benchUsers = `  users:
    - username: hmi
      password_hash: "$2a$04$4N3COo8gJDXIH6Eu4YEoiu3N5pf8/49UJq4eGlwUfeMAAm/RLu0ai"
      acl:
        - {filter: "bench/+/+/set", access: deny}
        - {filter: "bench/#", access: read}
`

func benchPipeline(b *testing.B, withHTTP, auth bool) {
	sub, err := exec.LookPath("mosquitto_sub")
	if err != nil {
		b.Skip("mosquitto_sub not installed")
	}
	addr := fastDevice(b)
	yaml := loadConfig("bench", addr, 8, 500, 100*time.Millisecond)
	var creds []string
	if auth {
		yaml = strings.Replace(yaml, "broker: {listen: \"127.0.0.1:0\"}\n", "broker:\n  listen: \"127.0.0.1:0\"\n"+benchUsers, 1)
		creds = []string{"-u", "hmi", "-P", "bench"}
	}
	cfg, err := config.Parse("bench.yaml", []byte(yaml), config.Options{})
	if err != nil {
		b.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	built, err := cfg.Build(log)
	if err != nil {
		b.Fatal(err)
	}
	broker, err := localbroker.New(cfg.Broker, log)
	if err != nil {
		b.Fatal(err)
	}
	if err := broker.Start(); err != nil {
		b.Fatal(err)
	}
	defer broker.Close()
	host, port, _ := net.SplitHostPort(broker.Addr())
	cmd := exec.Command(sub, append([]string{"-h", host, "-p", port, "-t", "bench/#", "-q", "0"}, creds...)...)
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	waitClients(b, broker, 1)

	pub := publisher.New(broker, adapters.Number(built), log)
	var sink adapters.Sink = pub
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	if withHTTP {
		srv, rec := startHTTP(b, built, pub, broker)
		sink = rec
		wg.Add(1)
		go func() { defer wg.Done(); scrapeEvery(ctx, "http://"+srv.Addr()+"/metrics", time.Second) }()
	}
	for _, a := range built {
		wg.Add(1)
		go func() { defer wg.Done(); _ = a.Run(ctx, sink) }()
	}
	time.Sleep(time.Second) // warm up: connections made, first cycles done
	window := 5 * time.Second * time.Duration(b.N)
	p0, c0, t0 := pub.Stats().Published, testpeer.SelfCPU(), time.Now()
	b.ResetTimer()
	time.Sleep(window)
	b.StopTimer()
	p1, c1, t1 := pub.Stats().Published, testpeer.SelfCPU(), time.Now()
	if path := os.Getenv("FB_BENCH_HEAPPROFILE"); path != "" {
		f, err := os.Create(path)
		if err == nil {
			runtime.GC()
			_ = pprof.WriteHeapProfile(f)
			f.Close()
		}
	}
	cancel()
	wg.Wait()
	points := float64(p1 - p0)
	b.ReportMetric(float64((c1-c0).Nanoseconds())/points/1000, "µs-cpu/point")
	b.ReportMetric(points/t1.Sub(t0).Seconds(), "points/s")
	if st := broker.Stats(); st.MessagesDropped > 0 {
		b.Logf("broker dropped %d messages for the subscriber", st.MessagesDropped)
	}
}

func waitClients(tb testing.TB, b *localbroker.Broker, n int64) {
	deadline := time.Now().Add(5 * time.Second)
	for b.Stats().Clients < n {
		if time.Now().After(deadline) {
			tb.Fatal("subscriber did not connect")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
