package queue

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"time"
)

// Record is one queued MQTT message.
type Record struct {
	// Seq is assigned by Append: strictly increasing, never reused, also
	// across restarts. Gaps are normal (see the package documentation).
	Seq uint64
	// Time is the enqueue time, kept to the nanosecond. Append sets it to
	// time.Now() when the caller leaves it zero; a caller that stamps messages
	// when they arrive keeps its own stamp. MaxAge is measured from it.
	Time    time.Time
	Topic   string
	Payload []byte
	QoS     byte
	Retain  bool
	// Batch marks a record of a forward rule that packs records into
	// batch messages: the sender packs it, the queue only keeps the mark.
	Batch bool
}

// Frame layout constants; the format is described in the package documentation.
const (
	frameHeaderSize = 8  // length u32 + crc32c u32
	recordFixed     = 20 // kind, flags, topic length, seq, time
	sealBodySize    = 36
	sealFrameSize   = frameHeaderSize + sealBodySize
	minFrameSize    = frameHeaderSize + recordFixed

	kindRecord = 1
	kindSeal   = 2
	kindPad    = 3 // fills a commit up to a page boundary; carries nothing

	flagQoSMask = 0x03
	flagRetain  = 0x04
	flagBatch   = 0x08
	flagsKnown  = flagQoSMask | flagRetain | flagBatch

	// seqLimit bounds valid Seq numbers far beyond any real use (146,000
	// years at a million records a second), so that a damaged number near
	// 2^64 can never make the numbering wrap.
	seqLimit = 1 << 62

	maxTopicLen = math.MaxUint16
	maxBodySize = recordFixed + maxTopicLen + MaxPayload
)

// MaxPayload is the largest payload Append accepts. It bounds the read
// buffer and lets the resynchronising scan reject implausible lengths.
const MaxPayload = 16 << 20

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errBadFrame marks bytes that are not a valid frame; errShortFrame marks a
// valid-looking prefix that needs more bytes.
var (
	errBadFrame   = errors.New("bad frame")
	errShortFrame = errors.New("short frame")
)

// sealInfo is the summary a seal frame carries.
type sealInfo struct {
	first, last, count uint64
	lastTime           int64
}

// rawFrame is a decoded frame whose topic and payload alias the input bytes.
type rawFrame struct {
	kind    byte
	flags   byte
	seq     uint64
	timeNs  int64
	topic   []byte
	payload []byte
	seal    sealInfo
}

// frameCRC covers the length bytes too, so a flipped bit in the length is
// caught even when the body it points to happens to look plausible.
func frameCRC(frame []byte) uint32 {
	c := crc32.Update(0, castagnoli, frame[0:4])
	return crc32.Update(c, castagnoli, frame[frameHeaderSize:])
}

// frameSize is the encoded size of r.
func frameSize(r *Record) int64 {
	return int64(minFrameSize + len(r.Topic) + len(r.Payload))
}

// validate rejects what the format cannot hold.
func validate(r *Record) error {
	switch {
	case r.QoS > 2:
		return fmt.Errorf("topic %q: qos %d out of range: %w", r.Topic, r.QoS, ErrInvalidRecord)
	case len(r.Topic) > maxTopicLen:
		return fmt.Errorf("topic of %d bytes exceeds %d: %w", len(r.Topic), maxTopicLen, ErrInvalidRecord)
	case len(r.Payload) > MaxPayload:
		return fmt.Errorf("topic %q: payload of %d bytes exceeds %d: %w", r.Topic, len(r.Payload), MaxPayload, ErrInvalidRecord)
	}
	return nil
}

// appendRecordFrame appends the frame of r, numbered seq and stamped timeNs, to dst.
func appendRecordFrame(dst []byte, r *Record, seq uint64, timeNs int64) []byte {
	start := len(dst)
	body := recordFixed + len(r.Topic) + len(r.Payload)
	flags := r.QoS & flagQoSMask
	if r.Retain {
		flags |= flagRetain
	}
	if r.Batch {
		flags |= flagBatch
	}
	dst = binary.LittleEndian.AppendUint32(dst, uint32(body))
	dst = append(dst, 0, 0, 0, 0) // crc, filled below
	dst = append(dst, kindRecord, flags)
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(r.Topic)))
	dst = binary.LittleEndian.AppendUint64(dst, seq)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(timeNs))
	dst = append(dst, r.Topic...)
	dst = append(dst, r.Payload...)
	binary.LittleEndian.PutUint32(dst[start+4:], frameCRC(dst[start:]))
	return dst
}

// appendSealFrame appends a seal frame carrying s to dst.
func appendSealFrame(dst []byte, s sealInfo) []byte {
	start := len(dst)
	dst = binary.LittleEndian.AppendUint32(dst, sealBodySize)
	dst = append(dst, 0, 0, 0, 0)
	dst = append(dst, kindSeal, 0, 0, 0)
	dst = binary.LittleEndian.AppendUint64(dst, s.first)
	dst = binary.LittleEndian.AppendUint64(dst, s.last)
	dst = binary.LittleEndian.AppendUint64(dst, s.count)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(s.lastTime))
	binary.LittleEndian.PutUint32(dst[start+4:], frameCRC(dst[start:]))
	return dst
}

