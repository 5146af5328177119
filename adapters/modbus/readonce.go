package modbus

import (
	"context"
	"fmt"
	"strings"

	"github.com/fieldbridge/fieldbridge/adapters"
)

var _ adapters.OnceReader = (*Adapter)(nil)

// ReadOnce reads the wanted points once with the poll plan and decoders of
// a running bus (retries included), for `gateway read`. Requests without a
// wanted point are not sent. After the bus itself fails (port gone,
// connection refused) the remaining requests are not tried: their points
// get the same error.
func (a *Adapter) ReadOnce(ctx context.Context, want func(*adapters.Point) bool) ([]adapters.Reading, error) {
	l, err := a.newLink()
	if err != nil {
		return nil, fmt.Errorf("bus %s: %w", a.cfg.Name, err)
	}
	defer l.Close()
	b := newBus(a, l, discardSink{})
	got := map[*adapters.Point]adapters.Reading{}
	var linkErr *ReadError
	for _, d := range b.devices {
		for i := range d.requests {
			q := &d.requests[i]
			if !q.wanted(want) {
				continue
			}
			var data []byte
			rerr := linkErr
			if rerr == nil {
				data, rerr = b.transact(ctx, d, q, d.cfg.retries)
			}
			if rerr != nil && rerr.Kind == failLink && linkErr == nil {
				linkErr = rerr
			}
			for j := range q.reads {
				r := &q.reads[j]
				if want != nil && !want(r.point) {
					continue
				}
				rd := adapters.Reading{Point: r.point, Source: r.source(d, q)}
				if rerr != nil {
					rd.Err = rerr
				} else {
					rd.Value, rd.Err = r.decode(data)
					rd.Raw = r.raw(q, data)
				}
				got[r.point] = rd
			}
		}
	}
	var out []adapters.Reading
	for _, d := range a.pub {
		for _, p := range d.Points {
			if rd, ok := got[p]; ok {
				out = append(out, rd)
			}
		}
	}
	return out, ctx.Err()
}

func (q *request) wanted(want func(*adapters.Point) bool) bool {
	if want == nil {
		return true
	}
	for i := range q.reads {
		if want(q.reads[i].point) {
			return true
		}
	}
	return false
}

// decode is the decoding step of bus.emitValues for one point of a reply.
func (r *pointRead) decode(data []byte) (adapters.Value, error) {
	if r.dec == nil {
		return adapters.Bool(bitValue(data, r.off)), nil
	}
	return r.dec(data[2*r.off : 2*(r.off+r.regs)])
}

// raw renders the point's part of a reply: register words in hex, or the
// bit as 0/1.
func (r *pointRead) raw(q *request, data []byte) string {
	if q.table.bits() {
		if bitValue(data, r.off) {
			return "1"
		}
		return "0"
	}
	words := make([]string, r.regs)
	for i := range words {
		o := 2 * (r.off + i)
		words[i] = fmt.Sprintf("%02x%02x", data[o], data[o+1])
	}
	return strings.Join(words, " ")
}

// source names where a point lives: "unit 1 holding 40..41".
func (r *pointRead) source(d *device, q *request) string {
	start := int(q.start) + r.off
	n := r.regs
	if q.table.bits() {
		n = 1
	}
	if n <= 1 {
		return fmt.Sprintf("unit %d %s %d", d.cfg.unit, q.table, start)
	}
	return fmt.Sprintf("unit %d %s %d..%d", d.cfg.unit, q.table, start, start+n-1)
}

// discardSink takes what a one-shot read's bus would publish.
type discardSink struct{}

func (discardSink) Publish([]adapters.Sample)           {}
func (discardSink) Availability(*adapters.Device, bool) {}
