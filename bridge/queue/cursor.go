package queue

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
)

const (
	cursorName    = "cursor"
	cursorTmpName = "cursor.tmp"
	cursorMagic   = "FBQC"
	// Version 1 (written by releases before staging): one 32-byte record,
	// replaced by rename. Read, never written.
	cursorV1Size   = 32
	cursorVersion1 = 1
	cursorVersion  = 2
	cursorSlotLen  = 40
	cursorSlotPage = 4096 // each slot in a page of its own
	cursorFileSize = 2 * cursorSlotPage
	// seqReserveBlock is how many Seq numbers one cursor write reserves. A
	// write per million records costs nothing in wear; the price is a gap
	// of up to this many numbers after a crash.
	seqReserveBlock = 1 << 20
)

// cursorState is what the cursor file holds.
type cursorState struct {
	acked    uint64 // every record with Seq <= acked is acknowledged
	reserved uint64 // no Seq above this has been handed out
}

// errCursorCorrupt marks a cursor file that exists but cannot be trusted.
var errCursorCorrupt = errors.New("corrupt cursor file")

// encodeSlot encodes one version-2 slot:
//
//	magic "FBQC" | version u16 = 2 | slot u16 | generation u64 |
//	acked u64 | reserved u64 | crc32c u32 of the 36 bytes before
func encodeSlot(c cursorState, slot int, gen uint64) []byte {
	b := make([]byte, cursorSlotLen)
	copy(b, cursorMagic)
	binary.LittleEndian.PutUint16(b[4:6], cursorVersion)
	binary.LittleEndian.PutUint16(b[6:8], uint16(slot))
	binary.LittleEndian.PutUint64(b[8:16], gen)
	binary.LittleEndian.PutUint64(b[16:24], c.acked)
	binary.LittleEndian.PutUint64(b[24:32], c.reserved)
	binary.LittleEndian.PutUint32(b[36:40], crc32.Checksum(b[:36], castagnoli))
	return b
}

func decodeSlot(b []byte, slot int) (cursorState, uint64, bool) {
	if len(b) < cursorSlotLen || string(b[:4]) != cursorMagic ||
		binary.LittleEndian.Uint32(b[36:40]) != crc32.Checksum(b[:36], castagnoli) ||
		binary.LittleEndian.Uint16(b[4:6]) != cursorVersion ||
		binary.LittleEndian.Uint16(b[6:8]) != uint16(slot) {
		return cursorState{}, 0, false
	}
	c := cursorState{
		acked:    binary.LittleEndian.Uint64(b[16:24]),
		reserved: binary.LittleEndian.Uint64(b[24:32]),
	}
	gen := binary.LittleEndian.Uint64(b[8:16])
	if gen == 0 || c.reserved < c.acked || c.reserved > seqLimit {
		return cursorState{}, 0, false
	}
	return c, gen, true
}

// decodeCursorV1 decodes the 32-byte cursor of version 1:
//
//	magic "FBQC" | version u16 = 1 | zero u16 | acked u64 | reserved u64 | crc32c u32 of the 28 bytes before
func decodeCursorV1(b []byte) (cursorState, error) {
	if len(b) != cursorV1Size || string(b[:4]) != cursorMagic ||
		binary.LittleEndian.Uint32(b[28:32]) != crc32.Checksum(b[:28], castagnoli) ||
		binary.LittleEndian.Uint16(b[4:6]) != cursorVersion1 {
		return cursorState{}, errCursorCorrupt
	}
	c := cursorState{
		acked:    binary.LittleEndian.Uint64(b[8:16]),
		reserved: binary.LittleEndian.Uint64(b[16:24]),
	}
	if c.reserved < c.acked || c.reserved > seqLimit {
		return cursorState{}, errCursorCorrupt
	}
	return c, nil
}