// appendPadFrame appends a pad frame of exactly n bytes (n >= minFrameSize)
// to dst.
func appendPadFrame(dst []byte, n int) []byte {
	start := len(dst)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(n-frameHeaderSize))
	dst = append(dst, 0, 0, 0, 0)
	dst = append(dst, kindPad)
	dst = append(dst, make([]byte, n-frameHeaderSize-1)...)
	binary.LittleEndian.PutUint32(dst[start+4:], frameCRC(dst[start:]))
	return dst
}

// plausibleLen reports whether a frame header announcing body length l could
// start a frame with avail bytes left in the segment.
func plausibleLen(l uint32, avail int64) bool {
	return l >= recordFixed && l <= maxBodySize && int64(l)+frameHeaderSize <= avail
}

// plausible is the cheap test the resynchronising scan applies at every byte
// offset before it spends a CRC: h holds up to minFrameSize bytes from the
// candidate offset, avail the bytes left in the segment, and a record must be
// numbered in (after, maxSeq]. Random bytes pass with a probability of
// roughly 2^-70, so the scan stays linear.
func plausible(h []byte, avail int64, after, maxSeq uint64) bool {
	if len(h) < minFrameSize {
		return false
	}
	l := binary.LittleEndian.Uint32(h[0:4])
	if !plausibleLen(l, avail) {
		return false
	}
	b := h[frameHeaderSize:]
	switch b[0] {
	case kindRecord:
		if b[1]&^flagsKnown != 0 || b[1]&flagQoSMask > 2 {
			return false
		}
		if uint32(binary.LittleEndian.Uint16(b[2:4])) > l-recordFixed {
			return false
		}
		seq := binary.LittleEndian.Uint64(b[4:12])
		return seq > after && seq <= maxSeq && seq <= seqLimit
	case kindSeal:
		return l == sealBodySize && b[1] == 0 && b[2] == 0 && b[3] == 0
	}
	return false
}

// decodeFrame decodes the frame at the start of b. It returns errShortFrame
// when b holds a plausible but incomplete frame and errBadFrame when the
// bytes are not a frame: an implausible length, a CRC mismatch or a body that
// breaks the format. A frame is only ever returned after its CRC matched.
func decodeFrame(b []byte) (rawFrame, int, error) {
	if len(b) < frameHeaderSize {
		return rawFrame{}, 0, errShortFrame
	}
	l := binary.LittleEndian.Uint32(b[0:4])
	if l < recordFixed || l > maxBodySize {
		return rawFrame{}, 0, errBadFrame
	}
	n := frameHeaderSize + int(l)
	if len(b) < n {
		return rawFrame{}, 0, errShortFrame
	}
	fr := b[:n]
	if binary.LittleEndian.Uint32(fr[4:8]) != frameCRC(fr) {
		return rawFrame{}, 0, errBadFrame
	}
	body := fr[frameHeaderSize:]
	switch body[0] {
	case kindRecord:
		flags := body[1]
		if flags&^flagsKnown != 0 || flags&flagQoSMask > 2 {
			return rawFrame{}, 0, errBadFrame
		}
		tl := int(binary.LittleEndian.Uint16(body[2:4]))
		if tl > len(body)-recordFixed {
			return rawFrame{}, 0, errBadFrame
		}
		seq := binary.LittleEndian.Uint64(body[4:12])
		if seq == 0 || seq > seqLimit {
			return rawFrame{}, 0, errBadFrame
		}
		return rawFrame{
			kind:    kindRecord,
			flags:   flags,
			seq:     seq,
			timeNs:  int64(binary.LittleEndian.Uint64(body[12:20])),
			topic:   body[recordFixed : recordFixed+tl],
			payload: body[recordFixed+tl:],
		}, n, nil
	case kindSeal:
		if l != sealBodySize || body[1] != 0 || body[2] != 0 || body[3] != 0 {
			return rawFrame{}, 0, errBadFrame
		}
		return rawFrame{kind: kindSeal, seal: sealInfo{
			first:    binary.LittleEndian.Uint64(body[4:12]),
			last:     binary.LittleEndian.Uint64(body[12:20]),
			count:    binary.LittleEndian.Uint64(body[20:28]),
			lastTime: int64(binary.LittleEndian.Uint64(body[28:36])),
		}}, n, nil
	case kindPad:
		for _, c := range body[1:] {
			if c != 0 {
				return rawFrame{}, 0, errBadFrame
			}
		}
		return rawFrame{kind: kindPad}, n, nil
	}
	return rawFrame{}, 0, errBadFrame
}

// record copies a decoded record out of the read buffer, so the caller may
// keep it after the buffer is reused.
func (f *rawFrame) record() Record {
	r := Record{
		Seq:    f.seq,
		Time:   time.Unix(0, f.timeNs),
		Topic:  string(f.topic),
		QoS:    f.flags & flagQoSMask,
		Retain: f.flags&flagRetain != 0,
		Batch:  f.flags&flagBatch != 0,
	}
	if len(f.payload) > 0 {
		r.Payload = append([]byte(nil), f.payload...)
	}
	return r
}
