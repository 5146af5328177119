package modbus

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/fieldbridge/fieldbridge/adapters"
	"github.com/fieldbridge/fieldbridge/adapters/modbus/transport"
)

// Describe prints the poll plan: per device, each request with the points it
// serves, and what a cycle costs on the wire. For serial lines it projects
// the bus time from baud rate, framing and byte counts (device turnaround
// comes on top and is not known in advance).
func (a *Adapter) Describe(w io.Writer) {
	c := a.cfg
	fmt.Fprintf(w, "bus %s: modbus %s (timeout %s, retries %d", c.Name, a.endpoint(), c.Timeout, c.retries)
	if c.DelayBetweenRequests > 0 {
		fmt.Fprintf(w, ", delay between requests %s", c.DelayBetweenRequests)
	}
	fmt.Fprintln(w, ")")
	var busLoad float64
	for _, d := range a.devices {
		fmt.Fprintf(w, "  device %s: unit %d, every %s, %d request(s) per cycle\n", d.cfg.Name, d.cfg.unit, d.cfg.Interval, len(d.requests))
		out, in := 0, 0
		for i := range d.requests {
			q := &d.requests[i]
			names := make([]string, len(q.reads))
			for j, r := range q.reads {
				names[j] = r.point.Name
			}
			unit := "reg"
			if q.table.bits() {
				unit = "bit"
			}
			if q.count != 1 {
				unit += "s"
			}
			fmt.Fprintf(w, "    FC%02d %-8s %5d..%-5d %4d %-4s  %s\n", int(q.table), q.table, q.start, q.end()-1, q.count, unit, strings.Join(names, ", "))
			req, resp := q.wireBytes(c.transport)
			out += req
			in += resp
		}
		fmt.Fprintf(w, "    per cycle: %d request(s), %d bytes out, %d bytes in", len(d.requests), out, in)
		if t, ok := c.cycleTime(d.requests); ok {
			share := float64(t) / float64(d.cfg.Interval)
			busLoad += share
			fmt.Fprintf(w, ", %s on the line (%.1f%% of its interval)", t.Round(10*time.Microsecond), 100*share)
		}
		fmt.Fprintln(w)
		a.describeWrites(w, d)
	}
	if _, ok := c.charTime(); ok {
		fmt.Fprintf(w, "  line load: %.1f%% of the bus at %d baud, before device turnaround\n", 100*busLoad, c.Baud)
	}
}

func (a *Adapter) endpoint() string {
	c := a.cfg
	switch c.transport {
	case transportRTU:
		return fmt.Sprintf("rtu %s %d %d%c%d", c.Device, c.Baud, c.DataBits, c.parity, c.StopBits)
	case transportRTUOverTCP:
		return "rtuovertcp " + c.Address
	}
	return "tcp " + c.Address
}

// framing is the line's character format. For RTU over TCP the device
// server's line settings are not ours to know: assume the Modbus standard
// 11-bit character.
func (c *Config) framing() (dataBits int, parity byte, stopBits int) {
	if c.transport == transportRTUOverTCP {
		return 8, 'E', 1
	}
	return c.DataBits, c.parity, c.StopBits
}

// charTime is the duration of one character on the line, when known.
func (c *Config) charTime() (time.Duration, bool) {
	if c.Baud == 0 || c.transport == transportTCP {
		return 0, false
	}
	dataBits, parity, stopBits := c.framing()
	return transport.CharTime(c.Baud, dataBits, parity, stopBits), true
}

// cycleTime projects one poll cycle on a serial line: every byte of request
// and reply plus the t3.5 silence before each frame.
func (c *Config) cycleTime(reqs []request) (time.Duration, bool) {
	ct, ok := c.charTime()
	if !ok {
		return 0, false
	}
	dataBits, parity, stopBits := c.framing()
	gap := transport.FrameGap(c.Baud, dataBits, parity, stopBits)
	var total time.Duration
	for i := range reqs {
		req, resp := reqs[i].wireBytes(c.transport)
		total += time.Duration(req+resp)*ct + 2*gap
	}
	return total, true
}

// checkLoad warns when the devices' polls need more of the serial line than
// it has: polls will then be skipped, and the plan shows where the time goes.
func (c *Config) checkLoad(r adapters.Reporter) {
	var load float64
	for i := range c.Devices {
		d := &c.Devices[i]
		t, ok := c.cycleTime(planDevice(d, make([]*adapters.Point, len(d.Points))))
		if !ok {
			return
		}
		load += float64(t) / float64(d.Interval)
	}
	if load > 1 {
		r.Warnf("devices", "the polls need %.0f%% of the line at %d baud (before device turnaround): cycles will be skipped; poll less often, read fewer registers, or raise the baud rate", 100*load, c.Baud)
	}
}