// decodeCursor decodes a cursor file of either version. gen is the
// generation of the slot in force, 0 for version 1.
func decodeCursor(b []byte) (c cursorState, gen uint64, err error) {
	if len(b) == cursorV1Size {
		c, err = decodeCursorV1(b)
		return c, 0, err
	}
	for slot := range 2 {
		off := slot * cursorSlotPage
		if len(b) < off+cursorSlotLen {
			break
		}
		if sc, sg, ok := decodeSlot(b[off:off+cursorSlotLen], slot); ok && sg > gen {
			c, gen = sc, sg
		}
	}
	if gen == 0 {
		return cursorState{}, 0, errCursorCorrupt
	}
	return c, gen, nil
}

// readCursor loads the cursor file of dir. The error wraps os.ErrNotExist
// or errCursorCorrupt; either way the caller starts from the oldest record.
func readCursor(dir string) (cursorState, uint64, error) {
	f, err := os.Open(filepath.Join(dir, cursorName))
	if err != nil {
		return cursorState{}, 0, fmt.Errorf("queue: read %s: %w", cursorName, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, cursorFileSize))
	if err != nil {
		return cursorState{}, 0, fmt.Errorf("queue: read %s: %w", cursorName, err)
	}
	c, gen, err := decodeCursor(b)
	if err != nil {
		return cursorState{}, 0, fmt.Errorf("queue: %s (%d bytes): %w", cursorName, len(b), err)
	}
	return c, gen, nil
}

// cursorFile is the open cursor file of version 2: two slots, each in its
// own page, written alternately in place with fdatasync, so that an update
// is one page write with no rename and no directory fsync, and a write torn
// by a power cut leaves the other slot, one generation older, in force.
type cursorFile struct {
	f   file   // nil until the first write of this process
	gen uint64 // generation of the slot in force; 0 = no version-2 file yet
}

func (c *cursorFile) close() {
	if c.f != nil {
		c.f.Close()
		c.f = nil
	}
}

// writeCursor persists c. The first write of a process opens the file in
// place; a queue without a version-2 file (new, or left by an older
// release, or damaged) gets a fresh one by write-temp, fsync, rename and
// directory fsync. A failed in-place write closes the file, so the next
// write starts over with a fresh one. Caller holds cmu.
func (q *Queue) writeCursor(c cursorState) error {
	cf := &q.cur
	if cf.f == nil && cf.gen > 0 {
		f, err := q.openFile(filepath.Join(q.dir, cursorName), os.O_RDWR, 0)
		if err == nil {
			cf.f = f
		} else {
			cf.gen = 0
		}
	}
	if cf.f == nil {
		return q.createCursor(c)
	}
	gen := cf.gen + 1
	slot := int(gen % 2)
	b := encodeSlot(c, slot, gen)
	_, err := cf.f.WriteAt(b, int64(slot*cursorSlotPage))
	if err == nil {
		q.noteWritten(len(b))
		err = datasync(cf.f)
	}
	if err != nil {
		cf.close()
		cf.gen = 0
		return fmt.Errorf("queue: persist %s: %w", cursorName, err)
	}
	cf.gen = gen
	return nil
}

// createCursor replaces the cursor file atomically with a fresh version-2
// file whose slot 1 holds c (generation 1) and keeps it open. Caller holds
// cmu.
func (q *Queue) createCursor(c cursorState) error {
	tmp := filepath.Join(q.dir, cursorTmpName)
	f, err := q.openFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("queue: create %s: %w", cursorTmpName, err)
	}
	b := make([]byte, cursorFileSize)
	copy(b[cursorSlotPage:], encodeSlot(c, 1, 1))
	_, err = f.WriteAt(b, 0)
	if err == nil {
		q.noteWritten(len(b))
		err = f.Sync()
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(q.dir, cursorName))
	}
	if err == nil {
		err = q.syncDir(q.dir)
	}
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("queue: persist %s: %w", cursorName, err)
	}
	q.cur = cursorFile{f: f, gen: 1}
	return nil
}

// syncDir makes creations, renames and removals in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}
