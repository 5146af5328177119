package transport

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/goburrow/modbus"
)

// testLogger shows the transports' debug output when the test runs with -v
// and FIELDBRIDGE_TEST_DEBUG=1, and discards it otherwise.
func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("FIELDBRIDGE_TEST_DEBUG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// kinds are the classified error kinds; anything else is a transport error.
var kinds = []error{ErrTimeout, ErrFrame, ErrClosed, ErrNoResponse}

func wantKind(t testing.TB, err, kind error, contains ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %v", kind)
	}
	for _, k := range kinds {
		if errors.Is(err, k) != (k == kind) {
			t.Fatalf("error %q: errors.Is(%v) = %v, want kind %v", err, k, errors.Is(err, k), kind)
		}
	}
	for _, s := range contains {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not contain %q", err, s)
		}
	}
}

// wantTransportError checks err is none of the classified kinds.
func wantTransportError(t testing.TB, err error, contains ...string) {
	t.Helper()
	if err == nil {
		t.Fatal("got no error, want a transport error")
	}
	for _, k := range kinds {
		if errors.Is(err, k) {
			t.Fatalf("error %q is %v, want a transport error", err, k)
		}
	}
	for _, s := range contains {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not contain %q", err, s)
		}
	}
}

func wantBytes(t testing.TB, what string, got []byte, err error, want []byte) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: got % x, want % x", what, got, want)
	}
}

// rtuRequest encodes a request PDU for unit with goburrow's RTU packager, as
// the gateway does.
func rtuRequest(t testing.TB, unit, fc byte, data ...byte) []byte {
	t.Helper()
	pk := modbus.NewRTUClientHandler("")
	pk.SlaveId = unit
	adu, err := pk.Encode(&modbus.ProtocolDataUnit{FunctionCode: fc, Data: data})
	if err != nil {
		t.Fatal(err)
	}
	return adu
}

// readRegs is an FC03 request for quantity registers at addr.
func readRegs(t testing.TB, unit byte, addr, quantity uint16) []byte {
	return rtuRequest(t, unit, 3, byte(addr>>8), byte(addr), byte(quantity>>8), byte(quantity))
}

// turnaround varies a fake device's think time over 10–50 ms, as real ones do.
func turnaround(n int) time.Duration {
	return time.Duration(10+(n*13)%41) * time.Millisecond
}

// sendResult carries a Send's outcome out of a goroutine.
type sendResult struct {
	resp []byte
	err  error
}

// sendAsync runs send in a goroutine that the test waits for at cleanup.
func sendAsync(t testing.TB, send func() ([]byte, error)) <-chan sendResult {
	ch := make(chan sendResult, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, err := send()
		ch <- sendResult{resp, err}
	}()
	t.Cleanup(func() { <-done })
	return ch
}

func await(t testing.TB, ch <-chan sendResult, within time.Duration) sendResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(within):
		t.Fatalf("Send still blocked after %v", within)
		return sendResult{}
	}
}
