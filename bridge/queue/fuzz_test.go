package queue

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// seedFrames returns valid frames and damaged variants of them.
func seedFrames() [][]byte {
	recs := []Record{
		{Topic: testTopic, Payload: []byte(`{"v":21.5,"q":"good"}`), QoS: 1},
		{Topic: "", Payload: nil},
		{Topic: "a/b", Payload: bytes.Repeat([]byte{0}, 300), QoS: 2, Retain: true},
	}
	var out [][]byte
	var stream []byte
	for i := range recs {
		f := appendRecordFrame(nil, &recs[i], uint64(i+1), 1_700_000_000_000_000_000)
		out = append(out, f, f[:len(f)-1], f[:7])
		flipped := bytes.Clone(f)
		flipped[len(f)/2] ^= 1
		out = append(out, flipped)
		stream = append(stream, f...)
	}
	seal := appendSealFrame(nil, sealInfo{first: 1, last: 3, count: 3, lastTime: 1})
	pad := appendPadFrame(nil, 100)
	out = append(out, seal, append(bytes.Clone(stream), seal...), make([]byte, 64), pad, pad[:50])
	huge := binary.LittleEndian.AppendUint32(nil, math.MaxUint32)
	out = append(out, append(huge, make([]byte, 40)...))
	return out
}

// FuzzDecodeRecord: the decoder never panics and only returns frames whose
// CRC matched; what it returns re-encodes to the same bytes.
func FuzzDecodeRecord(f *testing.F) {
	for _, s := range seedFrames() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		plausible(b, int64(len(b)), 0, math.MaxUint64)
		fr, n, err := decodeFrame(b)
		if err != nil {
			if n != 0 {
				t.Fatalf("error %v with n=%d", err, n)
			}
			return
		}
		if n < minFrameSize || n > len(b) {
			t.Fatalf("n=%d for %d bytes", n, len(b))
		}
		if binary.LittleEndian.Uint32(b[4:8]) != frameCRC(b[:n]) {
			t.Fatal("returned a frame whose CRC does not match")
		}
		var again []byte
		switch fr.kind {
		case kindRecord:
			r := fr.record()
			again = appendRecordFrame(nil, &r, fr.seq, fr.timeNs)
		case kindSeal:
			again = appendSealFrame(nil, fr.seal)
		case kindPad:
			again = appendPadFrame(nil, n)
		default:
			t.Fatalf("kind %d", fr.kind)
		}
		if !bytes.Equal(again, b[:n]) {
			t.Fatalf("re-encoding differs:\n%x\n%x", again, b[:n])
		}
	})
}

// FuzzOpenSegment: whatever a segment file holds, Open succeeds, Next
// returns only records whose valid frame is in the file, in Seq order, and
// the queue keeps working.
func FuzzOpenSegment(f *testing.F) {
	var stream []byte
	for i, r := range mkRecs(0, 20, 40) {
		stream = appendRecordFrame(stream, &r, uint64(i+1), int64(i))
	}
	hdr := encodeSegHeader(1)
	seal := appendSealFrame(nil, sealInfo{first: 1, last: 20, count: 20, lastTime: 19})
	f.Add(append(bytes.Clone(hdr), stream...))
	f.Add(append(append(bytes.Clone(hdr), stream...), seal...))
	f.Add(append(append(bytes.Clone(hdr), stream[:len(stream)-13]...), make([]byte, 300)...))
	flipped := append(bytes.Clone(hdr), stream...)
	flipped[len(flipped)/2] ^= 0x10
	f.Add(flipped)
	f.Add(append(bytes.Clone(hdr), bytes.Repeat(stream[:60], 5)...))
	// A commit padded to a page boundary, then more records, then a seal.
	padded := append(bytes.Clone(hdr), stream[:len(stream)/2]...)
	padded = appendPadFrame(padded, int(padMax-int64(len(padded))%padMax))
	f.Add(append(append(padded, stream[len(stream)/2:]...), seal...))
	f.Add(padded[:len(padded)-100]) // torn in the pad
	f.Add([]byte("garbage"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := memDir(t)
		path := filepath.Join(dir, segName(1))
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		q, err := Open(Options{Dir: dir, SyncInterval: time.Hour, CursorInterval: time.Hour})
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		defer q.Close()
		var last uint64
		for range 1000 {
			recs, err := q.Next(50)
			if err != nil {
				t.Fatalf("next: %v", err)
			}
			if len(recs) == 0 {
				break
			}
			for _, r := range recs {
				if r.Seq <= last {
					t.Fatalf("seq %d after %d", r.Seq, last)
				}
				last = r.Seq
				frame := appendRecordFrame(nil, &r, r.Seq, r.Time.UnixNano())
				if !bytes.Contains(data, frame) {
					t.Fatalf("record %d is not a frame of the file", r.Seq)
				}
			}
		}
		recs := []Record{{Topic: "after", Payload: []byte("fuzz")}}
		if err := q.Append(recs); err != nil {
			t.Fatalf("append: %v", err)
		}
		if recs[0].Seq <= last {
			t.Fatalf("new seq %d not above %d", recs[0].Seq, last)
		}
		got, err := q.Next(10)
		if err != nil || len(got) == 0 || got[len(got)-1].Seq != recs[0].Seq {
			t.Fatalf("appended record not delivered: %v, %v", got, err)
		}
	})
}

// memDir returns a fresh directory on tmpfs when there is one: the fuzz
// test is about parsing, and fsync on a real disk would cut its speed a
// hundredfold.
func memDir(t testing.TB) string {
	dir, err := os.MkdirTemp("/dev/shm", "queue-fuzz-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// TestWriteFuzzSeeds regenerates the committed seed corpora under
// testdata/fuzz; run with QUEUE_WRITE_FUZZ_SEEDS=1 after changing the format.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("QUEUE_WRITE_FUZZ_SEEDS") == "" {
		t.Skip("set QUEUE_WRITE_FUZZ_SEEDS=1 to regenerate testdata/fuzz")
	}
	write := func(fuzzer string, seeds [][]byte) {
		dir := filepath.Join("testdata", "fuzz", fuzzer)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, s := range seeds {
			body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s)
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	write("FuzzDecodeRecord", seedFrames())

	// Whole segment files as a power cut or a bad card leaves them.
	q, err := Open(Options{Dir: t.TempDir(), SyncInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, q, 0, 12, 4, 30)
	q.Sync()
	crash(q)
	seg, err := os.ReadFile(q.segs[0].path)
	if err != nil {
		t.Fatal(err)
	}
	torn := bytes.Clone(seg[:len(seg)-9])
	zeros := append(bytes.Clone(seg), make([]byte, 4096)...)
	flipped := bytes.Clone(seg)
	flipped[segHeaderSize+100] ^= 0xff
	badHeader := bytes.Clone(seg)
	badHeader[3] = 'X'
	// A commit padded to a page boundary, more records, a seal.
	q, err = Open(Options{Dir: t.TempDir(), SyncInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, q, 0, 100, 10, 150)
	q.Sync()
	appendN(t, q, 100, 3, 3, 30)
	path := q.segs[0].path
	q.Close()
	padded, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	write("FuzzOpenSegment", [][]byte{seg, torn, zeros, flipped, badHeader, seg[:10], padded, padded[:len(padded)/2]})
}
