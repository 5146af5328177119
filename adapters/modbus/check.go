package modbus

import (
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/fieldbridge/fieldbridge/adapters"
)

// Check validates the bus, fills defaults and reports every problem with its
// key path. It never touches the hardware.
func (c *Config) Check(env adapters.Env, rep adapters.Reporter) {
	r := &countingReporter{Reporter: rep}
	c.checkBus(r)
	if len(c.Devices) == 0 {
		r.Errorf("devices", "a modbus adapter needs at least one device")
	}
	names := map[string]int{}
	units := map[int]int{}
	for i := range c.Devices {
		d := &c.Devices[i]
		path := fmt.Sprintf("devices[%d]", i)
		if prev, dup := names[d.Name]; dup && d.Name != "" {
			r.Errorf(path+".name", "device name %q is already used by devices[%d]", d.Name, prev)
		}
		names[d.Name] = i
		c.checkDevice(env, d, path, r)
		if d.Unit != nil {
			if prev, dup := units[d.unit]; dup {
				r.Warnf(path+".unit", "unit %d is also polled as devices[%d] (%s): both names will publish the same device", d.unit, prev, c.Devices[prev].Name)
			}
			units[d.unit] = i
		}
	}
	if r.errors == 0 {
		c.checkLoad(r)
	}
}

// countingReporter counts errors, so checks that need a valid config (the
// line-load projection plans the requests) run only on one.
type countingReporter struct {
	adapters.Reporter
	errors int
}

func (r *countingReporter) Errorf(path, format string, args ...any) {
	r.errors++
	r.Reporter.Errorf(path, format, args...)
}

func (c *Config) checkBus(r *countingReporter) {
	if err := adapters.CheckName(c.Name); err != nil {
		r.Errorf("name", "%v", err)
	}
	serialKeys := func(allowBaud bool) {
		if c.Device != "" {
			r.Errorf("device", "device is for transport rtu; transport %s uses address", c.Transport)
		}
		if c.Baud != 0 && !allowBaud {
			r.Errorf("baud", "baud is for serial transports; transport %s has no baud rate", c.Transport)
		}
		if c.Parity != "" || c.DataBits != 0 || c.StopBits != 0 {
			r.Errorf("parity", "parity, data_bits and stop_bits are for transport rtu")
		}
	}
	switch strings.ToLower(c.Transport) {
	case "tcp":
		c.transport = transportTCP
		c.checkAddress(r)
		serialKeys(false)
	case "rtuovertcp", "rtu_over_tcp", "rtu-over-tcp":
		c.transport = transportRTUOverTCP
		c.checkAddress(r)
		serialKeys(true)
		c.checkBaud(r, false)
	case "rtu":
		c.transport = transportRTU
		if c.Device == "" {
			r.Errorf("device", "transport rtu needs device (the serial port, e.g. /dev/ttyUSB0)")
		}
		if c.Address != "" {
			r.Errorf("address", "address is for tcp and rtuovertcp; transport rtu uses device")
		}
		c.checkBaud(r, true)
		c.checkFraming(r)
	case "":
		r.Errorf("transport", "missing transport: use tcp, rtu or rtuovertcp")
	case "ascii":
		r.Errorf("transport", "Modbus ASCII is not supported; use rtu, tcp or rtuovertcp")
	default:
		r.Errorf("transport", "unknown transport %q: use tcp, rtu or rtuovertcp", c.Transport)
	}
	if c.Timeout == 0 {
		c.Timeout = defaultTimeout
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = defaultConnectTimeout
	}
	c.retries = defaultRetries
	if c.Retries != nil {
		c.retries = *c.Retries
		if c.retries < 0 || c.retries > 10 {
			r.Errorf("retries", "retries must be between 0 and 10, got %d", c.retries)
		}
	}
	if c.BackoffInitial == 0 {
		c.BackoffInitial = defaultBackoffInitial
	}
	if c.BackoffMax == 0 {
		c.BackoffMax = defaultBackoffMax
	}
	if c.BackoffMax < c.BackoffInitial {
		r.Errorf("backoff_max", "backoff_max (%s) is shorter than backoff_initial (%s)", c.BackoffMax, c.BackoffInitial)
	}
}

func (c *Config) checkAddress(r adapters.Reporter) {
	if c.Address == "" {
		r.Errorf("address", "transport %s needs address (host:port)", c.Transport)
		return
	}
	if _, _, err := net.SplitHostPort(c.Address); err != nil {
		if strings.Contains(err.Error(), "missing port") {
			c.Address = net.JoinHostPort(c.Address, "502")
			return
		}
		r.Errorf("address", "address %q is not host:port: %v", c.Address, err)
	}
}

var standardBauds = []int{1200, 2400, 4800, 9600, 14400, 19200, 38400, 57600, 115200, 230400, 460800, 921600}

func (c *Config) checkBaud(r adapters.Reporter, required bool) {
	if c.Baud == 0 {
		if required {
			r.Errorf("baud", "transport rtu needs baud (the device's serial speed, e.g. 9600 or 19200)")
		}
		return
	}
	if c.Baud < 300 || c.Baud > 4000000 {
		r.Errorf("baud", "baud %d is out of range", c.Baud)
		return
	}
	if !slices.Contains(standardBauds, c.Baud) {
		r.Warnf("baud", "baud %d is not a standard rate", c.Baud)
	}
}

