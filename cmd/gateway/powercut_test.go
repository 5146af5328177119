package main

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fieldbridge/fieldbridge/internal/testpeer"
	"github.com/fieldbridge/fieldbridge/internal/testpeer/powercut"
)

// The whole gateway through real power cuts: its data_dir is on a
// testpeer/powercut file system, messages are published into its broker
// at a steady rate, and the power is cut at random moments (the file
// system keeps only what was fsynced, tails are torn, the process is
// SIGKILLed). After each cut the gateway restarts on what the card holds.
// Once the link is back, everything published (acknowledged by the
// gateway's broker) more than one sync window, plus slack for the hand-off,
// before a cut must reach the cloud at least once, in order per topic.

const (
	gwSync = 100 * time.Millisecond // buffer.sync, the default
	// gwSlack covers the hand-off from the broker to the queue (channel,
	// batching writer) and a late group commit; time in which the test
	// process did not run at all (a loaded machine) does not count.
	gwSlack = 250 * time.Millisecond
	// gwTick is the publishing pace: one message per topic per tick.
	gwTick = 2 * time.Millisecond
)

// pcTopic is one topic the test publishes numbered messages on.
type pcTopic struct {
	local, cloud string
	sentAt       []time.Time // of message k
	required     []bool      // k must arrive
	// mayLose: acknowledged by the broker less than a sync window (plus
	// slack) before a cut; may be lost. Its age at the cut is kept.
	mayLose map[int]time.Duration
	// life[k] is the lifetime (0 = the first start) message k was sent in,
	// cutAt its cut, for reporting a loss.
	life    []int
	cutAt   []time.Time
	ackedAt map[int]time.Time
}

// describe says when message k was sent, for a report of its loss.
func (tp *pcTopic) describe(k int) string {
	if k >= len(tp.cutAt) || tp.cutAt[k].IsZero() {
		return fmt.Sprintf("%d (lifetime %d, no cut)", k, tp.life[k])
	}
	return fmt.Sprintf("%d (lifetime %d, sent %v and acknowledged %v before its cut)", k, tp.life[k],
		tp.cutAt[k].Sub(tp.sentAt[k]).Round(time.Millisecond), tp.cutAt[k].Sub(tp.ackedAt[k]).Round(time.Millisecond))
}

// pcRig is the test setup: the cloud, the link, the card and the config.
type pcRig struct {
	t      *testing.T
	bin    string
	proxy  *testpeer.Proxy
	sub    *testpeer.Sub
	fsys   *powercut.FS
	local  string
	config string
	rng    *rand.Rand
	lives  int // lifetimes that published
	// stalls: time in which the test process did not run (a loaded
	// machine; the gateway then most likely did not either) does not count
	// towards a message's age.
	stalls *powercut.StallMeter
}

func newRig(t *testing.T, bin string, proxy *testpeer.Proxy, sub *testpeer.Sub) *pcRig {
	t.Helper()
	r := &pcRig{t: t, bin: bin, proxy: proxy, sub: sub, local: freeAddr(t), stalls: powercut.StartStallMeter(t)}
	r.fsys = powercut.Mount(t, powercut.Options{})
	r.rng = rand.New(rand.NewPCG(r.fsys.Seed(), 7))
	r.config = filepath.Join(t.TempDir(), "gateway.yaml")
	writeBridgeConfig(t, r.config, r.fsys.Dir(), r.local, proxy.Addr(), "info")
	return r
}

