package modbus

import (
	"sort"

	"github.com/fieldbridge/fieldbridge/adapters"
)

// pointRead locates one point inside a request's reply.
type pointRead struct {
	point *adapters.Point
	off   int // offset from the request start, in registers or bits
	regs  int // registers covered (register tables only)
	dec   decodeFunc
}

// request is one read transaction of a poll cycle, fixed at load time.
type request struct {
	table Table
	start uint16
	count uint16 // registers or bits
	reads []pointRead
}

func (q *request) end() int { return int(q.start) + int(q.count) }

// limits are a device's planning limits for one table.
type limits struct {
	max int // registers (or bits) per request
	gap int // unused registers (or bits) that may be read to merge blocks
}

// planItem is a point to place: its span and how to decode it.
type planItem struct {
	addr, size int
	read       pointRead
}

// planTable merges the points of one table into the fewest requests that
// respect the limits. Greedy left-to-right is optimal here: every request
// starts at the lowest address not yet covered and extends as far as the
// request-size and gap limits allow, so no plan can cover the same points
// with fewer requests. Overlapping points (several bits of one register, a
// register read both as a whole and as a bit) share a request.
func planTable(table Table, items []planItem, lim limits) []request {
	sort.SliceStable(items, func(i, j int) bool {
		if items[i].addr != items[j].addr {
			return items[i].addr < items[j].addr
		}
		return items[i].size > items[j].size
	})
	var out []request
	var cur *request
	curEnd := 0
	for _, it := range items {
		itEnd := it.addr + it.size
		if cur != nil {
			newEnd := max(curEnd, itEnd)
			if it.addr-curEnd <= lim.gap && newEnd-int(cur.start) <= lim.max {
				curEnd = newEnd
				cur.count = uint16(curEnd - int(cur.start))
				it.read.off = it.addr - int(cur.start)
				cur.reads = append(cur.reads, it.read)
				continue
			}
		}
		out = append(out, request{table: table, start: uint16(it.addr), count: uint16(it.size)})
		cur = &out[len(out)-1]
		curEnd = itEnd
		it.read.off = 0
		cur.reads = append(cur.reads, it.read)
	}
	return out
}

// planDevice builds the requests of one device's poll cycle: coils, discrete
// inputs, holding registers, input registers, each in address order.
func planDevice(d *DeviceConfig, points []*adapters.Point) []request {
	byTable := map[Table][]planItem{}
	for i := range d.Points {
		p := &d.Points[i]
		it := planItem{addr: *p.Address, size: p.regs, read: pointRead{point: points[i]}}
		if !p.table.bits() {
			it.read.regs = p.regs
			it.read.dec = newDecoder(p.spec)
		}
		byTable[p.table] = append(byTable[p.table], it)
	}
	var out []request
	for _, t := range []Table{Coil, Discrete, Holding, Input} {
		if items := byTable[t]; len(items) > 0 {
			lim := limits{max: d.MaxRegistersPerRequest, gap: d.maxGap}
			if t.bits() {
				lim = limits{max: d.MaxBitsPerRequest, gap: d.maxBitGap}
			}
			out = append(out, planTable(t, items, lim)...)
		}
	}
	return out
}

// dataBytes is the size of the reply's data for a request.
func (q *request) dataBytes() int {
	if q.table.bits() {
		return (int(q.count) + 7) / 8
	}
	return 2 * int(q.count)
}

// wireBytes is what one transaction of q moves on the wire, request plus
// reply, for the given transport: RTU adds address and CRC (3 bytes) to each
// PDU, Modbus TCP adds the 7-byte MBAP header.
func (q *request) wireBytes(t transportKind) (req, resp int) {
	const pduReq = 5 // function, address, quantity
	pduResp := 2 + q.dataBytes()
	if t == transportTCP {
		return 7 + pduReq, 7 + pduResp
	}
	return 3 + pduReq, 3 + pduResp
}
