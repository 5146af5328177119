//go:build unix

package transport

import (
	"io"
	"net"
	"os"
	"syscall"
)

// pollReader reads a socket without waiting, through the runtime's raw
// connection: Go's net package has no non-blocking read, and a read with a
// deadline in the past returns a timeout before looking at the socket. It is
// built once per connection so that a read allocates nothing.
type pollReader struct {
	rc  syscall.RawConn
	p   []byte
	n   int
	err error
	fn  func(fd uintptr) bool
}

func newPollReader(c net.Conn) *pollReader {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	r := &pollReader{rc: rc}
	r.fn = r.read
	return r
}

// read runs inside RawConn.Read; returning true tells the runtime not to wait
// for readability. The runtime's sockets are non-blocking, so the read
// returns EAGAIN when nothing is there.
func (r *pollReader) read(fd uintptr) bool {
	r.n, r.err = syscall.Read(int(fd), r.p)
	return true
}

// readNow returns what c has buffered now: (n, nil), (0, nil) if nothing, or
// (0, io.EOF) if the peer has closed. c's read deadline must not have passed.
func readNow(c net.Conn, r *pollReader, p []byte) (int, error) {
	if r == nil {
		return readBrief(c, p)
	}
	r.p = p
	err := r.rc.Read(r.fn)
	r.p = nil
	switch {
	case err != nil:
		return 0, err
	case r.err == syscall.EAGAIN || r.err == syscall.EINTR:
		return 0, nil
	case r.err != nil:
		return 0, os.NewSyscallError("read", r.err)
	case r.n == 0:
		return 0, io.EOF
	}
	return r.n, nil
}
