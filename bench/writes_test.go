package bench

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/fieldbridge/fieldbridge/internal/testpeer"
)

// BenchmarkWriteLatency measures command-to-result latency: an MQTT client
// publishes a command to the gateway's broker (a separate gateway process),
// the gateway writes Debian's pymodbus over Modbus TCP, reads the register
// back, publishes the value and the result; the client times each command
// from publish to result. "alone": the writable device is the only one on
// the bus. "4000points": the same bus also polls 8 devices × 500 holding
// registers every 100 ms (publish every_poll), as BenchmarkEndToEnd does, so
// the bus is never idle and every write waits for a poll request on the
// wire. Reports the median and the 99th percentile; FB_BENCH_COMMANDS sets
// the number of commands (default 300), sent one at a time with a random
// pause of up to 10 ms between them.
func BenchmarkWriteLatency(b *testing.B) {
	for _, load := range []struct {
		name               string
		devices, registers int
	}{{"alone", 0, 0}, {"4000points", 8, 500}} {
		b.Run(load.name, func(b *testing.B) { writeLatency(b, load.devices, load.registers) })
	}
}

func writeLatency(b *testing.B, devices, registers int) {
	commands := envInt("FB_BENCH_COMMANDS", 300)
	spec := testpeer.DeviceSpec{Units: map[byte]testpeer.UnitSpec{1: {}}}
	for d := 2; d < 2+devices; d++ {
		regs := map[uint16]uint16{}
		for r := 0; r < registers; r++ {
			regs[uint16(r)] = uint16(d*1000 + r)
		}
		spec.Units[byte(d)] = testpeer.UnitSpec{Holding: regs}
	}
	dev := testpeer.StartTCP(b, spec)
	brokerAddr := fmt.Sprintf("127.0.0.1:%d", freePort(b))
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "gateway: {id: bench}\nlog: {level: warn}\nbroker: {listen: %q}\nadapters:\n  - name: bus\n    type: modbus\n    transport: tcp\n    address: %q\n    timeout: 1s\n    devices:\n", brokerAddr, dev.Addr)
	cfg.WriteString("      - name: drive\n        unit: 1\n        interval: 1s\n        points:\n          - {name: sp, table: holding, address: 0, writable: true}\n")
	for d := 2; d < 2+devices; d++ {
		fmt.Fprintf(&cfg, "      - name: dev%d\n        unit: %d\n        interval: 100ms\n        publish: every_poll\n        points:\n", d, d)
		for r := 0; r < registers; r++ {
			fmt.Fprintf(&cfg, "          - {name: r%d, table: holding, address: %d}\n", r, r)
		}
	}
	bin := buildGateway(b, b.TempDir())
	gatewayProcess(b, bin, cfg.String())
	waitListening(b, brokerAddr)

	results := make(chan string, 16)
	opts := mqtt.NewClientOptions().AddBroker("tcp://" + brokerAddr).SetClientID("bench-writer").SetAutoReconnect(false)
	c := mqtt.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		b.Fatalf("connect: %v", tok.Error())
	}
	defer c.Disconnect(100)
	tok := c.Subscribe("bench/drive/sp/set/result", 1, func(_ mqtt.Client, m mqtt.Message) {
		var r struct {
			ID    string `json:"id"`
			OK    bool   `json:"ok"`
			Error string `json:"error"`
		}
		if err := json.Unmarshal(m.Payload(), &r); err != nil || !r.OK {
			b.Errorf("result %s", m.Payload())
		}
		results <- r.ID
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		b.Fatalf("subscribe: %v", tok.Error())
	}
	// The load is real: count poll cycles (every_poll publishes r0 once per
	// cycle of each loaded device).
	var cycles atomic.Int64
	if devices > 0 {
		tok := c.Subscribe("bench/+/r0", 0, func(mqtt.Client, mqtt.Message) { cycles.Add(1) })
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			b.Fatalf("subscribe: %v", tok.Error())
		}
	}
	time.Sleep(2 * time.Second) // the first polls, warm-up
	c0, t0 := cycles.Load(), time.Now()
	lat := make([]time.Duration, 0, commands)
	b.ResetTimer()
	for range b.N {
		lat = lat[:0]
		for i := range commands {
			id := fmt.Sprint(i)
			start := time.Now()
			c.Publish("bench/drive/sp/set", 1, false, fmt.Sprintf(`{"value": %d, "id": %q}`, i%3000, id))
			select {
			case got := <-results:
				if got != id {
					b.Fatalf("result for %s, want %s", got, id)
				}
			case <-time.After(10 * time.Second):
				b.Fatalf("no result for command %d", i)
			}
			lat = append(lat, time.Since(start))
			// Commands arrive at random moments of the poll cycle, not in
			// step with it.
			time.Sleep(time.Duration(rand.IntN(10_000)) * time.Microsecond)
		}
	}
	b.StopTimer()
	if devices > 0 {
		b.ReportMetric(float64(cycles.Load()-c0)/time.Since(t0).Seconds(), "poll-cycles/s")
	}
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(lat[len(lat)/2]), "ms-median")
	b.ReportMetric(ms(lat[len(lat)*99/100]), "ms-p99")
	b.ReportMetric(ms(lat[len(lat)-1]), "ms-max")
	b.ReportMetric(float64(len(lat)), "commands")
}
