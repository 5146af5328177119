package bridge

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// paho logs through four package-level loggers. They are set once per
// process and forward to the logger of the newest Bridge: assigning them
// again while another bridge's paho goroutines read them would be a data
// race.
var (
	pahoOnce   sync.Once
	pahoTarget atomic.Pointer[slog.Logger]
)

// Levels: everything paho reports at ERROR (a refused dial, a lost
// connection, a failed write) also reaches the bridge as an error value,
// which the bridge logs once per change of state with the upstream named.
// Repeating paho's line on every attempt of a week-long outage would bury
// that, so paho's ERROR and WARN go to debug; only CRITICAL (a missing
// PINGRESP) stays visible as a warning.
func setPahoLogger(log *slog.Logger) {
	pahoTarget.Store(log)
	pahoOnce.Do(func() {
		mqtt.ERROR = pahoLogger{slog.LevelDebug, "ERROR"}
		mqtt.CRITICAL = pahoLogger{slog.LevelWarn, "CRITICAL"}
		mqtt.WARN = pahoLogger{slog.LevelDebug, "WARN"}
		mqtt.DEBUG = pahoLogger{slog.LevelDebug - 4, "DEBUG"} // packet-level chatter: below debug
	})
}

// pahoLogger adapts one of paho's loggers to slog.
type pahoLogger struct {
	level slog.Level
	name  string
}

func (p pahoLogger) enabled() (*slog.Logger, bool) {
	l := pahoTarget.Load()
	if l == nil || !l.Enabled(context.Background(), p.level) {
		return nil, false
	}
	return l, true
}

// Println implements mqtt.Logger. The check comes first: paho calls its
// DEBUG logger for every packet, and formatting costs more than sending.
func (p pahoLogger) Println(v ...any) {
	if l, ok := p.enabled(); ok {
		l.Log(context.Background(), p.level, "paho: "+strings.TrimSuffix(fmt.Sprintln(v...), "\n"), "paho_level", p.name)
	}
}

// Printf implements mqtt.Logger.
func (p pahoLogger) Printf(format string, v ...any) {
	if l, ok := p.enabled(); ok {
		l.Log(context.Background(), p.level, "paho: "+fmt.Sprintf(format, v...), "paho_level", p.name)
	}
}
