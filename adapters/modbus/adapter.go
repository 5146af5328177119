package modbus

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/goburrow/modbus"

	"github.com/fieldbridge/fieldbridge/adapters"
	"github.com/fieldbridge/fieldbridge/adapters/modbus/transport"
)

// Adapter polls one Modbus bus.
type Adapter struct {
	cfg     *Config
	log     *slog.Logger
	devices []*device
	pub     []*adapters.Device
	stats   busStats
	writes  writer

	// newLink builds the bus transport; tests replace it.
	newLink func() (link, error)
}

var (
	_ adapters.Adapter       = (*Adapter)(nil)
	_ adapters.Describer     = (*Adapter)(nil)
	_ adapters.Exclusive     = (*Adapter)(nil)
	_ adapters.HealthChecker = (*Adapter)(nil)
)

// link is the bus transport as the scheduler uses it; the transport package
// provides TCP, serial RTU and RTU-over-TCP implementations.
type link interface {
	modbus.Transporter
	SetTimeout(time.Duration)
	Close() error
	Stats() transport.Stats
}

// Build turns the checked configuration into an adapter. Nothing is opened
// until Run.
func (c *Config) Build(env adapters.Env) (adapters.Adapter, error) {
	log := env.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Adapter{cfg: c, log: log.With("bus", c.Name)}
	a.writes.points, a.writes.queue = map[*adapters.Point]*writePoint{}, make(chan *writeJob, writeQueueSize)
	for i := range c.Devices {
		dc := &c.Devices[i]
		pd := &adapters.Device{Name: dc.Name, Adapter: c.Name, Path: fmt.Sprintf("devices[%d]", i)}
		vars := adapters.TopicVars{Gateway: env.GatewayID, Adapter: c.Name, Device: dc.Name, Point: "availability"}
		tmpl := dc.Topic
		if tmpl == "" {
			tmpl = adapters.DefaultTopic
		}
		var err error
		if pd.AvailabilityTopic, err = adapters.RenderTopic(tmpl, vars); err != nil {
			return nil, fmt.Errorf("device %s: %w", dc.Name, err)
		}
		points := make([]*adapters.Point, len(dc.Points))
		for j := range dc.Points {
			pc := &dc.Points[j]
			vars.Point = pc.Name
			topic, err := adapters.RenderTopic(pc.topicTemplate(dc), vars)
			if err != nil {
				return nil, fmt.Errorf("device %s point %s: %w", dc.Name, pc.Name, err)
			}
			points[j] = &adapters.Point{
				Device: dc.Name, Name: pc.Name, Topic: topic, Unit: pc.Unit,
				Publish: pc.publishMode(dc), Deadband: pc.deadband(dc), Writable: pc.Writable,
				Path: fmt.Sprintf("%s.points[%d]", pd.Path, j),
			}
		}
		pd.Points = points
		d := &device{cfg: dc, pub: pd, requests: planDevice(dc, points), log: a.log.With("device", dc.Name, "unit", dc.unit)}
		for j := range dc.Points {
			a.writes.points[points[j]] = newWritePoint(d, &dc.Points[j], points[j])
		}
		a.devices = append(a.devices, d)
		a.pub = append(a.pub, pd)
	}
	a.newLink = a.openLink
	return a, nil
}

// Exclusive names the serial port of an RTU bus: one bus per line. A path
// that exists is resolved (/dev/serial/by-id/… links to /dev/ttyUSB0).
func (a *Adapter) Exclusive() []string {
	if a.cfg.transport != transportRTU {
		return nil
	}
	dev := filepath.Clean(a.cfg.Device)
	if real, err := filepath.EvalSymlinks(dev); err == nil {
		dev = real
	}
	return []string{"serial port " + dev}
}

// stuckAfter is the slack added to the longest possible poll before a bus
// counts as stuck.
const stuckAfter = 30 * time.Second

