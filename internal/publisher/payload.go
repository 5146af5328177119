package publisher

import (
	"time"

	"github.com/fieldbridge/fieldbridge/adapters"
)

// Payloads are written by hand into a reused buffer: encoding/json would
// allocate and reflect for every point, and the poll loop publishes tens of
// thousands of points a second on a Raspberry Pi.

// appendTime writes t as RFC 3339 in UTC with milliseconds, quoted:
// "2026-11-26T10:00:00.123Z".
func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
	return append(b, '"')
}

// appendGood writes {"value":…,"ts":…,"quality":"good"[,"unit":…]}.
func appendGood(b []byte, v adapters.Value, ts []byte, unit string) []byte {
	b = append(b, `{"value":`...)
	b = v.AppendJSON(b)
	b = append(b, `,"ts":`...)
	b = append(b, ts...)
	b = append(b, `,"quality":"good"`...)
	if unit != "" {
		b = append(b, `,"unit":`...)
		b = adapters.AppendJSONString(b, unit)
	}
	return append(b, '}')
}

// appendBad writes {"quality":"bad","error":…,"ts":…}.
func appendBad(b []byte, errText string, ts []byte) []byte {
	b = append(b, `{"quality":"bad","error":`...)
	b = adapters.AppendJSONString(b, errText)
	b = append(b, `,"ts":`...)
	b = append(b, ts...)
	return append(b, '}')
}
