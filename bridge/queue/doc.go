// Package queue is the durable store-and-forward log of the cloud bridge.
//
// The bridge's writer goroutine appends batches of MQTT messages with
// [Queue.Append]; its sender goroutine reads them in order with [Queue.Next],
// publishes them upstream and acknowledges them with [Queue.Ack] once the
// broker's PUBACK arrives; after a connection error it calls [Queue.Rewind]
// and resends from the oldest unacknowledged record. A record leaves the log
// only when it has been acknowledged, dropped by the quota policy or expired,
// and each of those is counted in [Stats].
//
// [Memory] has the same method set, holds records in memory only, and exists
// for unit tests of the bridge.
//
// # Guarantees
//
//   - Seq numbers are strictly increasing and never reused, also across
//     restarts and power cuts: the cursor file reserves blocks of numbers ahead
//     of use, so a record that was read (and maybe delivered) but never
//     reached the disk cannot have its number handed out again. A restart
//     after a crash therefore leaves a gap in the numbering; a clean Close
//     does not.
//   - Append hands the batch to the kernel (write(2)) before it returns; it is
//     on the medium after the next group commit, at most SyncInterval later
//     (with SyncInterval 0, before Append returns). A power cut loses at most
//     the records appended during the last SyncInterval.
//   - Acknowledgements are persisted in batches, every CursorInterval and at
//     Close. After a crash the records acknowledged during the last
//     CursorInterval before it are delivered again (at-least-once).
//   - Damage is cut off or skipped, counted and logged, never a reason to stop:
//     Open succeeds on any directory it can read and write.
//
// # On-disk format
//
// The directory holds segment files, a cursor file and a lock file:
//
//	00000000000000000001.seg   segments, named by the zero-padded Seq of their first record
//	cursor                     acknowledged Seq and reserved Seq, CRC-protected
//	LOCK                       flock(2) held while the queue is open
//	*.corrupt                  unreadable segments moved aside at Open, kept for inspection
//
// All integers are little-endian; every CRC is CRC-32C (Castagnoli).
//
// A segment starts with a 24-byte header:
//
//	magic "FBQSEG" | version u16 = 1 | first Seq u64 (= name) | reserved u32 = 0 | crc32c u32 of the 20 bytes before
//
// followed by frames:
//
//	length u32 (of body) | crc32c u32 of length bytes and body | body
//
// A record body is
//
//	kind u8 = 1 | flags u8 (bits 0-1 QoS, bit 2 retain, bit 3 batch) | topic length u16 |
//	Seq u64 | enqueue time i64 (Unix nanoseconds) | topic | payload
//
// and a segment that is complete ends with a seal frame whose body is
//
//	kind u8 = 2 | 3 zero bytes | first Seq u64 | last Seq u64 | record count u64 | newest enqueue time i64
//
// so that Open learns a sealed segment's extent from its last 44 bytes instead
// of reading it. Only the segment being written (or one abandoned after a
// write error) lacks a seal; Open verifies it record by record, truncates it
// after its last valid frame and seals it. Seq
// numbers inside one segment are contiguous (a segment is written by one
// process lifetime), which lets the reader count records lost to corruption
// from the gap in the numbering.
//
// The cursor file is 32 bytes:
//
//	magic "FBQC" | version u16 = 1 | zero u16 | acknowledged Seq u64 | reserved Seq u64 | crc32c u32 of the 28 bytes before
//
// and is replaced atomically (write temp, fsync, rename, fsync directory).
//
// # Locking
//
// All methods are safe for concurrent use. Queue is built for one writer
// goroutine (Append), one sender goroutine (Next, Rewind), acknowledgements
// from the sender or the goroutine collecting PUBACKs, Stats from anywhere,
// and its own flusher goroutine (group commit, cursor, removals), which
// Close stops and waits for. Locks, always taken in this order:
//
//   - wmu serialises appends, segment rolls and quota drops; write(2) and the
//     fsync of a segment being sealed run under it.
//   - cmu serialises cursor file writes.
//   - smu serialises group-commit fsyncs.
//   - rmu serialises readers (Next, Rewind); file reads run under it.
//   - mu guards the shared bookkeeping (segment list, sizes, acknowledged
//     Seq, counters). It is held only for memory updates, never across I/O,
//     so Next and Ack never wait for an fsync or a disk write.
package queue
