// Package simulator is a Modbus TCP device simulator that runs inside the
// gateway, so a newcomer can start the demo and watch live values without any
// hardware.
//
// One TCP endpoint serves a small plant: unit 1 is a power meter, unit 2 a
// pump drive (see [Map] and MAP.md). Its purpose is to prove the gateway's
// decoding: every data type the gateway understands appears in every byte
// order it supports, and each 16-, 32- and 64-bit type has a "same value,
// four orders" group (points sharing a [Point.Group]) whose members hold the
// same logical value in different orders, so every member of a group must
// decode to the same number. Values move with time: a counter, an energy
// total, sines, a ramp through zero, a toggling coil, alarm bits.
//
// Behaviour a client can rely on:
//
//   - A read must lie inside one span of a unit's table. Spans are the
//     compact runs of points of [Map] (gaps of up to 16 addresses are joined),
//     and unmapped addresses inside a span read as 0, so a request planner
//     that merges nearby points and discards the gaps works. Anything else
//     gets exception 2 (illegal data address).
//   - A unit id other than those in [Map] gets exception 0x0B (gateway target
//     device failed to respond), as a Modbus TCP gateway reports a silent
//     device behind it. Staying silent would only make clients wait for their
//     timeout, and simonvetter/modbus always answers a request anyway.
//   - Writes (function codes 5, 6, 15, 16) are accepted only where every
//     addressed register or coil belongs to a point with [Point.Writable];
//     the value is stored and read back. Any other write gets exception 2 and
//     changes nothing: a write is all or nothing.
//   - All registers of one response are computed at a single instant under a
//     mutex, so a 32- or 64-bit value is never torn and the members of a
//     group agree within one read.
//
// Values are computed from the time elapsed since [Simulator.Start], on each
// request; there is no ticker, so the simulator owns no goroutine of its own.
// [Simulator.Freeze] pins the clock so tests can predict every value.
package simulator
