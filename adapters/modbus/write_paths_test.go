package modbus

import (
	"errors"
	"net"
	"strings"
	"syscall"
	"testing"

	"github.com/fieldbridge/fieldbridge/adapters"
	"github.com/fieldbridge/fieldbridge/adapters/modbus/transport"
)

// The outcomes a real device cannot easily be made to produce, on a gated
// link: each says what happened to the device.

func writeAndRelease(t *testing.T, a *Adapter, l *gatedLink, point string, v adapters.Value, requests int) adapters.WriteResult {
	t.Helper()
	results := make(chan adapters.WriteResult, 1)
	a.Write(adapters.Command{Point: pointNamed(a, point), Value: v}, func(r adapters.WriteResult) { results <- r })
	for range requests {
		l.next(t)
		l.release(t)
	}
	return <-chanResult(t, results)
}

func pointNamed(a *Adapter, name string) *adapters.Point { return point(a, name) }

func firstCycle(t *testing.T, l *gatedLink) {
	t.Helper()
	for range 3 {
		l.next(t)
		l.release(t)
	}
}

func TestWriteBeforeTheBusRuns(t *testing.T) {
	a, _ := gatedBus(t)
	a.stopWrites("is stopping") // as between two runs of the bus
	var got adapters.WriteResult
	a.Write(adapters.Command{Point: point(a, "sp"), Value: adapters.Int(1)}, func(r adapters.WriteResult) { got = r })
	if !errors.Is(got.Err, adapters.ErrNotSent) || !strings.Contains(got.Err.Error(), "bus bus is not running") {
		t.Errorf("%v", got.Err)
	}
}

func TestWriteQueueFull(t *testing.T) {
	a, l := gatedBus(t)
	l.next(t) // a poll request held on the wire: nothing is served
	var refused []adapters.WriteResult
	for i := range writeQueueSize + 1 {
		a.Write(adapters.Command{Point: point(a, "sp"), Value: adapters.Int(int64(i))}, func(r adapters.WriteResult) {
			if r.Err != nil {
				refused = append(refused, r)
			}
		})
	}
	if len(refused) != 1 || !errors.Is(refused[0].Err, adapters.ErrNotSent) || !strings.Contains(refused[0].Err.Error(), "32 writes are already waiting for bus bus") {
		t.Errorf("%d refused: %v", len(refused), refused)
	}
}

func TestWriteOutcomesOnTheWire(t *testing.T) {
	a, l := gatedBus(t)
	firstCycle(t, l)

	// The connection could not be made: nothing left the gateway.
	l.mu.Lock()
	l.fail["6@50"] = []error{&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}
	l.mu.Unlock()
	if r := writeAndRelease(t, a, l, "sp", adapters.Int(1), 1); !errors.Is(r.Err, adapters.ErrNotSent) {
		t.Errorf("dial error: %v", r.Err)
	}
	// The connection broke after the request was written.
	l.mu.Lock()
	l.fail["6@50"] = []error{errors.New("read 127.0.0.1:1: connection reset by peer")}
	l.mu.Unlock()
	if r := writeAndRelease(t, a, l, "sp", adapters.Int(2), 1); !errors.Is(r.Err, adapters.ErrUnknownOutcome) || !strings.Contains(r.Err.Error(), "may or may not have applied") {
		t.Errorf("reset: %v", r.Err)
	}
	// A broken reply: the device may have acted on the request.
	l.mu.Lock()
	l.fail["6@50"] = []error{transport.ErrFrame}
	l.mu.Unlock()
	if r := writeAndRelease(t, a, l, "sp", adapters.Int(3), 1); !errors.Is(r.Err, adapters.ErrUnknownOutcome) {
		t.Errorf("bad frame: %v", r.Err)
	}
	// The write went through, the read-back did not: ok, with why there
	// is no value.
	l.mu.Lock()
	l.fail["3@50"] = []error{transport.ErrTimeout}
	l.mu.Unlock()
	r := writeAndRelease(t, a, l, "sp", adapters.Int(4), 2)
	if r.Err != nil || r.ReadBack.Kind() != adapters.KindInvalid || r.ReadBackErr == nil || !strings.Contains(r.ReadBackErr.Error(), "written, but the read-back failed") {
		t.Errorf("read-back failure: %+v", r)
	}
	// The bit's register cannot be read: nothing is written.
	l.mu.Lock()
	l.fail["3@100"] = []error{transport.ErrTimeout}
	l.mu.Unlock()
	if r := writeAndRelease(t, a, l, "flag", adapters.Bool(true), 1); !errors.Is(r.Err, adapters.ErrNotSent) || !strings.Contains(r.Err.Error(), "to change bit 3 failed") {
		t.Errorf("bit read failure: %v", r.Err)
	}
	// Exceptions: the device refused; a Modbus TCP gateway could not
	// reach it (10: nothing sent) or got no answer from it (11: unknown).
	for _, c := range []struct {
		code byte
		kind error
		text string
	}{
		{2, adapters.ErrDeviceRefused, "modbus exception 2 (illegal data address)"},
		{10, adapters.ErrNotSent, "modbus exception 10 (gateway path unavailable)"},
		{11, adapters.ErrUnknownOutcome, "modbus exception 11 (gateway target device failed to respond): the device may or may not"},
	} {
		l.mu.Lock()
		l.fail["6@50"] = []error{exceptionReply(c.code)}
		l.mu.Unlock()
		if r := writeAndRelease(t, a, l, "sp", adapters.Int(5), 1); !errors.Is(r.Err, c.kind) || !strings.Contains(r.Err.Error(), "unit 1 holding 50: "+c.text) {
			t.Errorf("exception %d: %v", c.code, r.Err)
		}
	}
	if st := a.WriteStats(); st.OK != 1 || st.Failed != 7 {
		t.Errorf("stats %+v", st)
	}
}

// TestWriteOnAnUnreachableBus: once the link is known down, a write is
// answered at once, without a request.
func TestWriteOnAnUnreachableBus(t *testing.T) {
	a, l := gatedBus(t)
	refused := errors.New("dial tcp 127.0.0.1:1: connect: connection refused")
	l.mu.Lock()
	l.fail["3@0"] = []error{refused, refused}
	l.mu.Unlock()
	for range 2 { // the first poll request and its retry fail: the bus is down
		l.next(t)
		l.release(t)
	}
	results := make(chan adapters.WriteResult, 1)
	a.Write(adapters.Command{Point: point(a, "sp"), Value: adapters.Int(1)}, func(r adapters.WriteResult) { results <- r })
	r := <-chanResult(t, results)
	if !errors.Is(r.Err, adapters.ErrNotSent) || !strings.Contains(r.Err.Error(), "bus bus is unreachable") {
		t.Errorf("%v", r.Err)
	}
	if got := l.requests(); len(got) != 2 {
		t.Errorf("requests %v: the write must not be sent", got)
	}
}
