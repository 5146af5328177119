// Package adapters defines the contract between the gateway and its protocol
// adapters (Modbus today; OPC UA, S7, M-Bus … later) and the registry through
// which adapters make themselves available.
//
// An adapter type registers itself from init() with Register; the gateway
// enables it with one blank import in adapters/all. At load time the gateway
// decodes each `adapters:` entry of the config into the Config returned by the
// registration's NewConfig, calls Check (which reports every problem with a key
// path), then Build, and finally Run with a Sink that turns samples into MQTT
// messages. Adapters never import the broker or the bridge.
//
// This package imports the standard library only.
package adapters

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"sync"
	"time"
)

// Base holds the keys every adapter entry has. Adapter configs embed it with
// `yaml:",inline"` so the strict decoder accepts `name` and `type`.
type Base struct {
	// Name of the bus/connection; unique across the gateway, used in logs.
	Name string `yaml:"name"`
	// Type selects the adapter implementation (e.g. "modbus").
	Type string `yaml:"type"`
}

// Env is what the gateway tells an adapter about its surroundings.
type Env struct {
	// GatewayID is the root of every topic (gateway.id).
	GatewayID string
	// Log is the adapter's logger; Build adds the adapter's own attributes.
	Log *slog.Logger
}

// Reporter collects configuration problems. Paths are relative to the
// adapter's entry, in the form `devices[2].points[0].bit`; the config loader
// turns them into file:line:col.
type Reporter interface {
	Errorf(path, format string, args ...any)
	Warnf(path, format string, args ...any)
}

// Config is a decoded adapter entry.
type Config interface {
	// Check validates the configuration, fills in defaults and reports every
	// problem it finds (not just the first). It must not touch hardware.
	Check(env Env, r Reporter)
	// Build turns a checked configuration into a runnable adapter. It is
	// called only when Check reported no errors, and must not touch
	// hardware either: connections are made by Run.
	Build(env Env) (Adapter, error)
}

// Adapter is a built, runnable adapter.
type Adapter interface {
	// Devices lists the devices and points the adapter will publish, fixed
	// at build time. The gateway numbers points and renders nothing else.
	Devices() []*Device
	// Run polls until ctx is done, emitting samples into sink. It returns
	// nil after a clean stop; an error only when it could not run at all.
	// Transient failures (a dead device, a vanished port) are handled
	// inside, logged and retried; they never end Run.
	Run(ctx context.Context, sink Sink) error
}

// Describer is implemented by adapters that can explain what they will do on
// the wire; `gateway check` prints it.
type Describer interface {
	Describe(w io.Writer)
}

// Exclusive is implemented by adapters that hold a resource no other adapter
// may use at the same time, such as a serial port: two buses on one RS-485
// line would interleave their frames. The gateway refuses a config where two
// adapters name the same resource.
type Exclusive interface {
	// Exclusive names the resources, e.g. "serial port /dev/ttyUSB0".
	Exclusive() []string
}

// HealthChecker is implemented by adapters that can tell whether they are
// making progress. The gateway feeds the systemd watchdog only while every
// adapter is healthy, so a stuck adapter gets the process restarted.
type HealthChecker interface {
	// Healthy returns nil, or why the adapter is stuck.
	Healthy(now time.Time) error
}

// Sink receives what adapters read. Implementations must be safe for
// concurrent use by several adapters and bus goroutines, must not block for
// long, and must not keep the samples slice after returning.
type Sink interface {
	// Publish hands over the samples of one request, all taken at one time.
	Publish(samples []Sample)
	// Availability reports that a device started or stopped answering.
	Availability(d *Device, online bool)
}

// Device is a field device as the gateway sees it.
type Device struct {
	// Name is unique across the gateway.
	Name string
	// Adapter is the name of the adapter (bus) the device is on.
	Adapter string
	// AvailabilityTopic receives "online"/"offline", retained.
	AvailabilityTopic string
	// Points are the device's data points.
	Points []*Point
	// Path locates the device in the adapter entry, for error messages.
	Path string
}

// PublishMode says when a point's value is published.
type PublishMode uint8

// Publish modes.
const (
	// OnChange publishes a value only when it differs from the last one
	// published (by more than the deadband for numbers). The default.
	OnChange PublishMode = iota
	// EveryPoll publishes every value read.
	EveryPoll
)

// Point is one published data point, described once at load time.
type Point struct {
	// ID is a dense index across the gateway, assigned by the gateway
	// before Run (see Number); sinks use it to keep per-point state.
	ID int
	// Device and Name identify the point.
	Device, Name string
	// Topic is the rendered MQTT topic.
	Topic string
	// Unit is the engineering unit, included in payloads when not empty.
	Unit string
	// Publish and Deadband control change detection.
	Publish  PublishMode
	Deadband float64
	// Writable points accept commands (see Writer); their adapter
	// implements Writer.
	Writable bool
	// Path locates the point in the adapter entry, for error messages.
	Path string
}

// Sample is one reading of one point.
type Sample struct {
	Point *Point
	// Value is meaningful only when Err is nil.
	Value Value
	// Err is why the point could not be read; non-nil means quality "bad".
	Err error
	// Time is when the value was read.
	Time time.Time
	// Force publishes a good value even if it did not change (the
	// read-back after a write, which subscribers must see at once).
	Force bool
}

// Number assigns dense IDs to the points of the given adapters, in order, and
// returns them all.
func Number(as []Adapter) []*Point {
	var all []*Point
	for _, a := range as {
		for _, d := range a.Devices() {
			for _, p := range d.Points {
				p.ID = len(all)
				all = append(all, p)
			}
		}
	}
	return all
}

// Registration describes an adapter type.
type Registration struct {
	// Type is the value of `type:` in the config.
	Type string
	// NewConfig returns a pointer to a zero config to decode into.
	NewConfig func() Config
}

var (
	regMu    sync.RWMutex
	registry = map[string]Registration{}
)

// Register makes an adapter type available. It panics on an empty or
// duplicate type, or a nil constructor: those are programming errors that
// must surface at the first run of any test.
func Register(r Registration) {
	if r.Type == "" || r.NewConfig == nil {
		panic("adapters: Register with empty type or nil NewConfig")
	}
	regMu.Lock()
	defer regMu.Unlock()
	if _, dup := registry[r.Type]; dup {
		panic(fmt.Sprintf("adapters: type %q registered twice", r.Type))
	}
	registry[r.Type] = r
}

// Lookup returns the registration of an adapter type.
func Lookup(typ string) (Registration, bool) {
	regMu.RLock()
	defer regMu.RUnlock()
	r, ok := registry[typ]
	return r, ok
}

// Types lists the registered adapter types, sorted.
func Types() []string {
	regMu.RLock()
	defer regMu.RUnlock()
	ts := make([]string, 0, len(registry))
	for t := range registry {
		ts = append(ts, t)
	}
	sort.Strings(ts)
	return ts
}
