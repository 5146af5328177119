package httpapi

import "github.com/fieldbridge/fieldbridge/adapters"

// Source is the running gateway as the HTTP side reads it. It is asked
// afresh on every request and every second: a reload restarts, adds and
// removes buses and may add or remove the bridge, and what the page, the
// metrics and readiness show follows at once. A device that a reload
// removed is no longer in Buses, so it leaves the page and the metrics
// with no stale series behind.
type Source interface {
	// Buses are the running buses in config order. Safe for concurrent use.
	Buses() []Bus
	// Bridge is the cloud bridge, or nil when none runs. Safe for
	// concurrent use; only Stats is called, which the bridge allows from
	// any goroutine while it runs and while a reload reconfigures it.
	Bridge() BridgeStats
}

// Bus is one running adapter (a bus) as the HTTP side shows it.
type Bus struct {
	// Name is the adapter's name in the config.
	Name    string
	Adapter adapters.Adapter
	// Recorder is (in front of) the Sink the adapter runs with; nil shows
	// the devices with their counters only.
	Recorder *Recorder
	// Publisher is the bus's own publisher; may be nil.
	Publisher PublisherStats
	// CycledBefore reports that this bus replaced (a reload restarted it)
	// one that had completed a poll cycle: readiness, once earned, does
	// not wait for the new one's first cycle.
	CycledBefore bool
}

// FixedSource is a Source that never changes: for tests, benchmarks and
// programs without reloads. bridge may be nil.
func FixedSource(buses []Bus, bridge BridgeStats) Source { return fixed{buses, bridge} }

type fixed struct {
	buses  []Bus
	bridge BridgeStats
}

func (f fixed) Buses() []Bus        { return f.buses }
func (f fixed) Bridge() BridgeStats { return f.bridge }

// busName is the name a bus's series and headings carry: the config's, or
// else what the adapter calls itself.
func (b *Bus) busName(st *adapters.BusStatus) string {
	switch {
	case b.Name != "":
		return b.Name
	case st != nil && st.Name != "":
		return st.Name
	}
	if ds := b.Adapter.Devices(); len(ds) > 0 {
		return ds[0].Adapter
	}
	return ""
}
