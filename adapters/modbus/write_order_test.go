package modbus

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fieldbridge/fieldbridge/adapters"
	"github.com/fieldbridge/fieldbridge/adapters/modbus/transport"
	"github.com/fieldbridge/fieldbridge/internal/config"
)

// gatedLink is a Modbus TCP link whose every Send waits for the test to let
// it through, so a test can hold a transaction on the wire and see what the
// bus does next. It answers reads with zeros and echoes writes.
type gatedLink struct {
	mu    sync.Mutex
	log   []string           // "fc@addr", in the order the requests were sent
	fail  map[string][]error // the next requests "fc@addr" fail with these, in turn
	regs  map[uint16]uint16
	gate  chan struct{}
	sent  chan string // each request as it goes on the wire
	close chan struct{}
}

func newGatedLink() *gatedLink {
	return &gatedLink{regs: map[uint16]uint16{}, fail: map[string][]error{}, gate: make(chan struct{}), sent: make(chan string, 64), close: make(chan struct{})}
}

func (l *gatedLink) Send(adu []byte) ([]byte, error) {
	pdu := adu[7:]
	fc, addr := pdu[0], binary.BigEndian.Uint16(pdu[1:])
	what := fmt.Sprintf("%d@%d", fc, addr)
	l.sent <- what
	select {
	case <-l.gate:
	case <-l.close:
		return nil, transport.ErrClosed
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.log = append(l.log, what)
	if errs := l.fail[what]; len(errs) > 0 {
		l.fail[what] = errs[1:]
		var ex exceptionReply
		if errors.As(errs[0], &ex) { // the device answers with an exception
			out := append([]byte(nil), adu[:7]...)
			binary.BigEndian.PutUint16(out[4:], 3)
			return append(out, fc|0x80, byte(ex)), nil
		}
		return nil, errs[0]
	}
	var resp []byte
	switch fc {
	case 3:
		n := binary.BigEndian.Uint16(pdu[3:])
		resp = []byte{3, byte(2 * n)}
		for i := range n {
			resp = binary.BigEndian.AppendUint16(resp, l.regs[addr+i])
		}
	case 6:
		l.regs[addr] = binary.BigEndian.Uint16(pdu[3:])
		resp = pdu[:5]
	case 16:
		n := binary.BigEndian.Uint16(pdu[3:])
		for i := range n {
			l.regs[addr+i] = binary.BigEndian.Uint16(pdu[6+2*i:])
		}
		resp = pdu[:5]
	default:
		return nil, fmt.Errorf("gated link: function %d not simulated", fc)
	}
	out := append([]byte(nil), adu[:7]...)
	binary.BigEndian.PutUint16(out[4:], uint16(len(resp)+1))
	return append(out, resp...), nil
}

// exceptionReply, as a gatedLink failure, answers with that exception code.
type exceptionReply byte

func (e exceptionReply) Error() string { return fmt.Sprintf("exception %d", byte(e)) }

func (l *gatedLink) SetTimeout(time.Duration) {}
func (l *gatedLink) Close() error             { return nil }
func (l *gatedLink) Stats() transport.Stats   { return transport.Stats{} }
func (l *gatedLink) requests() []string       { l.mu.Lock(); defer l.mu.Unlock(); return slices.Clone(l.log) }
func (l *gatedLink) release(t *testing.T)     { t.Helper(); l.gate <- struct{}{} }

// next waits for the next request to go on the wire.
func (l *gatedLink) next(t *testing.T) string {
	t.Helper()
	select {
	case s := <-l.sent:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("no request within 10s")
		return ""
	}
}

type nopSink struct{}

func (nopSink) Publish([]adapters.Sample)           {}
func (nopSink) Availability(*adapters.Device, bool) {}

// gatedBus runs a one-device bus on a gated link: three holding registers
// (0, 50, 100) polled in three requests, a writable setpoint at 50 and a
// writable bit of register 100.
func gatedBus(t *testing.T) (*Adapter, *gatedLink) {
	t.Helper()
	cfg, err := config.Parse("gated.yaml", []byte(`gateway: {id: it}
adapters:
  - name: bus
    type: modbus
    transport: tcp
    address: 127.0.0.1:1
    devices:
      - name: d
        unit: 1
        interval: 1h
        max_gap: 0
        points:
          - {name: a, table: holding, address: 0}
          - {name: sp, table: holding, address: 50, writable: true}
          - {name: flag, table: holding, address: 100, type: bool, bit: 3, writable: true}
`), config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	built, err := cfg.Build(slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	a := built[0].(*Adapter)
	l := newGatedLink()
	a.newLink = func() (link, error) { return l, nil }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(ctx, nopSink{}) }()
	t.Cleanup(func() { cancel(); close(l.close); <-done })
	return a, l
}

func point(a *Adapter, name string) *adapters.Point {
	for _, p := range a.Devices()[0].Points {
		if p.Name == name {
			return p
		}
	}
	panic(name)
}

// TestWriteJumpsThePollQueue: a write that arrives while a poll request is on
// the wire goes next — after that request's reply, never inside it, and
// before the rest of the cycle.
func TestWriteJumpsThePollQueue(t *testing.T) {
	a, l := gatedBus(t)
	if got := l.next(t); got != "3@0" {
		t.Fatalf("first request %s, want 3@0", got)
	}
	// The first poll request is on the wire: a write arrives now.
	results := make(chan adapters.WriteResult, 1)
	a.Write(adapters.Command{Point: point(a, "sp"), Value: adapters.Int(1200)}, func(r adapters.WriteResult) { results <- r })
	l.release(t) // the reply to 3@0
	// The poll request on the wire, the write, its read-back, then the
	// rest of the cycle.
	for _, want := range []string{"6@50", "3@50", "3@50", "3@100"} {
		if got := l.next(t); got != want {
			t.Fatalf("after the write arrived, request %s, want %s (log %v)", got, want, l.requests())
		}
		l.release(t)
	}
	if r := <-chanResult(t, results); r.Err != nil || r.ReadBack.String() != "1200" {
		t.Fatalf("result %+v", r)
	}
}

// TestBitWriteIsOneReadModifyWrite: the read of the register, the write and
// the read-back follow each other with nothing between, even with a poll
// due and another write queued.
func TestBitWriteIsOneReadModifyWrite(t *testing.T) {
	a, l := gatedBus(t)
	l.mu.Lock()
	l.regs[100] = 0xA5F0 // bit 3 clear, others mixed
	l.mu.Unlock()
	for range 3 { // the first poll cycle
		l.next(t)
		l.release(t)
	}
	results := make(chan adapters.WriteResult, 2)
	done := func(r adapters.WriteResult) { results <- r }
	a.Write(adapters.Command{Point: point(a, "flag"), Value: adapters.Bool(true)}, done)
	a.Write(adapters.Command{Point: point(a, "sp"), Value: adapters.Int(7)}, done)
	for _, want := range []string{"3@100", "6@100", "3@100", "6@50", "3@50"} {
		if got := l.next(t); got != want {
			t.Fatalf("request %s, want %s (log %v)", got, want, l.requests())
		}
		l.release(t)
	}
	for range 2 {
		if r := <-chanResult(t, results); r.Err != nil {
			t.Fatalf("write: %v", r.Err)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if got := l.regs[100]; got != 0xA5F8 {
		t.Errorf("register 100 = %04x, want a5f8 (bit 3 set, the rest unchanged)", got)
	}
}

func chanResult(t *testing.T, c chan adapters.WriteResult) chan adapters.WriteResult {
	t.Helper()
	out := make(chan adapters.WriteResult, 1)
	select {
	case r := <-c:
		out <- r
	case <-time.After(10 * time.Second):
		t.Fatal("no write result within 10s")
	}
	return out
}
