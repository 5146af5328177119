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
//   - Append stages the batch in memory (with SyncInterval > 0) and the
//     group commit writes and fsyncs it at most SyncInterval after Append —
//     unless the cloud acknowledged it before: a commit drops the staged
//     records already acknowledged and writes only the rest. The commit is
//     due when the oldest record that is neither acknowledged nor fsynced is
//     SyncInterval old, so while the cloud acknowledges every record within
//     the sync window, the queue writes nothing at all; during an outage it
//     commits once per SyncInterval, as a plain group commit would. Staging
//     is bounded by StagingBytes (64 KiB while no acknowledgement came for a
//     sync interval, when the records are bound for the disk anyway): beyond
//     it Append writes the staged records itself (without fsync; the commit
//     deadline still applies). With
//     SyncInterval 0 ("sync: always") Append writes and fsyncs before it
//     returns.
//   - Everything synced survives a crash or a power cut. A power cut loses
//     at most the records appended during the last SyncInterval that were
//     not acknowledged yet. So does kill -9 now: staged records live in the
//     process, not the page cache (records already written survive it).
//   - Acknowledgements are persisted only when they cover records on disk:
//     at most CursorInterval (default: SyncInterval) after such an
//     acknowledgement, before the records after a gap are written (below),
//     at Seq reservations and at Close. After a crash or power cut the
//     records delivered again are at most (a) those handed out by Next and
//     not acknowledged (the sender's window) plus (b) records on disk
//     acknowledged since the last cursor write, i.e. during the last
//     CursorInterval plus one cursor write. Records acknowledged while
//     staged are never delivered again: they were never written. While the
//     cloud keeps up, (b) is empty.
//   - Damage is cut off or skipped, counted and logged, never a reason to stop:
//     Open succeeds on any directory it can read and write. Open creates
//     missing directories and fsyncs each into its parent, so the queue
//     directory itself survives the first power cut.
//
// # On-disk format
//
// The directory holds segment files, a cursor file and a lock file:
//
//	00000000000000000001.seg   segments, named by the zero-padded Seq of their first record
//	cursor                     acknowledged Seq and reserved Seq, CRC-protected, two slots
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
// of reading it. A pad frame, whose body is
//
//	kind u8 = 3 | zero bytes
//
// carries nothing: a group commit of at least four pages that is about to be
// fsynced ends with one on a page boundary, so that the next commit starts
// on a fresh page instead of writing the last one again (the kernel counts
// and the card writes a page anew each time a commit adds to it after an
// fsync). Readers skip pads; a torn pad at the end is no lost record. Only the segment being written (or one abandoned after a
// write error) lacks a seal; Open verifies it record by record, truncates it
// after its last valid frame and seals it. The first record of a segment
// carries its name.
//
// Seq numbers inside a segment increase, and records acknowledged while
// staged leave gaps: they were never written. Gaps lie at or below the
// persisted cursor — a commit that would write records after a gap above it
// writes the cursor first — so within a segment every Seq above the cursor
// up to the segment's last is present or lost. That lets Stats count pending
// records from the numbering and the reader count the records lost in a
// damaged region exactly, as those numbered between the cursor (or the last
// good record, if later) and the next good record. Record and seal frames
// are those of version 1 and the segment version stays 1: this release
// reads the segments of the release before staging unchanged, and that
// release, should it be installed again, delivers every record of a newer
// segment, taking a pad for a damaged region (which loses nothing) instead
// of moving the segment aside as it would a version it does not know. The cursor file did
// change (below): that release cannot read version 2, so after a downgrade
// it starts from the oldest record on disk and delivers acknowledged ones
// again (at-least-once), with pending counts inflated by the gaps.
//
// The cursor file, version 2, is 8192 bytes: two slots, one at offset 0 and
// one at 4096, each alone in its page:
//
//	magic "FBQC" | version u16 = 2 | slot u16 (0 or 1) | generation u64 |
//	acknowledged Seq u64 | reserved Seq u64 | crc32c u32 of the 36 bytes before
//
// The slot with the higher generation among the valid ones is in force. An
// update writes generation+1 into the other slot (generation g lives in
// slot g mod 2) in place and fdatasyncs: one page write, no rename, no
// directory fsync; a write torn by a power cut leaves the previous
// generation in force. A new file (first start, or the first write after
// Open found a version-1 file or a damaged one) is written whole under a
// temporary name, fsynced, renamed over the old one and the directory
// fsynced. Version 1, which the release before staging wrote and Open still
// reads, is 32 bytes:
//
//	magic "FBQC" | version u16 = 1 | zero u16 | acknowledged Seq u64 | reserved Seq u64 | crc32c u32 of the 28 bytes before
//
// # Locking
//
// All methods are safe for concurrent use. Queue is built for one writer
// goroutine (Append), one sender goroutine (Next, Rewind), acknowledgements
// from the sender or the goroutine collecting PUBACKs, Stats from anywhere,
// and its own flusher goroutine (group commit, cursor, removals, each on its
// deadline), which Close stops and waits for. Locks, always taken in this
// order:
//
//   - wmu serialises appends, commits' writes, segment rolls and quota
//     drops; write(2) and the fsync of a segment being sealed run under it.
//     The staging area's bytes change only under wmu (and mu), so a commit
//     writes them out without holding mu.
//   - cmu serialises cursor file writes.
//   - smu serialises group-commit fsyncs.
//   - rmu serialises readers (Next, Rewind); file reads run under it.
//   - mu guards the shared bookkeeping (segment list, sizes, the staging
//     area, acknowledged Seq, counters). It is held only for memory updates,
//     never across I/O, so Next and Ack never wait for an fsync or a disk
//     write.
//
// Next reads the segments first and then the staging area, in Seq order. A
// commit moves records from staging to a segment in one critical section of
// mu (the segment's committed size grows and the staging area empties
// together), and Next decides that the disk is read to its end and reads the
// staging area in one critical section too, so no record can be skipped or
// returned twice as it moves. Rewind works across both: a record handed out
// from staging is marked where the disk ended then, where a later commit can
// only have put it.
package queue
