package bridgebench

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/fieldbridge/fieldbridge/internal/testpeer"
)

// TestLinkSpeed: the gateway with every bridge setting at its default, and
// mosquitto's bridge, over links with 0, 20, 100 and 300 ms of round trip
// (a delay line in the proxy: latency without a bandwidth cap), one after
// the other against one upstream mosquitto:
//   - drain: a backlog of BENCH_BACKLOG (default 5,000) QoS 1 messages
//     built during an outage; rate from the first to the last message at a
//     subscriber on the upstream, and the time from restoring the link to
//     the first message;
//   - live: BENCH_LIVE_RATE (default 2,000) msg/s of QoS 1 for
//     BENCH_LIVE_SECONDS (10 s) with the link up; how many arrived, and how
//     far behind its publication the last message arrived;
//   - CPU per drained message, from /proc/PID/stat: of the bridge (the
//     gateway, or the mosquitto that bridges), of the upstream mosquitto,
//     and of this process, the harness (the delay line and the counting
//     subscriber).
//     On a machine with few cores the three share them: a bridge is only
//     faster than another by as much as its own CPU leaves to the rest.
//
// BENCH_RTTS overrides the list of round trips (ms, comma separated);
// BENCH_SIDES=ours or mosquitto runs one side only.
func TestLinkSpeed(t *testing.T) {
	skipUnlessEnabled(t)
	backlog := intEnv("BENCH_BACKLOG", 5000)
	rate := intEnv("BENCH_LIVE_RATE", 2000)
	secs := intEnv("BENCH_LIVE_SECONDS", 10)
	rtts := []int{0, 20, 100, 300}
	if v := os.Getenv("BENCH_RTTS"); v != "" {
		rtts = nil
		for _, f := range strings.Split(v, ",") {
			ms, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil {
				t.Fatalf("BENCH_RTTS: %v", err)
			}
			rtts = append(rtts, ms)
		}
	}
	sides := []string{"fieldbridge", "mosquitto bridge"}
	if v := os.Getenv("BENCH_SIDES"); v == "ours" {
		sides = sides[:1]
	} else if v == "mosquitto" {
		sides = sides[1:]
	}
	cloud := testpeer.StartMosquitto(t, cloudOptions(4*(backlog+rate*secs)))
	bin := buildGateway(t)
	fmt.Printf("\nbacklog %d, live %d msg/s for %d s, QoS 1, upstream mosquitto on loopback through a delay line; gateway at its defaults\n", backlog, rate, secs)
	fmt.Printf("%-18s %6s | %12s %10s | %14s %12s %12s | %s\n", "", "RTT", "drain msg/s", "first msg", "live arrived", "last behind", "p99 behind", "CPU µs/msg: bridge upstream harness")
	for _, rtt := range rtts {
		delay := time.Duration(rtt) * time.Millisecond / 2
		for _, side := range sides {
			var l *linkRun
			if side == "fieldbridge" {
				l = startOurs(t, bin, cloud, delay, rtt)
			} else {
				l = startMosquittoBridge(t, cloud, delay, rtt)
			}
			d := l.drain(t, backlog, cloud.Pid())
			v := l.live(t, rate, secs)
			fmt.Printf("%-18s %4dms | %12.0f %10v | %7d/%-6d %12v %12v | %10.1f %8.1f %7.1f\n", side, rtt,
				d.rate, d.first.Round(time.Millisecond), v.arrived, v.sent, v.lastBehind.Round(time.Millisecond), v.p99.Round(time.Millisecond),
				d.cpu[0], d.cpu[1], d.cpu[2])
			l.stop()
		}
	}
}

// linkRun is one bridge (ours or mosquitto's) behind one delayed proxy.
type linkRun struct {
	proxy  *testpeer.Proxy
	local  string // the local broker the bridge forwards from
	prefix string // of the topics at the upstream
	cnt    *stampCounter
	onDisk func(topic string) int // queued records (ours), nil for mosquitto
	pid    int                    // of the bridging process
	stop   func()
}

