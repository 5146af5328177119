package queue

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

const (
	segHeaderSize = 24
	segMagic      = "FBQSEG"
	segVersion    = 1
	segSuffix     = ".seg"
	segNameDigits = 20
	corruptSuffix = ".corrupt"
	// segOverhead is what a segment costs beyond its records; quota checks
	// add it so that a roll never pushes the log over MaxBytes.
	segOverhead = segHeaderSize + sealFrameSize
	// padMax is the page size a commit may pad its write up to (see
	// Queue.padding); a pad frame is never longer.
	padMax = 4096
)

// file is what the queue needs of an open file. *os.File satisfies it; tests
// substitute a version that fails like a full or broken disk.
type file interface {
	io.ReaderAt
	io.WriterAt
	Sync() error
	Truncate(size int64) error
	Close() error
}

// openFileFunc opens a file; Options.openFile lets tests inject faults.
type openFileFunc func(name string, flag int, perm os.FileMode) (file, error)

func osOpenFile(name string, flag int, perm os.FileMode) (file, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err // a typed nil *os.File must not become a non-nil file
	}
	return f, nil
}

// segment is the bookkeeping of one segment file. Fields other than f are
// guarded by Queue.mu; f belongs to the writer.
type segment struct {
	base     uint64 // the Seq in the file name
	path     string
	size     int64  // committed bytes: header and complete frames
	synced   int64  // bytes known to be on the medium
	count    uint64 // records
	first    uint64 // Seq of the first record (0 if none)
	last     uint64 // Seq of the last record (0 if none)
	lastTime int64  // newest enqueue time, Unix ns, for whole-segment expiry
	// firstTime is the enqueue time of the first record, Unix ns (0 when
	// unknown), for Stats.OldestTime.
	firstTime int64
	sealed    bool  // no more writes: sealed on disk, or retired after an error
	badUpTo   int64 // damage before this offset has been counted already
	f         file  // write handle of the active segment, nil otherwise
}

// name is the segment's file name, used in errors and logs.
func (s *segment) name() string { return filepath.Base(s.path) }

// unacked counts the records of s numbered above done.
func (s *segment) unacked(done uint64) uint64 {
	if s.count == 0 || s.last <= done {
		return 0
	}
	return s.last - max(done, s.first-1)
}

// segName is the file name of the segment whose first Seq is base; the zero
// padding makes lexical order equal numeric order for people using ls.
func segName(base uint64) string {
	return fmt.Sprintf("%0*d%s", segNameDigits, base, segSuffix)
}

// parseSegName returns the base of a segment file name.
func parseSegName(name string) (uint64, bool) {
	digits, ok := strings.CutSuffix(name, segSuffix)
	if !ok || len(digits) != segNameDigits {
		return 0, false
	}
	base, err := strconv.ParseUint(digits, 10, 64)
	return base, err == nil && base > 0
}

func encodeSegHeader(base uint64) []byte {
	h := make([]byte, segHeaderSize)
	copy(h, segMagic)
	binary.LittleEndian.PutUint16(h[6:8], segVersion)
	binary.LittleEndian.PutUint64(h[8:16], base)
	binary.LittleEndian.PutUint32(h[20:24], crc32.Checksum(h[:20], castagnoli))
	return h
}

// checkSegHeader reports why h is not the header of segment base, or nil.
func checkSegHeader(h []byte, base uint64) error {
	switch {
	case len(h) < segHeaderSize:
		return errors.New("short header")
	case string(h[:6]) != segMagic:
		return errors.New("bad magic")
	case binary.LittleEndian.Uint32(h[20:24]) != crc32.Checksum(h[:20], castagnoli):
		return errors.New("header crc mismatch")
	case binary.LittleEndian.Uint16(h[6:8]) != segVersion:
		return fmt.Errorf("unsupported version %d", binary.LittleEndian.Uint16(h[6:8]))
	case binary.LittleEndian.Uint64(h[8:16]) != base:
		return fmt.Errorf("header names segment %d", binary.LittleEndian.Uint64(h[8:16]))
	}
	return nil
}

