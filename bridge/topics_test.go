package bridge

import (
	"slices"
	"testing"
)

func TestMatch(t *testing.T) {
	cases := []struct {
		filter, topic string
		want          bool
	}{
		{"plant1/#", "plant1/m/v", true},
		{"plant1/#", "plant1", true}, // '#' includes the parent level
		{"plant1/#", "plant2/m", false},
		{"plant1/+/v", "plant1/m/v", true},
		{"plant1/+/v", "plant1/m/w", false},
		{"plant1/+/v", "plant1/m/v/x", false},
		{"plant1/+", "plant1/", true}, // an empty level is a level
		{"+/+", "a/b", true},
		{"+", "a/b", false},
		{"#", "a/b/c", true},
		{"#", "$SYS/x", false}, // wildcards at the start skip $ topics
		{"+/x", "$SYS/x", false},
		{"$SYS/#", "$SYS/x", true},
		{"a/b", "a/b", true},
		{"a/b", "a/b/c", false},
		{"a/b/c", "a/b", false},
	}
	for _, c := range cases {
		if got := match(c.filter, c.topic); got != c.want {
			t.Errorf("match(%q, %q) = %v, want %v", c.filter, c.topic, got, c.want)
		}
	}
}

func TestCheckFilter(t *testing.T) {
	for _, ok := range []string{"#", "+", "a/+/b/#", "a", "/", "a//b", "$SYS/#"} {
		if err := checkFilter(ok); err != nil {
			t.Errorf("checkFilter(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a/#/b", "a#", "a/b+", "+a/b", "a\x00b"} {
		if err := checkFilter(bad); err == nil {
			t.Errorf("checkFilter(%q) accepted", bad)
		}
	}
}

func TestLiteralPrefix(t *testing.T) {
	for f, want := range map[string]string{
		"site-a/plant1/+/+/set": "site-a/plant1/",
		"site-a/#":              "site-a/",
		"#":                     "/", // no literal part: nothing but "" is a prefix of it
		"a/b":                   "a/b",
	} {
		if got := literalPrefix(f); got != want {
			t.Errorf("literalPrefix(%q) = %q, want %q", f, got, want)
		}
	}
}

func TestTopicMapping(t *testing.T) {
	c := Config{
		Upstreams: []Upstream{{URL: "tcp://127.0.0.1"}},
		Forward: []ForwardRule{
			{Filter: "plant1/#", Prefix: "site-a/"},
			{Filter: "plant1/+/alarm", Prefix: "alarms/"},
		},
		Subscribe: []SubscribeRule{{Filter: "site-a/plant1/+/+/set", StripPrefix: "site-a/"}},
	}
	var p problems
	c.Check("plant1", t.TempDir(), &p)
	if len(p.errs) > 0 {
		t.Fatal(p.errs)
	}
	got := c.ForwardTopics("plant1/pump/alarm")
	if want := []string{"site-a/plant1/pump/alarm", "alarms/plant1/pump/alarm"}; !slices.Equal(got, want) {
		t.Errorf("ForwardTopics = %q, want %q", got, want)
	}
	if got := c.ForwardTopics("plant2/x"); len(got) != 0 {
		t.Errorf("ForwardTopics(plant2/x) = %q", got)
	}
	// A command topic goes down only.
	if got := c.ForwardTopics("plant1/pump/speed/set"); len(got) != 0 {
		t.Errorf("ForwardTopics(a command topic) = %q", got)
	}
	r := &c.Subscribe[0]
	if local, ok := r.localTopic("site-a/plant1/m/v/set"); !ok || local != "plant1/m/v/set" {
		t.Errorf("localTopic = %q, %v", local, ok)
	}
	for _, bad := range []string{"site-b/plant1/m/v/set", "site-a/"} {
		if local, ok := r.localTopic(bad); ok {
			t.Errorf("localTopic(%q) = %q, want refused", bad, local)
		}
	}
}