func startOurs(t *testing.T, bin string, cloud *testpeer.Mosquitto, delay time.Duration, rtt int) *linkRun {
	prefix := fmt.Sprintf("ours%d/", rtt)
	proxy := testpeer.StartProxyWith(t, cloud.Addr(), testpeer.ProxyOptions{Delay: delay})
	dir := t.TempDir()
	local := freeAddr(t)
	path := filepath.Join(dir, "gateway.yaml")
	err := os.WriteFile(path, fmt.Appendf(nil, `gateway: {id: plant1, data_dir: %s}
log: {level: %s}
broker: {listen: "%s"}
bridge:
  upstreams: [{url: "tcp://%s"}]
  forward: [{filter: "bench/#", prefix: "%s"}]
  buffer: {max_bytes: 2GiB}
`, filepath.Join(dir, "data"), logLevel(), local, proxy.Addr(), prefix), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	g := startGateway(t, bin, path, filepath.Join(dir, "gateway.log"))
	waitUntil(t, 20*time.Second, 20*time.Millisecond, "gateway connected", func() bool { return proxy.Conns() > 0 })
	queueDir := filepath.Join(dir, "data", "queue")
	return &linkRun{
		proxy: proxy, local: local, prefix: prefix,
		cnt:    newStampCounter(t, cloud.Addr(), prefix+"bench/#"),
		onDisk: func(topic string) int { return queuedRecords(queueDir, prefix+topic) },
		pid:    g.cmd.Process.Pid,
		stop: func() {
			g.stop(15)
			keepLog(t, filepath.Join(dir, "gateway.log"), fmt.Sprintf("gateway-rtt%d.log", rtt))
		},
	}
}

// logLevel is the gateway's log level: BENCH_LOG (e.g. debug), or info.
func logLevel() string {
	if v := os.Getenv("BENCH_LOG"); v != "" {
		return v
	}
	return "info"
}

// keepLog copies a gateway log to $BENCH_LOG_DIR (when set) before the
// test's temp dir goes.
func keepLog(t *testing.T, path, name string) {
	dir := os.Getenv("BENCH_LOG_DIR")
	if dir == "" {
		return
	}
	b, err := os.ReadFile(path)
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, name), b, 0o644)
	}
	if err != nil {
		t.Logf("keep log: %v", err)
	}
}

func startMosquittoBridge(t *testing.T, cloud *testpeer.Mosquitto, delay time.Duration, rtt int) *linkRun {
	prefix := fmt.Sprintf("mosq%d/", rtt)
	proxy := testpeer.StartProxyWith(t, cloud.Addr(), testpeer.ProxyOptions{Delay: delay})
	local := testpeer.StartMosquitto(t, testpeer.MosquittoOptions{
		Persistence:       true,
		MaxQueuedMessages: 100000,
		ExtraConfig: []string{
			"connection cloud",
			"address " + proxy.Addr(),
			fmt.Sprintf(`topic bench/# out 1 "" %s`, prefix),
			"cleansession false",
			"restart_timeout 1 1",
		},
	})
	waitUntil(t, 20*time.Second, 20*time.Millisecond, "mosquitto bridge connected", func() bool { return proxy.Conns() > 0 })
	return &linkRun{
		proxy: proxy, local: local.Addr(), prefix: prefix,
		cnt:  newStampCounter(t, cloud.Addr(), prefix+"bench/#"),
		pid:  local.Pid(),
		stop: func() { local.Stop() },
	}
}

type drainResult struct {
	rate  float64       // first to last message
	first time.Duration // link restored → first message
	cpu   [3]float64    // µs per message: bridge, upstream, this process (the harness)
}

// drain builds a backlog of n during an outage and measures its drain.
// upstream is the upstream broker's pid, for its CPU figure.
func (l *linkRun) drain(t *testing.T, n int, upstream int) drainResult {
	l.cnt.reset()
	l.proxy.Cut()
	publishAll(t, l.local, "bench/drain", stampedLines(n))
	if l.onDisk != nil {
		waitUntil(t, 60*time.Second, 20*time.Millisecond, "backlog on disk", func() bool { return l.onDisk("bench/drain") >= n })
	}
	pids := []int{l.pid, upstream, os.Getpid()}
	before := make([]time.Duration, len(pids))
	for i, pid := range pids {
		before[i] = testpeer.ProcessCPU(t, pid)
	}
	restored := time.Now()
	l.proxy.Restore()
	l.cnt.wait(n, 30*time.Second)
	first, last, got := l.cnt.span()
	if got < n {
		t.Errorf("%s: drain: %d of %d arrived", l.prefix, got, n)
	}
	var r drainResult
	if d := last.Sub(first); d > 0 {
		r.rate = float64(got) / d.Seconds()
	}
	r.first = first.Sub(restored)
	for i, pid := range pids {
		r.cpu[i] = float64((testpeer.ProcessCPU(t, pid) - before[i]).Microseconds()) / float64(n)
	}
	return r
}