// createSegment creates the segment file for base and writes its header.
// The header reaches the medium with the next group commit, together with
// the directory entry; a file torn before that is removed by Open.
func (q *Queue) createSegment(base uint64) (*segment, error) {
	path := filepath.Join(q.dir, segName(base))
	f, err := q.openFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return nil, fmt.Errorf("queue: create segment %s: %w", filepath.Base(path), err)
	}
	h := encodeSegHeader(base)
	if _, err := f.WriteAt(h, 0); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("queue: write header of segment %s: %w", filepath.Base(path), err)
	}
	q.noteWritten(len(h))
	return &segment{base: base, path: path, size: segHeaderSize, f: f}, nil
}

// sealSegment appends the seal frame, fsyncs and closes the file. The fsync
// makes every older segment complete on the medium before a newer one
// exists, so only the newest segment can have a torn tail.
func (q *Queue) sealSegment(s *segment) (sealed int64, err error) {
	q.mu.Lock()
	info := sealInfo{first: s.first, last: s.last, count: s.count, lastTime: s.lastTime}
	off := s.size
	q.mu.Unlock()
	f := s.f
	fr := appendSealFrame(make([]byte, 0, sealFrameSize), info)
	if _, werr := f.WriteAt(fr, off); werr != nil {
		err = fmt.Errorf("queue: seal segment %s: %w", s.name(), werr)
		// Cut a partial seal off (Open would do it otherwise); the records
		// stay valid and the segment is scanned at the next Open.
		f.Truncate(off)
	} else {
		q.noteWritten(len(fr))
		sealed = int64(len(fr))
	}
	if serr := f.Sync(); serr != nil {
		err = errors.Join(err, fmt.Errorf("queue: fsync segment %s: %w", s.name(), serr))
	}
	if cerr := f.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("queue: close segment %s: %w", s.name(), cerr)
	}
	return sealed, err
}

// loadSegment opens an existing segment at Open. It returns nil, with the
// file removed or moved aside, when the file holds nothing usable.
func (q *Queue) loadSegment(base uint64, path string, maxSeq uint64) *segment {
	name := filepath.Base(path)
	log := q.log.With("segment", name)
	f, err := q.openFile(path, os.O_RDWR, 0)
	if err != nil {
		log.Error("queue: cannot open segment, moving it aside", "err", err)
		q.moveAside(path, 0)
		return nil
	}
	st, err := os.Stat(path)
	if err != nil {
		f.Close()
		log.Error("queue: cannot stat segment, moving it aside", "err", err)
		q.moveAside(path, 0)
		return nil
	}
	size := st.Size()
	w := &window{}
	w.reset(f, size)
	h, err := w.bytes(0, min(segHeaderSize, int(size)))
	if err == nil {
		err = checkSegHeader(h, base)
	}
	if err != nil {
		f.Close()
		if size < segHeaderSize {
			// Torn at creation (power cut before the first group commit): it
			// never held a record.
			log.Warn("queue: removing segment with torn header", "bytes", size)
			q.st.CorruptBytes += uint64(size)
			os.Remove(path)
			q.dirDirty = true
			return nil
		}
		log.Error("queue: unreadable segment header, moving the file aside", "err", err, "bytes", size)
		q.moveAside(path, size)
		return nil
	}
	s := &segment{base: base, path: path}
	// A complete segment ends with a seal: trust it and skip the scan.
	if size >= segHeaderSize+sealFrameSize {
		if fr, _, ok, err := w.frameAt(size - sealFrameSize); err == nil && ok && fr.kind == kindSeal && sealMatches(fr.seal, base) {
			s.firstTime = firstRecordTime(w, size)
			f.Close()
			s.size, s.synced, s.sealed = size, size, true
			s.first, s.last, s.count, s.lastTime = fr.seal.first, fr.seal.last, fr.seal.count, fr.seal.lastTime
			return s
		}
	}
	res, err := scanSegment(w, maxSeq)
	if err != nil {
		log.Error("queue: cannot read segment, moving it aside", "err", err)
		f.Close()
		q.moveAside(path, size)
		return nil
	}
	if res.meta.count > 0 {
		// The first record written to a segment carries its base: if the scan
		// found a later one first, the reader counts the gap as lost.
		res.meta.first = base
	}
	s.first, s.last, s.count, s.lastTime = res.meta.first, res.meta.last, res.meta.count, res.meta.lastTime
	s.firstTime = firstRecordTime(w, res.goodEnd)
	s.size, s.synced, s.sealed = res.goodEnd, res.goodEnd, true
	if cut := size - res.goodEnd; cut > 0 {
		torn := tornRecords(w, res.goodEnd, size)
		q.st.CorruptBytes += uint64(cut)
		q.st.CorruptRecords += torn
		log.Warn("queue: cut off torn or corrupt tail", "offset", res.goodEnd, "bytes", cut, "records", torn)
		if err := f.Truncate(res.goodEnd); err != nil {
			log.Error("queue: cannot truncate segment; its tail is ignored", "err", err)
		}
	}
	if !res.sealed {
		fr := appendSealFrame(nil, res.meta)
		if _, err := f.WriteAt(fr, s.size); err == nil {
			s.size += int64(len(fr))
			q.noteWritten(len(fr))
		}
		if err := f.Sync(); err != nil {
			log.Error("queue: fsync segment after repair", "err", err)
		}
		s.synced = s.size
	}
	f.Close()
	return s
}

