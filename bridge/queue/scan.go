package queue

import (
	"errors"
	"io"
)

// windowSize is the read buffer of the reader and of the Open scan. Memory
// stays flat however large the backlog: records are read from the files
// through this window, which grows only for a single record larger than it.
const windowSize = 64 << 10

// window is a read buffer over the committed part of one segment file.
// Committed bytes never change, so buffered bytes stay valid while the
// writer appends behind them.
type window struct {
	r   io.ReaderAt
	end int64 // bytes at or beyond end are never read
	buf []byte
	off int64 // file offset of buf[:n]
	n   int
}

// reset points the window at r, readable up to end.
func (w *window) reset(r io.ReaderAt, end int64) {
	if w.r != r {
		w.n = 0
	}
	w.r = r
	w.end = end
	if over := w.off + int64(w.n) - end; over > 0 {
		w.n -= int(min(over, int64(w.n)))
	}
}

// bytes returns the n bytes at off, reading them when they are not buffered.
// The slice is valid until the next call.
func (w *window) bytes(off int64, n int) ([]byte, error) {
	if off < 0 || off+int64(n) > w.end {
		return nil, io.ErrUnexpectedEOF
	}
	if off >= w.off && off+int64(n) <= w.off+int64(w.n) {
		s := int(off - w.off)
		return w.buf[s : s+n], nil
	}
	size := int(min(int64(max(n, windowSize)), w.end-off))
	if cap(w.buf) < size || (cap(w.buf) > 4*windowSize && size <= windowSize) {
		// Grow for a large record; give the memory back after one.
		w.buf = make([]byte, max(size, windowSize))
	}
	w.buf = w.buf[:cap(w.buf)]
	m, err := w.r.ReadAt(w.buf[:size], off)
	if m < n {
		w.n = 0
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	w.off, w.n = off, m
	return w.buf[:n], nil
}

// frameAt decodes the frame at off. ok is false when the bytes there are not
// a valid frame; err reports only I/O failures.
func (w *window) frameAt(off int64) (f rawFrame, n int, ok bool, err error) {
	avail := w.end - off
	if avail < minFrameSize {
		return rawFrame{}, 0, false, nil
	}
	h, err := w.bytes(off, frameHeaderSize)
	if err != nil {
		return rawFrame{}, 0, false, err
	}
	l := uint32(h[0]) | uint32(h[1])<<8 | uint32(h[2])<<16 | uint32(h[3])<<24
	if !plausibleLen(l, avail) {
		return rawFrame{}, 0, false, nil
	}
	b, err := w.bytes(off, frameHeaderSize+int(l))
	if err != nil {
		return rawFrame{}, 0, false, err
	}
	f, n, derr := decodeFrame(b)
	if derr != nil {
		return rawFrame{}, 0, false, nil
	}
	return f, n, true, nil
}

// resync scans forward from off for the next valid frame: a record numbered
// in (after, maxSeq] or a seal. It returns the frame's offset, or w.end when
// there is none. Checking plausibility before the CRC keeps the scan linear.
func (w *window) resync(off int64, after, maxSeq uint64) (next int64, found bool, err error) {
	for p := off; p+minFrameSize <= w.end; p++ {
		h, err := w.bytes(p, minFrameSize)
		if err != nil {
			return 0, false, err
		}
		if !plausible(h, w.end-p, after, maxSeq) {
			continue
		}
		f, _, ok, err := w.frameAt(p)
		if err != nil {
			return 0, false, err
		}
		if ok && (f.kind == kindSeal || (f.seq > after && f.seq <= maxSeq)) {
			return p, true, nil
		}
	}
	return w.end, false, nil
}

// scanResult describes the valid content of one segment.
type scanResult struct {
	meta    sealInfo // first, last, count and newest time of the valid records
	goodEnd int64    // end of the last valid frame
	sealed  bool     // a seal frame ends the valid content
	damaged bool     // invalid bytes between valid frames (the reader counts them)
}

// scanSegment reads a segment frame by frame from the end of its header,
// skipping damaged regions, and reports where its valid content ends. Open
// uses it on the segment that was being written when the process stopped.
func scanSegment(w *window, maxSeq uint64) (scanResult, error) {
	res := scanResult{goodEnd: segHeaderSize}
	off := int64(segHeaderSize)
	after := uint64(0)
	for off < w.end {
		f, n, ok, err := w.frameAt(off)
		if err != nil {
			return res, err
		}
		if ok && f.kind == kindRecord && (f.seq <= after || f.seq > maxSeq) {
			ok = false // a valid frame out of order is not part of this log
		}
		if !ok {
			next, found, err := w.resync(off+1, after, maxSeq)
			if err != nil {
				return res, err
			}
			if !found {
				break
			}
			res.damaged = true
			off = next
			continue
		}
		off += int64(n)
		if f.kind == kindSeal {
			res.sealed = true
			res.goodEnd = off
			break
		}
		if f.kind == kindPad {
			res.goodEnd = off
			continue
		}
		if res.meta.count == 0 {
			res.meta.first = f.seq
		}
		res.meta.count++
		res.meta.last = f.seq
		res.meta.lastTime = max(res.meta.lastTime, f.timeNs)
		after = f.seq
		res.goodEnd = off
	}
	return res, nil
}