func (c *Config) checkFraming(r adapters.Reporter) {
	switch strings.ToUpper(c.Parity) {
	case "":
		c.parity = defaultParity
	case "N", "NONE":
		c.parity = 'N'
	case "E", "EVEN":
		c.parity = 'E'
	case "O", "ODD":
		c.parity = 'O'
	default:
		r.Errorf("parity", "parity %q: use N, E or O", c.Parity)
	}
	if c.DataBits == 0 {
		c.DataBits = defaultDataBits
	}
	if c.DataBits != 7 && c.DataBits != 8 {
		r.Errorf("data_bits", "data_bits must be 7 or 8, got %d", c.DataBits)
	}
	if c.StopBits == 0 {
		c.StopBits = defaultStopBits
	}
	if c.StopBits != 1 && c.StopBits != 2 {
		r.Errorf("stop_bits", "stop_bits must be 1 or 2, got %d", c.StopBits)
	}
}

func (c *Config) checkDevice(env adapters.Env, d *DeviceConfig, path string, r adapters.Reporter) {
	if err := adapters.CheckDeviceName(d.Name); err != nil {
		r.Errorf(path+".name", "%v", err)
	}
	if d.Unit == nil {
		r.Errorf(path, "device %q needs unit (its Modbus unit id / slave address)", d.Name)
	} else {
		d.unit = *d.Unit
		lo, hi := 1, 247
		if c.transport == transportTCP {
			lo, hi = 0, 255
		}
		if d.unit < lo || d.unit > hi {
			r.Errorf(path+".unit", "unit %d is out of range %d–%d for transport %s", d.unit, lo, hi, c.Transport)
		}
	}
	if d.Interval == 0 {
		d.Interval = defaultInterval
	}
	if d.Timeout == 0 {
		d.Timeout = c.Timeout
	}
	d.retries = c.retries
	if d.Retries != nil {
		d.retries = *d.Retries
		if d.retries < 0 || d.retries > 10 {
			r.Errorf(path+".retries", "retries must be between 0 and 10, got %d", d.retries)
		}
	}
	limit := func(key string, v *int, def, max int) {
		if *v == 0 {
			*v = def
		} else if *v < 1 || *v > max {
			r.Errorf(path+"."+key, "%s must be between 1 and %d, got %d", key, max, *v)
		}
	}
	limit("max_registers_per_request", &d.MaxRegistersPerRequest, defaultMaxRegisters, defaultMaxRegisters)
	limit("max_bits_per_request", &d.MaxBitsPerRequest, defaultMaxBits, defaultMaxBits)
	gap := func(key string, v *int, def int) int {
		if v == nil {
			return def
		}
		if *v < 0 || *v > 2000 {
			r.Errorf(path+"."+key, "%s must be between 0 and 2000, got %d", key, *v)
		}
		return *v
	}
	d.maxGap = gap("max_gap", d.MaxGap, defaultMaxGap)
	d.maxBitGap = gap("max_bit_gap", d.MaxBitGap, defaultMaxBitGap)
	if d.Order != "" {
		if _, err := lookupOrder(TypeUint32, d.Order); err != nil {
			r.Errorf(path+".order", "%v", err)
		}
	}
	if d.Topic != "" && !strings.Contains(d.Topic, "{point}") {
		r.Errorf(path+".topic", "a device topic template must contain {point}, or every point would publish to the same topic")
	}
	if d.Publish != "" {
		if _, err := parsePublish(d.Publish); err != nil {
			r.Errorf(path+".publish", "%v", err)
		}
	}
	if d.Deadband != nil && *d.Deadband < 0 {
		r.Errorf(path+".deadband", "deadband must not be negative")
	}
	checkWriteFunction(d, path, r)
	if len(d.Points) == 0 {
		r.Errorf(path+".points", "device %q has no points", d.Name)
	}
	seen := map[string]int{}
	for j := range d.Points {
		p := &d.Points[j]
		pp := fmt.Sprintf("%s.points[%d]", path, j)
		if prev, dup := seen[p.Name]; dup && p.Name != "" {
			r.Errorf(pp+".name", "point name %q is already used by points[%d] of this device", p.Name, prev)
		}
		seen[p.Name] = j
		c.checkPoint(env, d, p, pp, r)
	}
}

func parsePublish(s string) (adapters.PublishMode, error) {
	switch strings.ToLower(s) {
	case "", "on_change":
		return adapters.OnChange, nil
	case "every_poll":
		return adapters.EveryPoll, nil
	}
	return 0, fmt.Errorf("publish %q: use on_change or every_poll", s)
}

func parseTable(s string) (Table, error) {
	switch strings.ToLower(s) {
	case "holding", "holding_register", "holding_registers":
		return Holding, nil
	case "input", "input_register", "input_registers":
		return Input, nil
	case "coil", "coils":
		return Coil, nil
	case "discrete", "discrete_input", "discrete_inputs":
		return Discrete, nil
	case "":
		return 0, fmt.Errorf("missing table: use holding, input, coil or discrete")
	}
	return 0, fmt.Errorf("unknown table %q: use holding, input, coil or discrete", s)
}