// sealMatches rejects a seal that cannot belong to segment base.
func sealMatches(s sealInfo, base uint64) bool {
	if s.count == 0 {
		return s.first == 0 && s.last == 0
	}
	return s.first >= base && s.last >= s.first && s.last <= seqLimit && s.count <= s.last-s.first+1
}

// tornRecords estimates how many records a cut-off tail held: one if any
// byte is non-zero (a record torn by a power cut), none for a zero-filled
// tail that the file system extended without data or for a torn or damaged
// seal or pad (a tail of exactly a seal's size, or one that starts like a
// seal or a pad).
func tornRecords(w *window, from, to int64) uint64 {
	if to-from == sealFrameSize {
		return 0
	}
	if b, err := w.bytes(from, int(min(to-from, frameHeaderSize+1))); err == nil && len(b) >= 4 {
		l := binary.LittleEndian.Uint32(b)
		if l == sealBodySize && (len(b) <= frameHeaderSize || b[frameHeaderSize] == kindSeal) {
			return 0
		}
		// A torn pad: its length reaches at most to the next page boundary.
		if l >= recordFixed && int64(l)+frameHeaderSize <= padMax && len(b) > frameHeaderSize && b[frameHeaderSize] == kindPad {
			return 0
		}
	}
	for off := from; off < to; off += windowSize {
		b, err := w.bytes(off, int(min(windowSize, to-off)))
		if err != nil {
			return 1
		}
		for _, c := range b {
			if c != 0 {
				return 1
			}
		}
	}
	return 0
}

// moveAside renames an unusable file to *.corrupt, keeping it for people to
// inspect, and removes it if even that fails so it cannot stop the next Open.
func (q *Queue) moveAside(path string, size int64) {
	q.st.CorruptBytes += uint64(max(size, 0))
	q.dirDirty = true
	if err := os.Rename(path, path+corruptSuffix); err != nil {
		q.log.Error("queue: cannot move segment aside, removing it", "segment", filepath.Base(path), "err", err)
		os.Remove(path)
	}
}

// firstRecordTime is the enqueue time of the first record of a segment
// whose valid bytes end at end, or 0 when its first frame is not a record.
// It reads the few bytes itself, leaving w as it was: the frame is inside
// what Open verified (or a seal vouches for), and the time serves only
// Stats.OldestTime.
func firstRecordTime(w *window, end int64) int64 {
	if end < segHeaderSize+minFrameSize {
		return 0
	}
	b := make([]byte, frameHeaderSize+recordFixed)
	if _, err := w.r.ReadAt(b, segHeaderSize); err != nil {
		return 0
	}
	return frameTime(b)
}

// frameTime is the enqueue time in the record frame at the start of b.
func frameTime(b []byte) int64 {
	if len(b) < frameHeaderSize+recordFixed || b[frameHeaderSize] != kindRecord {
		return 0
	}
	return int64(binary.LittleEndian.Uint64(b[frameHeaderSize+12:]))
}