type liveResult struct {
	sent, arrived   int
	lastBehind, p99 time.Duration
}

// live publishes rate msg/s for secs seconds with paho (QoS 1) and waits
// until every message arrived, or nothing arrived for 10 s.
func (l *linkRun) live(t *testing.T, rate, secs int) liveResult {
	l.cnt.reset()
	opts := mqtt.NewClientOptions().AddBroker("tcp://" + l.local).SetClientID(fmt.Sprintf("live-%d", time.Now().UnixNano())).SetAutoReconnect(false)
	c := mqtt.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("live publisher: %v", tok.Error())
	}
	defer c.Disconnect(100)
	n := rate * secs
	pad := strings.Repeat("x", 100)
	start := time.Now()
	for i := range n {
		due := start.Add(time.Duration(i) * time.Second / time.Duration(rate))
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		c.Publish("bench/live", 1, false, fmt.Appendf(nil, "%07d %d %s", i, time.Now().UnixNano(), pad))
	}
	l.cnt.wait(n, 10*time.Second)
	return l.cnt.lag(n)
}

// stampedLines are messages "NNNNNNN 0 xxx…" for mosquitto_pub -l (a zero
// stamp: the backlog's lag means nothing).
func stampedLines(n int) [][]byte {
	out := make([][]byte, n)
	pad := strings.Repeat("x", 100)
	for i := range out {
		out[i] = fmt.Appendf(nil, "%07d 0 %s", i, pad)
	}
	return out
}

// stampCounter records, per message number, when it first arrived and how
// long after its publication, from a testpeer.RawSubscriber on the
// upstream.
type stampCounter struct {
	mu      sync.Mutex
	arrived map[int]time.Time
	behind  map[int]time.Duration
	first   time.Time
	last    time.Time
	changed chan struct{}
}

func newStampCounter(t *testing.T, addr, filter string) *stampCounter {
	t.Helper()
	c := &stampCounter{changed: make(chan struct{}, 1)}
	c.reset()
	testpeer.StartRawSubscriber(t, addr, fmt.Sprintf("stamps-%d", time.Now().UnixNano()), filter, c.record)
	return c
}

// record takes one message "NNNNNNN STAMP …" (STAMP in Unix nanoseconds,
// 0 for none) that arrived at now.
func (c *stampCounter) record(_ string, payload []byte, now time.Time) {
	f := strings.SplitN(string(payload), " ", 3)
	if len(f) < 3 {
		return
	}
	k, err1 := strconv.Atoi(f[0])
	pub, err2 := strconv.ParseInt(f[1], 10, 64)
	if err1 != nil || err2 != nil {
		return
	}
	c.mu.Lock()
	if _, dup := c.arrived[k]; !dup {
		c.arrived[k] = now
		if pub > 0 {
			c.behind[k] = now.Sub(time.Unix(0, pub))
		}
	}
	if c.first.IsZero() {
		c.first = now
	}
	c.last = now
	c.mu.Unlock()
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

func (c *stampCounter) reset() {
	c.mu.Lock()
	c.arrived, c.behind = map[int]time.Time{}, map[int]time.Duration{}
	c.first, c.last = time.Time{}, time.Time{}
	c.mu.Unlock()
}

func (c *stampCounter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.arrived)
}

// wait waits until n distinct messages arrived, or nothing did for quiet.
func (c *stampCounter) wait(n int, quiet time.Duration) {
	for c.count() < n {
		select {
		case <-c.changed:
		case <-time.After(quiet):
			return
		}
	}
}

func (c *stampCounter) span() (first, last time.Time, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.first, c.last, len(c.arrived)
}

func (c *stampCounter) lag(sent int) liveResult {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := liveResult{sent: sent, arrived: len(c.arrived)}
	lags := make([]time.Duration, 0, len(c.behind))
	for _, d := range c.behind {
		lags = append(lags, d)
	}
	slices.Sort(lags)
	if len(lags) > 0 {
		r.p99 = lags[len(lags)*99/100]
	}
	if d, ok := c.behind[sent-1]; ok {
		r.lastBehind = d
	} else {
		r.lastBehind = -1
	}
	return r
}
