package bridge

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
)

// Reloading. The queue and its intake belong to the Bridge for as long as
// Run runs; a reload changes only what reads the configuration:
//
//   - the forward subscriptions on the local broker: rules that are new
//     are subscribed before rules that went away are unsubscribed, so a
//     message published meanwhile is queued by one of them or by both (a
//     duplicate in the cloud, never a loss). Rules that did not change
//     keep their subscription.
//   - the session (connection, window, downlink): when anything it reads
//     changed, it is stopped cleanly (in-flight messages acknowledged or
//     left queued, "offline", DISCONNECT) and started again with the new
//     settings, from the oldest unacknowledged record. While it is down the
//     intake keeps queueing.
//
// The configuration is swapped only while no session goroutine runs, so the
// session reads it without locks. The forward handlers, which run on the
// local publishers' goroutines, read the rules through b.live.

// reconfigure is a request from Reconfigure to Run.
type reconfigure struct {
	cfg   Config
	reply chan reconfigured
}

type reconfigured struct {
	notApplied []string
	err        error
}

// runState is what Run owns while it runs.
type runState struct {
	subs        map[ruleKey]func() // forward rule → its unsubscribe
	applied     Config             // the configuration in force, forward rules included
	stopSession context.CancelFunc
	session     sync.WaitGroup
}

// ruleKey identifies a forward rule by everything its handler does.
type ruleKey struct {
	filter, prefix string
	qos            int
	retain         RetainMode
	batch          bool // its records are marked for batching
}

func keyOf(r *ForwardRule) ruleKey {
	return ruleKey{r.Filter, r.Prefix, qosOf(r.QoS), r.Retain, r.Batch != nil}
}

// Reconfigure applies a checked configuration to a running bridge without
// closing its queue: no message handed to the bridge is lost. It waits
// until the change is in force. Forward rules are swapped in place; when
// anything the connection depends on changed (upstreams, credentials, TLS,
// timing, window, status topic, subscribe rules), the connection is closed
// cleanly and made again.
//
// The buffer settings belong to the open queue and are not changed: keys
// that differ are returned in notApplied (relative to the bridge section),
// and take effect at the next start. An error means nothing was changed.
func (b *Bridge) Reconfigure(cfg Config) (notApplied []string, err error) {
	if !cfg.checked {
		return nil, errors.New("bridge: config not checked (call Config.Check first)")
	}
	if !b.running.Load() {
		return nil, errors.New("bridge: not running")
	}
	req := reconfigure{cfg: cfg, reply: make(chan reconfigured, 1)}
	select {
	case b.reconf <- req:
	case <-b.stopped:
		return nil, errors.New("bridge: stopped")
	}
	r := <-req.reply
	return r.notApplied, r.err
}

// serveReconfigure applies Reconfigure's requests until ctx ends.
func (b *Bridge) serveReconfigure(ctx context.Context, rs *runState) {
	for {
		select {
		case req := <-b.reconf:
			req.reply <- b.apply(ctx, rs, req.cfg)
		case <-ctx.Done():
			return
		}
	}
}

// apply runs on Run's goroutine.
func (b *Bridge) apply(ctx context.Context, rs *runState, next Config) reconfigured {
	old := rs.applied
	notApplied := bufferChanges(old.Buffer, next.Buffer)
	next.Buffer = old.Buffer

	// New forward rules first, then the old ones go: the overlap may queue
	// a message twice, never not at all.
	b.setLive(next)
	if err := b.subscribeForward(rs, next.Forward); err != nil {
		b.setLive(old)
		return reconfigured{err: err}
	}
	keep := make(map[ruleKey]bool, len(next.Forward))
	for i := range next.Forward {
		keep[keyOf(&next.Forward[i])] = true
	}
	for k, unsub := range rs.subs {
		if !keep[k] {
			unsub()
			delete(rs.subs, k)
		}
	}
	rs.applied = next

	if !reflect.DeepEqual(sessionView(old), sessionView(next)) {
		b.log.Info("bridge settings changed: reconnecting with the new ones")
		rs.stopSession()
		b.cfg = next // no session goroutine reads it now
		b.startSession(ctx, rs)
	}
	b.log.Info("bridge reconfigured", "forward_rules", len(next.Forward), "subscribe_rules", len(next.Subscribe))
	return reconfigured{notApplied: notApplied}
}

// subscribeForward subscribes the rules that are not subscribed yet. On an
// error, the rules it subscribed are unsubscribed again.
func (b *Bridge) subscribeForward(rs *runState, rules []ForwardRule) error {
	var added []ruleKey
	for i := range rules {
		r := &rules[i]
		k := keyOf(r)
		if _, ok := rs.subs[k]; ok {
			continue
		}
		unsub, err := b.src.Subscribe(r.Filter, b.forwardHandler(r))
		if err != nil {
			for _, k := range added {
				rs.subs[k]()
				delete(rs.subs, k)
			}
			return fmt.Errorf("bridge: forward[%d]: %w", i, err)
		}
		rs.subs[k] = unsub
		added = append(added, k)
	}
	return nil
}

func (rs *runState) unsubscribeAll() {
	for k, unsub := range rs.subs {
		unsub()
		delete(rs.subs, k)
	}
}

// startSession runs the session goroutine until stopSession. Its context
// does not end with Run's: Run stops it only after the intake has written
// what it was handed, so that a clean shutdown sends as much as it can.
func (b *Bridge) startSession(ctx context.Context, rs *runState) {
	sessCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	rs.session.Add(1)
	go func() {
		defer rs.session.Done()
		b.guard("session", func() { b.runSessions(sessCtx) })
	}()
	rs.stopSession = func() {
		stop()
		rs.session.Wait()
	}
}

// setLive publishes the rules the forward handlers read.
func (b *Bridge) setLive(c Config) { b.live.Store(&c) }

// rules is the configuration the forward handlers apply: the one in force
// while Run runs, b.cfg before.
func (b *Bridge) rules() *Config {
	if c := b.live.Load(); c != nil {
		return c
	}
	return &b.cfg
}

// sessionView is what the session reads of a configuration: all but the
// buffer (the queue's) and the forward rules (the handlers have their own),
// except how the rules that batch pack their records, which the sender
// does.
func sessionView(c Config) Config {
	var batching []ForwardRule
	for _, r := range c.Forward {
		if r.Batch != nil {
			batching = append(batching, ForwardRule{Filter: r.Filter, Prefix: r.Prefix, QoS: r.QoS, Batch: r.Batch})
		}
	}
	c.Forward = batching
	c.Buffer = Buffer{}
	return c
}

// bufferChanges lists the buffer keys that differ.
func bufferChanges(a, b Buffer) []string {
	var out []string
	if a.Dir != b.Dir {
		out = append(out, "buffer.dir")
	}
	if a.MaxBytes != b.MaxBytes {
		out = append(out, "buffer.max_bytes")
	}
	if (a.MaxAge == nil) != (b.MaxAge == nil) || (a.MaxAge != nil && *a.MaxAge != *b.MaxAge) {
		out = append(out, "buffer.max_age")
	}
	if a.WhenFull != b.WhenFull {
		out = append(out, "buffer.when_full")
	}
	if a.Sync != b.Sync {
		out = append(out, "buffer.sync")
	}
	return out
}
