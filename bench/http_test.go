package bench

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/fieldbridge/fieldbridge/adapters"
	"github.com/fieldbridge/fieldbridge/internal/config"
	"github.com/fieldbridge/fieldbridge/internal/httpapi"
	"github.com/fieldbridge/fieldbridge/internal/publisher"
	"github.com/fieldbridge/fieldbridge/localbroker"
)

// startHTTP serves the HTTP side for built adapters on a free port, with
// the recorder in front of pub. The gateway gives every bus a publisher
// of its own; here they share one, shown under each bus, so that /metrics
// has as many series as the gateway's.
func startHTTP(tb testing.TB, built []adapters.Adapter, pub *publisher.Publisher, broker *localbroker.Broker) (*httpapi.Server, *httpapi.Recorder) {
	tb.Helper()
	listen := "127.0.0.1:0"
	c := httpapi.Config{Listen: &listen}
	c.Check(nil, false, nopReporter{})
	rec := httpapi.NewRecorder(built, pub, time.Now())
	buses := make([]httpapi.Bus, len(built))
	for i, a := range built {
		buses[i] = httpapi.Bus{Adapter: a, Recorder: rec, Publisher: pub}
	}
	srv, err := httpapi.New(httpapi.Options{Config: c, GatewayID: "bench", Version: "bench", Source: httpapi.FixedSource(buses, nil), Broker: broker})
	if err != nil {
		tb.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = srv.Close() })
	return srv, rec
}

type nopReporter struct{}

func (nopReporter) Errorf(string, string, ...any) {}
func (nopReporter) Warnf(string, string, ...any)  {}

// scrapeEvery GETs url every interval until ctx ends, like Prometheus.
func scrapeEvery(ctx context.Context, url string, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if resp, err := http.Get(url); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
	}
}

// BenchmarkHTTPScrape reports the size of /metrics, the status page and
// /api/status, and the wall time to serve each, for the pipeline's load:
// 8 devices × 500 points = 4,000 points polled every 100 ms.
func BenchmarkHTTPScrape(b *testing.B) {
	addr := fastDevice(b)
	cfg, err := config.Parse("bench.yaml", []byte(loadConfig("bench", addr, 8, 500, 100*time.Millisecond)), config.Options{})
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
	pub := publisher.New(broker, adapters.Number(built), log)
	srv, rec := startHTTP(b, built, pub, broker)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, a := range built {
		go func() { _ = a.Run(ctx, rec) }()
	}
	time.Sleep(time.Second)
	for _, path := range []string{"/metrics", "/", "/api/status"} {
		b.Run(path, func(b *testing.B) {
			var size int64
			for i := 0; i < b.N; i++ {
				resp, err := http.Get("http://" + srv.Addr() + path)
				if err != nil {
					b.Fatal(err)
				}
				size, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			b.ReportMetric(float64(size)/1024, "KiB")
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/scrape")
		})
	}
}