// Healthy reports a bus stuck in one poll far longer than its timeouts
// allow: every transaction is bounded by them, so that means a bug (a
// deadlock on the way to the broker, a driver that never returns), and the
// watchdog should restart the gateway.
func (a *Adapter) Healthy(now time.Time) error {
	since := a.stats.busySince.Load()
	if since == 0 {
		return nil
	}
	busy := now.Sub(time.Unix(0, since))
	if limit := a.pollBound() + stuckAfter; busy > limit {
		return fmt.Errorf("bus %s stuck in one poll for %s (its timeouts allow %s)", a.cfg.Name, busy.Round(time.Second), a.pollBound())
	}
	return nil
}

// pollBound is the longest one device's poll can take: every request tried
// retries+1 times, each attempt a connect, a reply timeout and the pause
// after it.
func (a *Adapter) pollBound() time.Duration {
	c := a.cfg
	var longest time.Duration
	for _, d := range a.devices {
		per := c.ConnectTimeout + d.cfg.Timeout + c.DelayBetweenRequests
		longest = max(longest, time.Duration(len(d.requests)*(d.cfg.retries+1))*per)
	}
	return longest
}

// Devices lists the devices and points of the bus.
func (a *Adapter) Devices() []*adapters.Device { return a.pub }

// openLink builds the transport named by the config. Nothing is opened yet:
// the transport connects on its first request.
func (a *Adapter) openLink() (link, error) {
	c := a.cfg
	// The bus reports outages itself, once, with their effect on devices;
	// the transport's own connection messages are for debugging.
	log := slog.New(debugOnly{a.log.Handler()})
	switch c.transport {
	case transportRTU:
		return transport.NewSerial(transport.SerialConfig{
			Device: c.Device, Baud: c.Baud, DataBits: c.DataBits, Parity: c.parity,
			StopBits: c.StopBits, Timeout: c.Timeout, Logger: log,
		})
	case transportRTUOverTCP:
		return transport.NewRTUOverTCP(transport.RTUOverTCPConfig{
			Address: c.Address, Timeout: c.Timeout, DialTimeout: c.ConnectTimeout, Baud: c.Baud, Logger: log,
		})
	}
	return transport.NewTCP(transport.TCPConfig{
		Address: c.Address, Timeout: c.Timeout, DialTimeout: c.ConnectTimeout, Logger: log,
	})
}

// packager returns goburrow's framing for one unit id. Only its
// Encode/Decode/Verify are used; our transports move the bytes.
func (a *Adapter) packager(unit int) modbus.Packager {
	if a.cfg.transport == transportTCP {
		h := modbus.NewTCPClientHandler("")
		h.SlaveId = byte(unit)
		return h
	}
	h := modbus.NewRTUClientHandler("")
	h.SlaveId = byte(unit)
	return h
}

// Run polls the bus until ctx is done. Every request, for every device on
// the bus, is made from this one goroutine: a serial line is half-duplex and
// a Modbus TCP server may serve one request at a time.
func (a *Adapter) Run(ctx context.Context, sink adapters.Sink) error {
	l, err := a.newLink()
	if err != nil {
		return fmt.Errorf("bus %s: %w", a.cfg.Name, err)
	}
	defer l.Close()
	// The context is checked between transactions, never used to cut one
	// short: a request on the wire finishes (within its timeout) so the
	// device is not left with half a frame.
	b := newBus(a, l, sink)
	a.startWrites()
	defer a.stopWrites("is stopping")
	b.run(ctx)
	return nil
}

// debugOnly logs every record at debug level.
type debugOnly struct{ slog.Handler }

func (h debugOnly) Enabled(ctx context.Context, _ slog.Level) bool {
	return h.Handler.Enabled(ctx, slog.LevelDebug)
}

func (h debugOnly) Handle(ctx context.Context, r slog.Record) error {
	r.Level = slog.LevelDebug
	return h.Handler.Handle(ctx, r)
}

func (h debugOnly) WithAttrs(as []slog.Attr) slog.Handler { return debugOnly{h.Handler.WithAttrs(as)} }

func (h debugOnly) WithGroup(name string) slog.Handler { return debugOnly{h.Handler.WithGroup(name)} }
