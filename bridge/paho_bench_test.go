package bridge

import (
	"net"
	"net/url"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/fieldbridge/fieldbridge/internal/testpeer"
)

// BenchmarkPahoPublish is the floor under the bridge's CPU per message: a
// paho client set up as dialPaho sets it up (batchConn, no store, order
// matters) publishing QoS 1 as fast as it can to an in-process broker that
// only acknowledges (testpeer.StartAcker), on loopback. Nothing of the
// bridge runs: no queue, no window, no session. cpu-µs/msg is this
// process's CPU (the acker's included, a few per cent of it) per message.
func BenchmarkPahoPublish(b *testing.B) {
	addr := testpeer.StartAcker(b)
	opts := mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("bench").
		SetAutoReconnect(false).SetConnectRetry(false).SetStore(noStore{}).SetOrderMatters(true).
		SetKeepAlive(time.Minute).SetWriteTimeout(10 * time.Second)
	opts.SetCustomOpenConnectionFn(func(u *url.URL, _ mqtt.ClientOptions) (net.Conn, error) {
		nc, err := net.Dial("tcp", u.Host)
		if err != nil {
			return nil, err
		}
		return newBatchConn(nc, 10*time.Second), nil
	})
	c := mqtt.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		b.Fatalf("connect: %v", tok.Error())
	}
	defer c.Disconnect(0)
	payload := make([]byte, 110)
	const window = 4096
	toks := make([]mqtt.Token, 0, window)
	before := testpeer.SelfCPU()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		toks = append(toks, c.Publish("bench/drain/x", 1, false, payload))
		if len(toks) == window {
			for _, t := range toks {
				t.Wait()
			}
			toks = toks[:0]
		}
	}
	for _, t := range toks {
		t.Wait()
	}
	b.StopTimer()
	cpu := testpeer.SelfCPU() - before
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/msg")
}
