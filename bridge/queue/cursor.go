package queue

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
)

const (
	cursorName    = "cursor"
	cursorTmpName = "cursor.tmp"
	cursorSize    = 32
	cursorMagic   = "FBQC"
	cursorVersion = 1
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

func encodeCursor(c cursorState) []byte {
	b := make([]byte, cursorSize)
	copy(b, cursorMagic)
	binary.LittleEndian.PutUint16(b[4:6], cursorVersion)
	binary.LittleEndian.PutUint64(b[8:16], c.acked)
	binary.LittleEndian.PutUint64(b[16:24], c.reserved)
	binary.LittleEndian.PutUint32(b[28:32], crc32.Checksum(b[:28], castagnoli))
	return b
}

func decodeCursor(b []byte) (cursorState, error) {
	if len(b) != cursorSize || string(b[:4]) != cursorMagic ||
		binary.LittleEndian.Uint32(b[28:32]) != crc32.Checksum(b[:28], castagnoli) ||
		binary.LittleEndian.Uint16(b[4:6]) != cursorVersion {
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

// readCursor loads the cursor file of dir. The error wraps os.ErrNotExist
// or errCursorCorrupt; either way the caller starts from the oldest record.
func readCursor(dir string) (cursorState, error) {
	b, err := os.ReadFile(filepath.Join(dir, cursorName))
	if err != nil {
		return cursorState{}, fmt.Errorf("queue: read %s: %w", cursorName, err)
	}
	c, err := decodeCursor(b)
	if err != nil {
		return cursorState{}, fmt.Errorf("queue: %s (%d bytes): %w", cursorName, len(b), err)
	}
	return c, nil
}

// writeCursor replaces the cursor file atomically: a power cut leaves either
// the old or the new version, never a mix. Caller holds cmu.
func (q *Queue) writeCursor(c cursorState) error {
	tmp := filepath.Join(q.dir, cursorTmpName)
	f, err := q.openFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("queue: create %s: %w", cursorTmpName, err)
	}
	b := encodeCursor(c)
	_, err = f.WriteAt(b, 0)
	if err == nil {
		q.noteWritten(len(b))
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(q.dir, cursorName))
	}
	if err == nil {
		err = syncDir(q.dir)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("queue: persist %s: %w", cursorName, err)
	}
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
