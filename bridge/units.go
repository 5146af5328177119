package bridge

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/fieldbridge/fieldbridge/bridge/queue"
)

// The small value types of the bridge's configuration. Each decodes itself
// from YAML through encoding.TextUnmarshaler, so the config loader reports a
// bad value with its file:line:col like any other key.

// ByteSize is a size in bytes, written with a unit: 512MiB, 2GiB, 100MB,
// 64KiB, or a plain number of bytes. KiB/MiB/GiB/TiB are powers of 1024,
// kB/MB/GB/TB powers of 1000 (K and KB are read as KiB, as most people mean).
type ByteSize int64

var byteUnits = []struct {
	suffix string
	mult   float64
}{
	// Longest suffixes first, so that "MiB" is not read as "B".
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40},
	{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"tb", 1e12},
	{"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}, {"t", 1 << 40},
	{"b", 1},
}

// UnmarshalText parses a size such as 512MiB.
func (s *ByteSize) UnmarshalText(b []byte) error {
	text := strings.TrimSpace(string(b))
	num, mult := strings.ToLower(text), 1.0
	for _, u := range byteUnits {
		if strings.HasSuffix(num, u.suffix) {
			num, mult = strings.TrimSpace(num[:len(num)-len(u.suffix)]), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(strings.ReplaceAll(num, "_", ""), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return fmt.Errorf("invalid size %q (examples: 512MiB, 2GiB, 100MB)", text)
	}
	if f < 0 {
		return fmt.Errorf("size %q is negative", text)
	}
	v := f * mult
	if v >= math.MaxInt64 {
		return fmt.Errorf("size %q is too large", text)
	}
	*s = ByteSize(v)
	return nil
}

// String renders the size with the largest binary unit that divides it.
func (s ByteSize) String() string {
	for _, u := range []struct {
		name string
		mult int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if s != 0 && int64(s)%u.mult == 0 {
			return strconv.FormatInt(int64(s)/u.mult, 10) + u.name
		}
	}
	return strconv.FormatInt(int64(s), 10) + "B"
}

// SyncPolicy is buffer.sync: the group-commit interval (a duration such as
// 100ms), or "always" to fsync every batch before it counts as queued.
type SyncPolicy struct {
	// Interval is the longest time between an append and its fsync; zero
	// with Always false means "not set" (the default applies).
	Interval time.Duration
	// Always fsyncs every batch: a power cut loses nothing that was queued,
	// at the cost of speed and SD-card wear.
	Always bool
}

// UnmarshalText accepts "always" or a positive duration.
func (p *SyncPolicy) UnmarshalText(b []byte) error {
	text := strings.TrimSpace(string(b))
	if strings.EqualFold(text, "always") {
		*p = SyncPolicy{Always: true}
		return nil
	}
	d, err := time.ParseDuration(text)
	if err != nil {
		return fmt.Errorf("sync %q: use a duration such as 100ms, or always", text)
	}
	if d <= 0 {
		return fmt.Errorf("sync %q: the interval must be positive; write always to fsync every batch", text)
	}
	*p = SyncPolicy{Interval: d}
	return nil
}

// String renders the policy as it is written in the config.
func (p SyncPolicy) String() string {
	if p.Always {
		return "always"
	}
	return p.Interval.String()
}

// interval is the queue's SyncInterval (0 = fsync in every Append).
func (p SyncPolicy) interval() time.Duration {
	if p.Always {
		return 0
	}
	return p.Interval
}

// WhenFull is buffer.when_full: what happens when the queue reaches
// max_bytes.
type WhenFull int

const (
	// DropOldest deletes the oldest queued messages to make room: the cloud
	// gets the most recent data after a long outage. The default.
	DropOldest WhenFull = iota
	// DropNewest refuses new messages until the backlog shrinks: the cloud
	// gets the oldest data.
	DropNewest
)

// UnmarshalText accepts drop_oldest and drop_newest.
func (w *WhenFull) UnmarshalText(b []byte) error {
	switch strings.ToLower(strings.TrimSpace(string(b))) {
	case "drop_oldest", "drop-oldest":
		*w = DropOldest
	case "drop_newest", "drop-newest":
		*w = DropNewest
	default:
		return fmt.Errorf("when_full %q: use drop_oldest or drop_newest", b)
	}
	return nil
}

// String renders the policy as it is written in the config.
func (w WhenFull) String() string {
	if w == DropNewest {
		return "drop_newest"
	}
	return "drop_oldest"
}

func (w WhenFull) policy() queue.Policy {
	if w == DropNewest {
		return queue.DropNewest
	}
	return queue.DropOldest
}

// RetainMode is forward[].retain: whether the retain flag of a local message
// travels to the cloud.
type RetainMode int

const (
	// RetainKeep forwards the local retain flag as it is (the default): the
	// gateway publishes point values retained, so the cloud broker keeps the
	// latest value of every point for new subscribers.
	RetainKeep RetainMode = iota
	// RetainFalse clears the flag: the cloud broker keeps nothing.
	RetainFalse
)

// UnmarshalText accepts keep and false.
func (m *RetainMode) UnmarshalText(b []byte) error {
	switch strings.ToLower(strings.TrimSpace(string(b))) {
	case "keep":
		*m = RetainKeep
	case "false":
		*m = RetainFalse
	default:
		return fmt.Errorf("retain %q: use keep (forward the local retain flag) or false (never retain in the cloud)", b)
	}
	return nil
}

// String renders the mode as it is written in the config.
func (m RetainMode) String() string {
	if m == RetainFalse {
		return "false"
	}
	return "keep"
}

// Inflight is bridge.inflight: auto (the default: the window adapts to the
// link) or a fixed number of messages in flight.
type Inflight struct {
	// N is the fixed window; 0 means auto.
	N int
}

// UnmarshalText accepts auto or a number.
func (i *Inflight) UnmarshalText(b []byte) error {
	text := strings.TrimSpace(string(b))
	if strings.EqualFold(text, "auto") {
		*i = Inflight{}
		return nil
	}
	n, err := strconv.ParseInt(strings.ReplaceAll(text, "_", ""), 0, 64)
	if err != nil {
		return fmt.Errorf("inflight %q: use auto, or a number of messages from 1 to 65535", text)
	}
	if n < 1 || n > 65535 {
		return fmt.Errorf("inflight must be auto or between 1 and 65535, got %d", n)
	}
	*i = Inflight{N: int(n)}
	return nil
}

// String renders the setting as it is written in the config.
func (i Inflight) String() string {
	if i.N == 0 {
		return "auto"
	}
	return strconv.Itoa(i.N)
}
