package commands

import (
	"time"

	"github.com/fieldbridge/fieldbridge/adapters"
)

// appendResult writes a command's result:
//
//	{"id":"abc","ok":true,"value":1200,"ts":"2026-11-26T09:00:00.123Z"}
//	{"id":null,"ok":false,"error":"refused: …","ts":"…"}
//
// id is the command's id as it was sent (a JSON string or number), null when
// it had none. value is the read-back after a successful write; error says
// why the write failed, or, with ok true, why the read-back did.
func appendResult(b []byte, id []byte, res adapters.WriteResult) []byte {
	b = append(b, `{"id":`...)
	if len(id) == 0 {
		b = append(b, "null"...)
	} else {
		b = append(b, id...)
	}
	b = append(b, `,"ok":`...)
	if res.Err == nil {
		b = append(b, "true"...)
	} else {
		b = append(b, "false"...)
	}
	errText := ""
	switch {
	case res.Err != nil:
		errText = res.Err.Error()
	case res.ReadBackErr != nil:
		errText = res.ReadBackErr.Error()
	}
	if errText != "" {
		b = append(b, `,"error":`...)
		b = adapters.AppendJSONString(b, errText)
	}
	if res.Err == nil && res.ReadBack.Kind() != adapters.KindInvalid {
		b = append(b, `,"value":`...)
		b = res.ReadBack.AppendJSON(b)
	}
	ts := res.Time
	if ts.IsZero() {
		ts = time.Now()
	}
	b = append(b, `,"ts":"`...)
	b = ts.UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
	return append(b, `"}`...)
}
