//go:build !unix

package transport

import "net"

// pollReader has no non-blocking form here; readNow falls back to a brief
// timed read.
type pollReader struct{}

func newPollReader(net.Conn) *pollReader { return nil }

func readNow(c net.Conn, _ *pollReader, p []byte) (int, error) { return readBrief(c, p) }
