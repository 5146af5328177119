package adapters

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestValueJSON(t *testing.T) {
	cases := []struct {
		v    Value
		want string
	}{
		{Bool(true), "true"},
		{Bool(false), "false"},
		{Int(-32768), "-32768"},
		{Int(math.MinInt64), "-9223372036854775808"},
		{Uint(math.MaxUint64), "18446744073709551615"},
		{Float32(229.8), "229.8"},
		{Float32(-0.1), "-0.1"},
		{Float64(229.8), "229.8"},
		{Float64(1e21), "1e+21"},
		{Float64(0), "0"},
		{Float64(math.NaN()), "null"},
		{Float64(math.Inf(-1)), "null"},
		{Decimal(12345*0.01, 2), "123.45"},
		{Decimal(5.2, 2), "5.2"},
		{Decimal(5, 2), "5"},
		{Decimal(-0.001, 2), "0"},
		{Decimal(-1.5, 1), "-1.5"},
		{Decimal(150, 0), "150"},
		{Decimal(0.1+0.2, 1), "0.3"},
		{String("ABC-123"), `"ABC-123"`},
		{String("a\"b\\c\n\x01"), `"a\"b\\c\n\u0001"`},
		{String("caf\xe9"), `"caf` + "\ufffd" + `"`},
		{String("µs ünits"), `"µs ünits"`},
		{Value{}, "null"},
	}
	for _, c := range cases {
		got := string(c.v.AppendJSON(nil))
		if got != c.want {
			t.Errorf("%#v: got %s, want %s", c.v, got, c.want)
		}
		if !json.Valid([]byte(got)) {
			t.Errorf("%#v: %s is not valid JSON", c.v, got)
		}
	}
}

func TestValueEqualAndNumber(t *testing.T) {
	if !Float32(1.5).Equal(Float32(1.5)) || Float32(1.5).Equal(Float64(1.5)) {
		t.Error("Equal must compare kind, format and bits")
	}
	if n, ok := Int(-3).Number(); !ok || n != -3 {
		t.Errorf("Int(-3).Number() = %v, %v", n, ok)
	}
	if _, ok := String("x").Number(); ok {
		t.Error("a string has no number")
	}
	if _, ok := Bool(true).Number(); ok {
		t.Error("a bool has no number")
	}
}

func TestDecimalsOf(t *testing.T) {
	for x, want := range map[float64]int{1: 0, 10: 0, 0.1: 1, 0.01: 2, 0.5: 1, 0.001: 3, 0.25: 2, 1.0 / 3: 9, -0.01: 2} {
		if got := DecimalsOf(x); got != want {
			t.Errorf("DecimalsOf(%v) = %d, want %d", x, got, want)
		}
	}
}

func FuzzJSONString(f *testing.F) {
	for _, s := range []string{"", "plain", "q\"uote", "\x00\x1f\x7f", "\xff\xfe", "日本"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := AppendJSONString(nil, s)
		var back string
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("%q -> %s: %v", s, b, err)
		}
		if utf8.ValidString(s) && back != s {
			t.Fatalf("valid UTF-8 %q came back as %q", s, back)
		}
	})
}

func TestRenderTopic(t *testing.T) {
	v := TopicVars{Gateway: "plant1", Adapter: "line1", Device: "meter1", Point: "voltage"}
	ok := map[string]string{
		DefaultTopic:                    "plant1/meter1/voltage",
		"{gateway.id}/{device}/{point}": "plant1/meter1/voltage",
		"site/{bus}/{device}/{point}":   "site/line1/meter1/voltage",
		"fixed/topic":                   "fixed/topic",
	}
	for tmpl, want := range ok {
		got, err := RenderTopic(tmpl, v)
		if err != nil || got != want {
			t.Errorf("RenderTopic(%q) = %q, %v; want %q", tmpl, got, err, want)
		}
	}
	bad := map[string]string{
		"{gateway}/{nope}":               "unknown variable {nope}",
		"{gateway}/{device":              "unclosed",
		"{gateway}}":                     "unmatched",
		"{gateway}//{point}":             "empty level",
		"{gateway}/+/{point}":            "wildcard",
		"{gateway}/#":                    "wildcard",
		"$SYS/{point}":                   "reserved for the broker",
		"{gateway}/{point}/":             "empty level",
		"{gateway}/{point}/set":          "for commands",
		"{gateway}/x/{point}/set/result": "for commands",
	}
	for tmpl, want := range bad {
		_, err := RenderTopic(tmpl, v)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("RenderTopic(%q) error = %v, want it to mention %q", tmpl, err, want)
		}
	}
}

func TestNames(t *testing.T) {
	for _, n := range []string{"meter1", "rs485-1", "A_b-9"} {
		if err := CheckName(n); err != nil {
			t.Errorf("CheckName(%q) = %v", n, err)
		}
	}
	for _, n := range []string{"", "a/b", "a b", "a+b", "a#", "é", strings.Repeat("x", 65)} {
		if CheckName(n) == nil {
			t.Errorf("CheckName(%q) accepted", n)
		}
	}
	if CheckPointName("availability") == nil || CheckPointName("Set") == nil {
		t.Error("reserved point names accepted")
	}
	if CheckDeviceName("status") == nil {
		t.Error("reserved device name accepted")
	}
}

func TestRegistry(t *testing.T) {
	mustPanic := func(name string, r Registration) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s: Register did not panic", name)
			}
		}()
		Register(r)
	}
	mustPanic("empty", Registration{})
	Register(Registration{Type: "test-registry", NewConfig: func() Config { return nil }})
	t.Cleanup(func() { // so that -count=N registers it afresh
		regMu.Lock()
		delete(registry, "test-registry")
		regMu.Unlock()
	})
	mustPanic("duplicate", Registration{Type: "test-registry", NewConfig: func() Config { return nil }})
	if _, ok := Lookup("test-registry"); !ok {
		t.Error("Lookup after Register failed")
	}
}