// start runs the gateway and waits until its bridge forwards: it must
// start on whatever the card holds.
func (r *pcRig) start() (*gatewayProc, time.Duration) {
	r.t.Helper()
	begin := time.Now()
	gw := startGatewayProc(r.t, r.bin, r.config)
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(gw.out.String(), "bridge running") {
		select {
		case <-gw.done:
			r.t.Fatalf("the gateway did not start on the card after a power cut:\n%s", gw.out)
		default:
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("the gateway did not report \"bridge running\" within 20 s:\n%s", gw.out)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return gw, time.Since(begin)
}

// publishing publishes numbered messages on topics, one per topic per tick,
// until stop; it returns the publishers, whose Acked counts the broker's
// PUBACKs.
type publishing struct {
	pubs []*testpeer.Publisher
	tops []*pcTopic
	base []int // first message number of this lifetime, per topic
	stop chan struct{}
	done chan struct{}
	mu   sync.Mutex
}

func (r *pcRig) publish(tops []*pcTopic) *publishing {
	r.t.Helper()
	p := &publishing{tops: tops, stop: make(chan struct{}), done: make(chan struct{})}
	life := r.lives
	r.lives++
	for _, tp := range tops {
		p.pubs = append(p.pubs, testpeer.StartPublisher(r.t, testpeer.PubOptions{Addr: r.local, Topic: tp.local, QoS: 1}))
		p.base = append(p.base, len(tp.sentAt))
	}
	go func() {
		defer close(p.done)
		tick := time.NewTicker(gwTick)
		defer tick.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
			p.mu.Lock()
			for i, tp := range tops {
				k := len(tp.sentAt)
				if p.pubs[i].Send(fmt.Appendf(nil, "%07d %s", k, strings.Repeat("x", 60))) != nil {
					p.mu.Unlock()
					return
				}
				tp.sentAt = append(tp.sentAt, time.Now())
				tp.life = append(tp.life, life)
			}
			p.mu.Unlock()
		}
	}()
	return p
}

// ackedAt returns, per topic, when the broker's acknowledgement of each of
// this lifetime's messages so far reached the test.
func (p *publishing) ackedAt() [][]time.Time {
	out := make([][]time.Time, len(p.pubs))
	for i, pub := range p.pubs {
		out[i] = pub.AckedAt()
	}
	return out
}

// cut pulls the plug while gw runs and publishing goes on: it notes what
// the broker acknowledged, cuts (killing the gateway), stops the
// publishers and marks each message as required or allowed to be lost. A
// message counts as published when the broker's PUBACK reached the test:
// mosquitto_pub may lag behind the test's writes on a loaded machine, and
// the broker acknowledges a message just before it hands it to the bridge.
func (r *pcRig) cut(gw *gatewayProc, p *publishing) (powercut.CutReport, int) {
	r.t.Helper()
	acked := p.ackedAt() // every PUBACK counted here came before the cut
	tear := powercut.Tears[r.rng.IntN(len(powercut.Tears))]
	rep := r.fsys.Cut(tear, func() { gw.kill9(r.t) })
	close(p.stop)
	<-p.done
	for _, pub := range p.pubs {
		pub.Kill()
	}
	total := 0
	for i, tp := range p.tops {
		for len(tp.required) < len(tp.sentAt) {
			tp.required = append(tp.required, false)
		}
		for len(tp.cutAt) < len(tp.sentAt) {
			tp.cutAt = append(tp.cutAt, rep.At)
		}
		for j, at := range acked[i] {
			k := p.base[i] + j
			total++
			tp.ackedAt[k] = at
			if rep.At.Sub(at)-r.stalls.Stalled(at, rep.At) > gwSync+gwSlack {
				tp.required[k] = true
			} else {
				tp.mayLose[k] = rep.At.Sub(at)
			}
		}
	}
	return rep, total
}

// gwFigures are the figures of a mode, for the log and bench/powercut.
type gwFigures struct {
	cuts                           int
	acked, required, arrived, dups int
	missing                        int // required and not arrived: a broken promise
	lost                           int // allowed to be lost (within the window) and lost
	maxLostAge                     time.Duration
	maxDups                        int // delivered again after one cut
	cutTook, restart               time.Duration
}

// drain restores the link, publishes a last message on each topic and
// waits for it in the cloud: the queue is FIFO per topic, so everything
// before it that survived has arrived by then. Then it checks each topic.
func (r *pcRig) drain(tops []*pcTopic, fig *gwFigures) []string {
	r.t.Helper()
	r.proxy.Restore()
	for _, tp := range tops {
		pub := testpeer.StartPublisher(r.t, testpeer.PubOptions{Addr: r.local, Topic: tp.local, QoS: 1})
		if err := pub.Send([]byte("end")); err != nil {
			r.t.Fatal(err)
		}
		if err := pub.Close(); err != nil {
			r.t.Fatal(err)
		}
	}
	for _, tp := range tops {
		r.sub.WaitFor(r.t, 60*time.Second, func(m testpeer.Message) bool {
			return m.Topic == tp.cloud && string(m.Payload) == "end"
		})
	}
	msgs := r.sub.Messages()
	var problems []string
	for _, tp := range tops {
		problems = append(problems, checkTopic(tp, msgs, fig)...)
	}
	return problems
}

// checkTopic compares what arrived in the cloud on tp with what was
// published, and returns the broken promises.
func checkTopic(tp *pcTopic, msgs []testpeer.Message, fig *gwFigures) []string {
	var problems []string
	fail := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	seen := make([]bool, len(tp.sentAt))
	highest := -1
	reordered := 0
	for _, m := range msgs {
		if m.Topic != tp.cloud || string(m.Payload) == "end" {
			continue
		}
		num, _, _ := strings.Cut(string(m.Payload), " ")
		k, err := strconv.Atoi(num)
		if err != nil || k < 0 || k >= len(seen) {
			fail("%s: unexpected message %q", tp.cloud, m.Payload)
			continue
		}
		if seen[k] {
			fig.dups++
			continue
		}
		seen[k] = true
		fig.arrived++
		if k < highest {
			if reordered < 10 {
				fail("%s: message %d arrived for the first time after %d: order broken", tp.cloud, k, highest)
			}
			reordered++
		}
		highest = max(highest, k)
	}
	var missing []string
	for k := range tp.sentAt {
		if k < len(tp.required) && tp.required[k] {
			fig.required++
			if !seen[k] {
				missing = append(missing, tp.describe(k))
			}
		}
		if age, ok := tp.mayLose[k]; ok && !seen[k] {
			fig.lost++
			fig.maxLostAge = max(fig.maxLostAge, age)
		}
	}
	fig.acked += countTrue(tp.required) + len(tp.mayLose)
	fig.missing += len(missing)
	if len(missing) > 0 {
		fail("%s: %d messages acknowledged by the broker more than %v before a cut never reached the cloud: %s",
			tp.cloud, len(missing), gwSync+gwSlack, strings.Join(missing[:min(len(missing), 20)], ", "))
	}
	return problems
}

// maxDupsPerCut returns the most messages that the cloud received again
// after one cut, marks being how many it had received at each cut: those
// received between one mark and the next that it had before the mark.
func maxDupsPerCut(msgs []testpeer.Message, marks []int) int {
	most := 0
	for i, from := range marks {
		to := len(msgs)
		if i+1 < len(marks) {
			to = marks[i+1]
		}
		before := map[string]bool{}
		for _, m := range msgs[:from] {
			before[m.Topic+" "+string(m.Payload)] = true
		}
		n := 0
		for _, m := range msgs[from:to] {
			if before[m.Topic+" "+string(m.Payload)] {
				n++
			}
		}
		most = max(most, n)
	}
	return most
}

func countTrue(b []bool) int {
	n := 0
	for _, v := range b {
		if v {
			n++
		}
	}
	return n
}

func (f *gwFigures) log(t *testing.T, mode string) {
	t.Helper()
	per := func(d time.Duration) time.Duration {
		if f.cuts == 0 {
			return 0
		}
		return (d / time.Duration(f.cuts)).Round(time.Millisecond)
	}
	t.Logf("powercut figures: gateway %s: cuts=%d acked_by_broker=%d required=%d arrived=%d missing=%d "+
		"lost_within_window=%d max_lost_age=%v sync_window=%v duplicates=%d max_duplicates_per_cut=%d cut_time=%v restart_time=%v",
		mode, f.cuts, f.acked, f.required, f.arrived, f.missing, f.lost, f.maxLostAge.Round(time.Millisecond),
		gwSync, f.dups, f.maxDups, per(f.cutTook), per(f.restart))
}

func newTopics(mode string) []*pcTopic {
	var tops []*pcTopic
	for _, x := range []string{"a", "b"} {
		local := fmt.Sprintf("plant1/pc/%s/%s", mode, x)
		tops = append(tops, &pcTopic{local: local, cloud: "site-a/" + local, mayLose: map[int]time.Duration{}, ackedAt: map[int]time.Time{}})
	}
	return tops
}

// stop ends the gateway with SIGTERM, as systemd does.
func (p *gatewayProc) stop(t *testing.T) {
	t.Helper()
	p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.signal(syscall.SIGKILL)
		<-p.done
		t.Errorf("the gateway did not stop within 10 s of SIGTERM:\n%s", p.out)
	}
}

