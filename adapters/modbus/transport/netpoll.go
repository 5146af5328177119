package transport

import (
	"errors"
	"net"
	"os"
	"time"
)

// readBrief is the portable stand-in for a non-blocking read: a read that
// waits at most a millisecond. It may miss bytes that are still in flight,
// which a non-blocking read would miss too.
func readBrief(c net.Conn, p []byte) (int, error) {
	if err := c.SetReadDeadline(time.Now().Add(time.Millisecond)); err != nil {
		return 0, err
	}
	n, err := c.Read(p)
	c.SetReadDeadline(time.Time{})
	if n > 0 {
		return n, nil
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return 0, nil
	}
	return 0, err
}
