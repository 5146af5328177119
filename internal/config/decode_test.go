package config

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func lookup(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestExpandEnv(t *testing.T) {
	env := lookup(map[string]string{"HOST": "broker.local", "EMPTY": ""})
	ok := map[string]string{
		"plain":                      "plain",
		"${HOST}:8883":               "broker.local:8883",
		"a${EMPTY}b":                 "ab",
		"cost $$5":                   "cost $5",
		"$${HOST}":                   "${HOST}",
		"trailing $":                 "trailing $",
		"${HOST}/${HOST}":            "broker.local/broker.local",
		"no brace $HOST stays as is": "no brace $HOST stays as is",
	}
	for in, want := range ok {
		got, err := expandEnv(in, env)
		if err != nil || got != want {
			t.Errorf("expandEnv(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for in, want := range map[string]string{"${NOPE}": "NOPE is not set", "${HOST": "unclosed", "${}": "empty"} {
		if _, err := expandEnv(in, env); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("expandEnv(%q) error = %v, want %q", in, err, want)
		}
	}
}

// TestDecodeStrictness covers what the golden files do not: duplicate keys,
// wrong shapes, and merge keys overriding.
func TestDecodeStrictness(t *testing.T) {
	cases := []struct {
		yaml string
		want []string // substrings of the errors, in order
	}{
		{"gateway: {id: a}\ngateway: {id: b}\n", []string{`2:1: gateway: key "gateway" appears twice`}},
		{"gateway: [a, b]\n", []string{"gateway: expected a mapping (key: value), found a list"}},
		{"gateway: {id: [x]}\n", []string{"gateway.id: expected a single value, found a list"}},
		{"gateway: {id: a}\nadapters: {name: x}\n", []string{"adapters: expected a list, found a mapping"}},
		{"gateway: {id: a}\nbroker: {max_clients: 1.5}\n", []string{`broker.max_clients: expected an integer, found "1.5"`}},
		{"gateway: {id: a}\nbroker: {max_clients: 99999999999999999999}\n", []string{"broker.max_clients: expected an integer"}},
		{"gateway: {id: a}\nadapters:\n  - {name: x}\n", []string{"adapters[0]: adapter needs type"}},
		{"", []string{"the config is empty"}},
		{"# only a comment\n", []string{"the config is empty"}},
	}
	for _, c := range cases {
		_, err := Parse("t.yaml", []byte(c.yaml), Options{LookupEnv: lookup(nil)})
		if err == nil {
			t.Errorf("%q: no error", c.yaml)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%q: error\n%v\nshould contain %q", c.yaml, err, w)
			}
		}
	}
}

func TestMergeKeyOverride(t *testing.T) {
	yaml := `
base: &b {level: debug, format: json}
gateway: {id: a}
log:
  <<: *b
  level: warn
`
	// "base" is not a key of the config: strictness applies to anchors'
	// homes too, so put the anchor inside a known section instead.
	if _, err := Parse("t.yaml", []byte(yaml), Options{LookupEnv: lookup(nil)}); err == nil || !strings.Contains(err.Error(), `unknown key "base"`) {
		t.Fatalf("unknown top-level key: %v", err)
	}
	yaml = `
gateway: {id: a}
broker: &b {max_clients: 5, max_inflight: 7}
log: {level: info}
`
	cfg, err := Parse("t.yaml", []byte(yaml), Options{LookupEnv: lookup(nil)})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Broker.MaxClients != 5 || cfg.Broker.MaxInflight != 7 {
		t.Errorf("broker: %+v", cfg.Broker)
	}
}

// FuzzParse: no input makes the loader panic, and every failure is a list
// of problems with a file name.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"gateway: {id: a}\n",
		"gateway: {id: a}\nadapters:\n  - {name: b, type: modbus, transport: tcp, address: x, devices: [{name: d, unit: 1, points: [{name: p, table: holding, address: 1}]}]}\n",
		"a: &x {b: *x}\n",
		"gateway: {id: a}\nlog: {<<: [*x]}\n",
		"- - - -\n",
		"gateway: !!binary aGVsbG8=\n",
		"{{{{",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := Parse("fuzz.yaml", data, Options{LookupEnv: lookup(nil)})
		if err == nil {
			return
		}
		ps, ok := err.(Problems)
		if !ok || len(ps) == 0 {
			t.Fatalf("error is not a list of problems: %T %v", err, err)
		}
		for _, p := range ps {
			if p.File != "fuzz.yaml" || p.Msg == "" {
				t.Fatalf("problem without file or message: %+v", p)
			}
		}
	})
}

// TestAliasBomb: aliases that multiply ("billion laughs"), here through
// merge keys, end in an error, quickly, not in a hung gateway.
func TestAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("gateway: {id: a}\nx0: &m0 {level: info}\n")
	for i := 1; i <= 12; i++ {
		fmt.Fprintf(&b, "x%d: &m%d {<<: [", i, i)
		for j := 0; j < 10; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "*m%d", i-1)
		}
		b.WriteString("]}\n")
	}
	b.WriteString("log: {<<: *m12}\n")
	start := time.Now()
	_, err := Parse("bomb.yaml", []byte(b.String()), Options{LookupEnv: lookup(nil)})
	if err == nil || !strings.Contains(err.Error(), "expands to more than") {
		t.Fatalf("error: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %s", d)
	}
}
