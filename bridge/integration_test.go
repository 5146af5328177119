package bridge_test

import (
	"testing"
	"time"

	"github.com/fieldbridge/fieldbridge/bridge"
	"github.com/fieldbridge/fieldbridge/internal/testpeer"
)

const burstN = 20000

// cloud starts mosquitto as the cloud broker, able to queue a whole burst
// for a slow subscriber.
func cloud(t *testing.T, opts testpeer.MosquittoOptions) *testpeer.Mosquitto {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test (mosquitto)")
	}
	opts.MaxQueuedMessages = 2*burstN + 1000
	return testpeer.StartMosquitto(t, opts)
}

func forwardConfig(url string) bridge.Config {
	return bridge.Config{
		Upstreams:      []bridge.Upstream{{URL: url}},
		Keepalive:      2 * time.Second,
		ConnectTimeout: 2 * time.Second,
		BackoffInitial: 50 * time.Millisecond,
		BackoffMax:     200 * time.Millisecond,
		Forward:        []bridge.ForwardRule{{Filter: "plant1/#", Prefix: "site-a/"}},
	}
}

// TestOutage: 20,000 QoS 1 messages published while the cloud is cut off
// all arrive once it is back, in order, with duplicates within the window.
func TestOutage(t *testing.T) {
	m := cloud(t, testpeer.MosquittoOptions{})
	proxy := testpeer.StartProxy(t, m.Addr())
	local := startLocal(t)
	br := startBridge(t, local, forwardConfig("tcp://"+proxy.Addr()))
	sub := testpeer.Subscribe(t, testpeer.SubOptions{Addr: m.Addr(), Filter: "site-a/plant1/outage", QoS: 1})
	waitFor(t, 10*time.Second, "connected", func() bool { return br.Stats().Connected })

	proxy.Cut()
	waitFor(t, 10*time.Second, "the bridge to notice the outage", func() bool { return !br.Stats().Connected })
	testpeer.PublishLines(t, testpeer.PubOptions{Addr: local.Addr(), Topic: "plant1/outage", QoS: 1}, numbered(burstN))
	waitFor(t, 10*time.Second, "all queued", func() bool { return br.Stats().Queued >= burstN })
	if st := br.Stats(); st.Pending != burstN || st.Acked != 0 {
		t.Fatalf("during the outage: %+v", st)
	}

	start := time.Now()
	proxy.Restore()
	sub.WaitCount(t, burstN, 60*time.Second)
	t.Logf("backlog of %d drained in %v", burstN, time.Since(start))
	waitFor(t, 10*time.Second, "queue empty", func() bool { return br.Stats().Pending == 0 })
	st := br.Stats()
	checkSequence(t, sub.Messages(), burstN, 20, st.Reconnects)
	if st.HandoffOverflow+st.DroppedFull+st.DroppedShutdown != 0 || st.Reconnects < 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestBurst: 20,000 messages as fast as mosquitto_pub -l sends them, with
// the cloud up, all arrive in order.
func TestBurst(t *testing.T) {
	m := cloud(t, testpeer.MosquittoOptions{})
	local := startLocal(t)
	br := startBridge(t, local, forwardConfig("tcp://"+m.Addr()))
	sub := testpeer.Subscribe(t, testpeer.SubOptions{Addr: m.Addr(), Filter: "site-a/plant1/burst", QoS: 1})
	waitFor(t, 10*time.Second, "connected", func() bool { return br.Stats().Connected })

	start := time.Now()
	testpeer.PublishLines(t, testpeer.PubOptions{Addr: local.Addr(), Topic: "plant1/burst", QoS: 1}, numbered(burstN))
	sub.WaitCount(t, burstN, 60*time.Second)
	t.Logf("burst of %d forwarded in %v", burstN, time.Since(start))
	st := br.Stats()
	checkSequence(t, sub.Messages(), burstN, 20, st.Reconnects)
	if st.HandoffOverflow != 0 || st.Queued != burstN || st.Reconnects != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestSilentOutage: a link that stops carrying anything without closing (a
// NAT that forgot the session) is noticed within about 2 × keepalive,
// dropped and redialled; what was published meanwhile arrives afterwards.
func TestSilentOutage(t *testing.T) {
	m := cloud(t, testpeer.MosquittoOptions{})
	proxy := testpeer.StartProxy(t, m.Addr())
	local := startLocal(t)
	cfg := forwardConfig("tcp://" + proxy.Addr())
	cfg.Keepalive = time.Second
	br := startBridge(t, local, cfg)
	sub := testpeer.Subscribe(t, testpeer.SubOptions{Addr: m.Addr(), Filter: "site-a/plant1/#", QoS: 1})
	waitFor(t, 10*time.Second, "connected", func() bool { return br.Stats().Connected })

	// Idle: only paho's ping can notice.
	proxy.Blackhole(true)
	start := time.Now()
	waitFor(t, 4*cfg.Keepalive, "the idle zombie link to be noticed", func() bool { return br.Stats().ConnectionsLost == 1 })
	t.Logf("idle zombie noticed after %v (keepalive %v)", time.Since(start), cfg.Keepalive)

	// While it redials into the blackhole, messages queue up.
	testpeer.Publish(t, testpeer.PubOptions{Addr: local.Addr(), Topic: "plant1/silent", Payload: []byte("during"), QoS: 1})
	proxy.Blackhole(false)
	sub.WaitFor(t, 15*time.Second, func(msg testpeer.Message) bool { return string(msg.Payload) == "during" })

	// Busy: messages in flight and no acknowledgement.
	proxy.Blackhole(true)
	start = time.Now()
	testpeer.Publish(t, testpeer.PubOptions{Addr: local.Addr(), Topic: "plant1/silent", Payload: []byte("in flight"), QoS: 1})
	waitFor(t, 4*cfg.Keepalive, "the busy zombie link to be noticed", func() bool { return br.Stats().ConnectionsLost == 2 })
	t.Logf("busy zombie noticed after %v", time.Since(start))
	proxy.Blackhole(false)
	sub.WaitFor(t, 15*time.Second, func(msg testpeer.Message) bool { return string(msg.Payload) == "in flight" })
	// The birth and the data travel together: the bridge takes their
	// acknowledgements a moment after the subscriber saw the data.
	waitFor(t, 5*time.Second, "connected with nothing pending", func() bool {
		st := br.Stats()
		return st.Pending == 0 && st.Connected
	})
}

// TestFailover: with the first upstream refusing connections, the bridge
// moves to the second after failover_after attempts and forwards there.
func TestFailover(t *testing.T) {
	m := cloud(t, testpeer.MosquittoOptions{})
	dead := testpeer.StartProxy(t, m.Addr())
	dead.Cut()
	local := startLocal(t)
	cfg := forwardConfig("tcp://" + dead.Addr())
	cfg.Upstreams = append(cfg.Upstreams, bridge.Upstream{URL: "tcp://" + m.Addr()})
	cfg.FailoverAfter = 2
	sub := testpeer.Subscribe(t, testpeer.SubOptions{Addr: m.Addr(), Filter: "site-a/#", QoS: 1})
	br := startBridge(t, local, cfg)
	sub.WaitFor(t, 10*time.Second, func(msg testpeer.Message) bool { return string(msg.Payload) == "online" })
	testpeer.Publish(t, testpeer.PubOptions{Addr: local.Addr(), Topic: "plant1/x", Payload: []byte("via backup"), QoS: 1})
	sub.WaitFor(t, 10*time.Second, func(msg testpeer.Message) bool { return string(msg.Payload) == "via backup" })
	if st := br.Stats(); st.ConnectFailures != 2 || st.Upstream != "tcp://"+m.Addr() || !st.Connected {
		t.Errorf("stats %+v", st)
	}
}

// TestForwardQoS: QoS 0 and QoS 2 rules arrive with their QoS (QoS 2
// through paho's PUBREC/PUBREL/PUBCOMP), retain kept or cleared per rule.
func TestForwardQoS(t *testing.T) {
	m := cloud(t, testpeer.MosquittoOptions{})
	local := startLocal(t)
	zero, two := 0, 2
	cfg := forwardConfig("tcp://" + m.Addr())
	cfg.Forward = []bridge.ForwardRule{
		{Filter: "plant1/q0/#", Prefix: "q0/", QoS: &zero, Retain: bridge.RetainFalse},
		{Filter: "plant1/q2/#", Prefix: "q2/", QoS: &two},
	}
	br := startBridge(t, local, cfg)
	sub := testpeer.Subscribe(t, testpeer.SubOptions{Addr: m.Addr(), Filters: []string{"q0/plant1/q0/#", "q2/#"}, QoS: 2})
	waitFor(t, 10*time.Second, "connected", func() bool { return br.Stats().Connected })
	for i := range 50 {
		for _, topic := range []string{"plant1/q0/v", "plant1/q2/v"} {
			testpeer.Publish(t, testpeer.PubOptions{Addr: local.Addr(), Topic: topic, Payload: []byte{byte('a' + i%26)}, QoS: 1})
		}
	}
	sub.WaitCount(t, 100, 20*time.Second)
	for _, msg := range sub.Messages() {
		want := 0
		if msg.Topic == "q2/plant1/q2/v" {
			want = 2
		}
		if msg.QoS != want || msg.Retained {
			t.Errorf("%v: want QoS %d, not retained", msg, want)
		}
	}
	waitFor(t, 5*time.Second, "all acknowledged", func() bool { return br.Stats().Pending == 0 })
	// The rule keeping retain (the default) passes it on.
	testpeer.Publish(t, testpeer.PubOptions{Addr: local.Addr(), Topic: "plant1/q2/kept", Payload: []byte("r"), QoS: 1, Retain: true})
	waitFor(t, 5*time.Second, "forwarded", func() bool { return br.Stats().Acked == 101 })
	late := testpeer.Subscribe(t, testpeer.SubOptions{Addr: m.Addr(), Filter: "q2/plant1/q2/kept"})
	if msg := late.WaitFor(t, 5*time.Second, func(testpeer.Message) bool { return true }); !msg.Retained {
		t.Errorf("retained message not retained in the cloud: %v", msg)
	}
}