func logGwCut(t *testing.T, run int, d time.Duration, rep powercut.CutReport, restart time.Duration, f gwFigures) {
	t.Helper()
	t.Logf("cut %d after %v (tear %s, %d files torn): acked %d, required %d, arrived %d, missing %d, lost within the window %d (oldest %v before the cut), duplicates %d; cut %v, restart %v",
		run, d.Round(time.Millisecond), rep.Tear, len(rep.Torn), f.acked, f.required, f.arrived, f.missing, f.lost,
		f.maxLostAge.Round(time.Millisecond), f.dups, rep.Took.Round(time.Millisecond), restart.Round(time.Millisecond))
}

func (f *gwFigures) add(g gwFigures) {
	f.acked += g.acked
	f.required += g.required
	f.arrived += g.arrived
	f.missing += g.missing
	f.lost += g.lost
	f.dups += g.dups
	f.maxLostAge = max(f.maxLostAge, g.maxLostAge)
}

// TestGatewayPowerCuts runs the gateway (broker and bridge, no adapters)
// through repeated power cuts, on a fresh data directory and in steady
// state, against mosquitto behind a proxy.
func TestGatewayPowerCuts(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test (builds the gateway, runs mosquitto, mounts FUSE)")
	}
	powercut.Require(t)
	bin := buildGateway(t)
	cloud := testpeer.StartMosquitto(t, testpeer.MosquittoOptions{MaxQueuedMessages: 1000000})
	proxy := testpeer.StartProxy(t, cloud.Addr())
	sub := testpeer.Subscribe(t, testpeer.SubOptions{Addr: cloud.Addr(), Filter: "site-a/plant1/pc/#", QoS: 1})

	// A new gateway's first start, the link down from the beginning, the
	// power cut once; then it restarts, the link returns, the queue drains.
	t.Run("fresh", func(t *testing.T) {
		runs := powercut.Runs(t, 3)
		var fig gwFigures
		for run := range runs {
			r := newRig(t, bin, proxy, sub)
			tops := newTopics(fmt.Sprintf("fresh%d", run))
			proxy.Cut()
			gw, _ := r.start()
			p := r.publish(tops)
			d := time.Duration(400+r.rng.IntN(800)) * time.Millisecond
			time.Sleep(d) // publishing goes on meanwhile: the cut comes at a random moment
			rep, _ := r.cut(gw, p)
			fig.cuts++
			fig.cutTook += rep.Took
			r.fsys.Remount()
			_, _, dirKept := r.fsys.Durable("queue")
			gw, restart := r.start()
			fig.restart += restart
			var f gwFigures
			problems := r.drain(tops, &f)
			logGwCut(t, run, d, rep, restart, f)
			proxy.Cut()
			gw.stop(t)
			if len(problems) > 0 && !dirKept {
				problems = append(problems, "the queue directory itself is not on the card: it was never fsynced into its parent")
			}
			for _, pr := range problems {
				t.Error(pr)
			}
			fig.add(f)
		}
		fig.log(t, "fresh")
	})

	// A gateway that has been running: cut after cut at random moments,
	// with the link up (acknowledged messages come back as duplicates) or
	// down (messages pile up on the card), restarting on the card each
	// time; at the end the link returns and everything drains.
	t.Run("steady", func(t *testing.T) {
		runs := powercut.Runs(t, 5)
		r := newRig(t, bin, proxy, sub)
		tops := newTopics("steady")

		// It ran before and was shut down cleanly; the kernel has written
		// everything back since.
		proxy.Restore()
		gw, _ := r.start()
		p := r.publish(tops)
		time.Sleep(300 * time.Millisecond)
		close(p.stop)
		<-p.done
		for _, pub := range p.pubs {
			if err := pub.Close(); err != nil {
				t.Fatal(err)
			}
		}
		for i, tp := range tops {
			for k := p.base[i]; k < len(tp.sentAt); k++ {
				tp.required = append(tp.required, true)
				tp.cutAt = append(tp.cutAt, time.Time{}) // no cut: a clean shutdown
			}
		}
		gw.stop(t)
		r.fsys.SyncAll()

		var fig gwFigures
		var marks []int // messages the cloud had received at each cut
		for run := range runs {
			linkUp := run%2 == 1
			if linkUp {
				proxy.Restore()
			} else {
				proxy.Cut()
			}
			gw, restart := r.start()
			if run > 0 {
				fig.restart += restart
			}
			p := r.publish(tops)
			d := time.Duration(300+r.rng.IntN(1200)) * time.Millisecond
			time.Sleep(d) // publishing goes on meanwhile: the cut comes at a random moment
			rep, acked := r.cut(gw, p)
			marks = append(marks, sub.Count())
			fig.cuts++
			fig.cutTook += rep.Took
			t.Logf("cut %d (lifetime %d) after %v (link up %v, tear %s, %d files torn): %d messages acknowledged by the broker; cut %v",
				run, run+1, d.Round(time.Millisecond), linkUp, rep.Tear, len(rep.Torn), acked, rep.Took.Round(time.Millisecond))
			r.fsys.Remount()
		}
		gw, restart := r.start()
		fig.restart += restart
		problems := r.drain(tops, &fig)
		fig.maxDups = maxDupsPerCut(sub.Messages(), marks)
		gw.stop(t)
		for _, pr := range problems {
			t.Error(pr)
		}
		fig.log(t, "steady")
	})
}
