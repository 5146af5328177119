//go:build linux

package transport

import (
	"errors"
	"net"
	"syscall"
	"testing"
	"time"
)

// fullListener returns the address of a socket that listens with a backlog
// of 0 and never accepts, after filling its one queue slot: Linux then drops
// further SYNs, so a dial hangs until it is cancelled.
func fullListener(t *testing.T) string {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := (&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: sa.(*syscall.SockaddrInet4).Port}).String()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return addr
}

// busTransport is what the bus goroutine sees of any transport.
type busTransport interface {
	Send([]byte) ([]byte, error)
	Close() error
}

func TestTCPCloseCancelsDial(t *testing.T) {
	addr := fullListener(t)
	if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
		c.Close()
		t.Skip("this kernel accepts connections beyond the backlog: no hanging dial to cancel")
	}
	for _, mk := range []struct {
		name string
		new  func() (busTransport, *dialer)
		req  []byte
	}{
		{"tcp", func() (busTransport, *dialer) {
			tr, err := NewTCP(TCPConfig{Address: addr, DialTimeout: time.Hour, Timeout: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			return tr, &tr.d
		}, tcpReadRegs(t, tcpPackager(1), 0, 1)},
		{"rtu over tcp", func() (busTransport, *dialer) {
			tr, err := NewRTUOverTCP(RTUOverTCPConfig{Address: addr, DialTimeout: time.Hour, Timeout: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			return tr, &tr.d
		}, readRegs(t, 1, 0, 1)},
	} {
		t.Run(mk.name, func(t *testing.T) {
			tr, d := mk.new()
			ch := sendAsync(t, func() ([]byte, error) { return tr.Send(mk.req) })
			waitFor(t, "the dial to start", 5*time.Second, func() bool {
				d.mu.Lock()
				defer d.mu.Unlock()
				return d.cancel != nil
			})
			tr.Close()
			r := await(t, ch, 5*time.Second)
			if !errors.Is(r.err, ErrClosed) {
				t.Fatalf("Send during dial returned %v, want ErrClosed", r.err)
			}
		})
	}
}
