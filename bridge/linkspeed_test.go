package bridge_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/fieldbridge/fieldbridge/internal/testpeer"
	"github.com/fieldbridge/fieldbridge/localbroker"
)

// TestLinkRoundTrips: the bridge at its defaults over links of 0, 20, 100
// and 300 ms round trip (a delay line: latency without a bandwidth cap). A
// backlog built during an outage drains, then a live stream flows with the
// link up: nothing is missing, order is kept, and the live stream keeps up
// (its last message arrives about one round trip after it was published,
// not seconds later as with a fixed window of 20 at 300 ms).
func TestLinkRoundTrips(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	const backlog, rate, secs = 3000, 500, 2
	for _, rtt := range []time.Duration{0, 20 * time.Millisecond, 100 * time.Millisecond, 300 * time.Millisecond} {
		t.Run(rtt.String(), func(t *testing.T) {
			m := cloud(t, testpeer.MosquittoOptions{MaxQueuedMessages: 4 * (backlog + rate*secs)})
			proxy := testpeer.StartProxyWith(t, m.Addr(), testpeer.ProxyOptions{Delay: rtt / 2})
			local := startLocal(t)
			cfg := forwardConfig("tcp://" + proxy.Addr())
			cfg.BackoffInitial = 100 * time.Millisecond
			br := startBridge(t, local, cfg)
			sub := testpeer.Subscribe(t, testpeer.SubOptions{Addr: m.Addr(), Filter: "site-a/plant1/link", QoS: 1})
			waitFor(t, 10*time.Second, "connected", func() bool { return br.Stats().Connected })

			proxy.Cut()
			testpeer.PublishLines(t, testpeer.PubOptions{Addr: local.Addr(), Topic: "plant1/link", QoS: 1}, numbered(backlog))
			waitFor(t, 20*time.Second, "the backlog queued", func() bool { return br.Stats().Queued >= backlog })
			restored := time.Now()
			proxy.Restore()
			sub.WaitCount(t, backlog, 60*time.Second)
			drained := time.Since(restored)
			checkSequence(t, sub.Messages(), backlog, 0, 0)

			sub.Reset()
			sent := publishPaced(t, local, "plant1/link", rate, secs)
			sub.WaitCount(t, len(sent), 30*time.Second)
			msgs := sub.Messages()
			checkSequence(t, msgs, len(sent), 0, 0)
			last := msgs[len(msgs)-1]
			behind := last.Time.Sub(sent[len(sent)-1])
			st := br.Stats()
			t.Logf("rtt %v: backlog of %d drained %v after the link returned; live %d msg/s: last message %v behind; window %d, round trip %v",
				rtt, backlog, drained.Round(time.Millisecond), rate, behind.Round(time.Millisecond), st.Window, st.RoundTrip.Round(time.Millisecond))
			if behind > rtt+5*time.Second {
				t.Errorf("the live stream fell behind: its last message arrived %v after it was published", behind)
			}
			if st.Reconnects != 1 || st.Resent != 0 {
				t.Errorf("stats %+v: want the one reconnect after the cut and nothing resent", st)
			}
		})
	}
}

// publishPaced publishes numbered messages ("%06d …") at rate per second
// for secs seconds with paho (QoS 1) into the local broker, and returns
// when each was published.
func publishPaced(t *testing.T, local *localbroker.Broker, topic string, rate, secs int) []time.Time {
	t.Helper()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + local.Addr()).SetClientID("paced").SetAutoReconnect(false))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("paced publisher: %v", tok.Error())
	}
	defer c.Disconnect(100)
	n := rate * secs
	at := make([]time.Time, n)
	pad := strings.Repeat("x", 100)
	start := time.Now()
	var last mqtt.Token
	for i := range n {
		if d := time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))); d > 0 {
			time.Sleep(d) // the pace is the point: a message every 1/rate s
		}
		at[i] = time.Now()
		last = c.Publish(topic, 1, false, fmt.Sprintf("%06d %s", i, pad))
	}
	if !last.WaitTimeout(10*time.Second) || last.Error() != nil {
		t.Fatalf("paced publisher: last message not acknowledged: %v", last.Error())
	}
	return at
}

// TestPromptReconnect: after a short outage the bridge is back within
// about backoff_initial (1 s, the default) of the link's return — it
// retries at that pace for the first 10 s of an outage — and what was
// queued meanwhile follows at once.
func TestPromptReconnect(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	m := cloud(t, testpeer.MosquittoOptions{})
	proxy := testpeer.StartProxy(t, m.Addr())
	local := startLocal(t)
	br := startBridge(t, local, forwardConfig("tcp://"+proxy.Addr())) // default backoff
	sub := testpeer.Subscribe(t, testpeer.SubOptions{Addr: m.Addr(), Filter: "site-a/plant1/prompt", QoS: 1})
	waitFor(t, 10*time.Second, "connected", func() bool { return br.Stats().Connected })
	for round := range 2 {
		proxy.Cut()
		waitFor(t, 5*time.Second, "the cut noticed", func() bool { return !br.Stats().Connected })
		testpeer.Publish(t, testpeer.PubOptions{Addr: local.Addr(), Topic: "plant1/prompt", Payload: []byte(strconv.Itoa(round)), QoS: 1})
		time.Sleep(3 * time.Second) // the outage: its length is the point
		restored := time.Now()
		proxy.Restore()
		waitFor(t, 5*time.Second, "reconnected", func() bool { return br.Stats().Connected })
		back := time.Since(restored)
		msg := sub.WaitFor(t, 5*time.Second, func(msg testpeer.Message) bool { return string(msg.Payload) == strconv.Itoa(round) })
		t.Logf("outage of 3 s: reconnected %v after the link returned, queued message there %v after", back.Round(time.Millisecond), msg.Time.Sub(restored).Round(time.Millisecond))
		if back > 1500*time.Millisecond {
			t.Errorf("reconnected %v after the link returned, want within about backoff_initial (1 s)", back)
		}
	}
}
