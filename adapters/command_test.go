package adapters

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
)

func TestParseCommand(t *testing.T) {
	cases := []struct {
		payload string
		want    Value
		id      string
	}{
		{"42.5", Float64(42.5), ""},
		{" 1200\n", Int(1200), ""},
		{"-7", Int(-7), ""},
		{"18446744073709551615", Uint(math.MaxUint64), ""},
		{"-9223372036854775808", Int(math.MinInt64), ""},
		{"1e3", Float64(1000), ""},
		{"true", Bool(true), ""},
		{"false", Bool(false), ""},
		{`"SN-1"`, String("SN-1"), ""},
		{`"caf\u00e9 \"x\""`, String(`café "x"`), ""},
		{`{"value": 42.5, "id": "abc"}`, Float64(42.5), `"abc"`},
		{`{"id": 17, "value": true}`, Bool(true), `17`},
		{`{"value": "x"}`, String("x"), ""},
		{`{"value": 9007199254740993}`, Int(9007199254740993), ""}, // beyond float64's integers: kept exact
	}
	for _, c := range cases {
		v, id, err := ParseCommand([]byte(c.payload))
		if err != nil {
			t.Errorf("%q: %v", c.payload, err)
			continue
		}
		if !v.Equal(c.want) || string(id) != c.id {
			t.Errorf("%q: got %v id %q, want %v id %q", c.payload, v, id, c.want, c.id)
		}
	}
}

func TestParseCommandRefusals(t *testing.T) {
	cases := []struct{ payload, id, msg string }{
		{"", "", "empty payload"},
		{"   ", "", "empty payload"},
		{"null", "", "null"},
		{"hello", "", "not JSON"},
		{"12abc", "", "not a valid number"},
		{"1e999", "", "out of range"},
		{"99999999999999999999", "", "out of range"},
		{"[1]", "", "not an object or array"},
		{`{"value": 1`, "", "not a valid JSON object"},
		{`{"valeu": 1, "id": "a"}`, `"a"`, `unknown key "valeu"`},
		{`{"id": "a"}`, `"a"`, `no "value"`},
		{`{"id": {"x": 1}, "value": 1}`, "", `"id" must be a string or a number`},
		{`{"id": "b", "value": null}`, `"b"`, "null"},
		{`{"id": "c", "value": [1, 2]}`, `"c"`, "not an object or array"},
		{"\"\xff\"", "", "UTF-8"},
		{strings.Repeat("1", MaxCommandPayload+1), "", "longer than"},
	}
	for _, c := range cases {
		_, id, err := ParseCommand([]byte(c.payload))
		if err == nil {
			t.Errorf("%q: accepted", c.payload)
			continue
		}
		if !strings.Contains(err.Error(), c.msg) || string(id) != c.id {
			t.Errorf("%q: error %q id %q, want it to say %q with id %q", c.payload, err, id, c.msg, c.id)
		}
	}
}

// FuzzParseCommand: any payload is either refused with an error or gives a
// value of a real kind; an id is always valid JSON, and a value's JSON text
// parses back to the same value.
func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"42.5", "-7", "true", `"x"`, `{"value":1,"id":"a"}`, `{"id":2,"value":"b"}`, "1e308", "18446744073709551616", `{"value":{"a":1}}`, "nul", `"\ud800"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		v, id, err := ParseCommand(payload)
		if len(id) > 0 && !json.Valid(id) {
			t.Fatalf("%q: id %q is not JSON", payload, id)
		}
		if err != nil {
			if err.Error() == "" {
				t.Fatalf("%q: empty error", payload)
			}
			return
		}
		if v.Kind() == KindInvalid {
			t.Fatalf("%q: no error and no value", payload)
		}
		text := v.AppendJSON(nil)
		back, _, err := ParseCommand(text)
		if err != nil {
			if v.Kind() == KindString && len(text) > MaxCommandPayload {
				return
			}
			t.Fatalf("%q: value %s does not parse back: %v", payload, text, err)
		}
		if back.Kind() != v.Kind() && !(v.Kind() == KindFloat && back.Kind() == KindInt) {
			t.Fatalf("%q: %s parsed back as a different kind", payload, text)
		}
		a, _ := v.Number()
		b, _ := back.Number()
		if a != b || back.AsString() != v.AsString() || back.AsBool() != v.AsBool() {
			t.Fatalf("%q: %s parsed back as %s", payload, text, back)
		}
	})
}
