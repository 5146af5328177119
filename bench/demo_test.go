package bench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fieldbridge/fieldbridge/adapters"
	"github.com/fieldbridge/fieldbridge/adapters/modbus"
	"github.com/fieldbridge/fieldbridge/internal/config"
	"github.com/fieldbridge/fieldbridge/internal/publisher"
	"github.com/fieldbridge/fieldbridge/internal/simulator"
	"github.com/fieldbridge/fieldbridge/localbroker"
)

// demoConfig is configs/demo.yaml with free ports.
func demoConfig(tb testing.TB) (cfg, simAddr, brokerAddr string) {
	data, err := os.ReadFile("../configs/demo.yaml")
	if err != nil {
		tb.Fatal(err)
	}
	simAddr = fmt.Sprintf("127.0.0.1:%d", freePort(tb))
	brokerAddr = fmt.Sprintf("127.0.0.1:%d", freePort(tb))
	s := strings.ReplaceAll(string(data), "127.0.0.1:5020", simAddr)
	s = strings.ReplaceAll(s, "127.0.0.1:1885", brokerAddr)
	s = strings.ReplaceAll(s, "data_dir: ./data", "data_dir: "+tb.TempDir())
	return s, simAddr, brokerAddr
}

// BenchmarkDemoWire runs the demo config against its simulator and reports
// what one poll cycle of all devices costs on the wire: requests and bytes,
// against the number of points they serve.
func BenchmarkDemoWire(b *testing.B) {
	text, simAddr, _ := demoConfig(b)
	cfg, err := config.Parse("demo.yaml", []byte(text), config.Options{})
	if err != nil {
		b.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	sim, err := simulator.New(simulator.Config{Listen: simAddr}, log)
	if err != nil {
		b.Fatal(err)
	}
	if err := sim.Start(); err != nil {
		b.Fatal(err)
	}
	defer sim.Close()
	built, err := cfg.Build(log)
	if err != nil {
		b.Fatal(err)
	}
	broker, err := localbroker.New(localbroker.Config{Listen: "127.0.0.1:0", MaxClients: 4, MaxPacketSize: 1 << 16, MaxInflight: 16, MaxPending: 1024}, log)
	if err != nil {
		b.Fatal(err)
	}
	pub := publisher.New(broker, adapters.Number(built), log)
	a := built[0].(*modbus.Adapter)
	points := 0
	for _, d := range a.Devices() {
		points += len(d.Points)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = a.Run(ctx, pub) }()
	cycles := int64(10 * b.N * len(a.Devices()))
	deadline := time.Now().Add(time.Minute)
	for a.Stats().Cycles < cycles && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	st := a.Stats()
	devCycles := float64(st.Cycles) / float64(len(a.Devices()))
	b.ReportMetric(float64(points), "points")
	b.ReportMetric(float64(st.Requests)/devCycles, "requests/cycle")
	b.ReportMetric(float64(st.Link.BytesWritten+st.Link.BytesRead)/devCycles, "bytes/cycle")
	b.ReportMetric(float64(points)/(float64(st.Requests)/devCycles), "points/request")
}

// BenchmarkDemoRSS runs `gateway run` on the demo config as its own process
// with a subscriber attached, and reports its resident memory: with the
// HTTP side off, and on with /metrics and the status page loaded every
// second; the difference is what the HTTP side costs in memory.
func BenchmarkDemoRSS(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := "http=off"
		if on {
			name = "http=on"
		}
		b.Run(name, func(b *testing.B) { benchDemoRSS(b, on) })
	}
}

func benchDemoRSS(b *testing.B, withHTTP bool) {
	text, _, brokerAddr := demoConfig(b)
	httpAddr := fmt.Sprintf("127.0.0.1:%d", freePort(b))
	if withHTTP {
		text += fmt.Sprintf("\nhttp: {listen: %q}\n", httpAddr)
	} else {
		text += "\nhttp: {listen: \"\"}\n"
	}
	bin := buildGateway(b, b.TempDir())
	cmd := gatewayProcess(b, bin, text)
	waitListening(b, brokerAddr)
	received := countingSub(b, brokerAddr, "demo/#")
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	if withHTTP {
		waitListening(b, httpAddr)
		for _, path := range []string{"/metrics", "/"} {
			wg.Add(1)
			go func() { defer wg.Done(); scrapeEvery(ctx, "http://"+httpAddr+path, time.Second) }()
		}
	}
	time.Sleep(10 * time.Second * time.Duration(b.N))
	cancel()
	wg.Wait()
	_, peak := procStat(b, cmd.Process.Pid)
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	var rss int64
	for _, line := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			fmt.Sscanf(strings.Fields(line)[1], "%d", &rss)
		}
	}
	b.ReportMetric(float64(rss)/1024, "MiB-RSS")
	b.ReportMetric(float64(peak)/(1<<20), "MiB-peak-RSS")
	b.ReportMetric(float64(received.Load()), "messages")
}
