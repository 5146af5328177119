package localbroker

import (
	"fmt"
	"strings"
	"testing"
)

func TestACLRules(t *testing.T) {
	a, err := compileACL([]ACLRule{
		{Filter: "plant1/secret/#", Access: "deny"},
		{Filter: "plant1/+/+/set", Access: "write"},
		{Filter: "plant1/#", Access: "readwrite"},
		{Filter: "devices/%u/%c/#", Access: "readwrite"},
		{Filter: "ro/#", Access: "read"},
	})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		op, topic, user, client string
		want                    bool
	}{
		{"pub", "plant1/pump/speed/set", "u", "c", true},
		{"read", "plant1/pump/speed/set", "u", "c", false}, // first match: write only
		{"read", "plant1/pump/speed/set/result", "u", "c", true},
		{"read", "plant1/pump/speed", "u", "c", true},
		{"read", "plant1", "u", "c", true}, // # matches the parent level
		{"read", "plant1/secret/x", "u", "c", false},
		{"pub", "plant1/secret/x", "u", "c", false},
		{"read", "plant2/x", "u", "c", false}, // no match: deny
		{"pub", "ro/x", "u", "c", false},
		{"read", "ro/x", "u", "c", true},
		{"pub", "devices/u/c/x", "u", "c", true},
		{"pub", "devices/u/other/x", "u", "c", false},
		{"pub", "devices//c/x", "", "c", false},         // no username: the rule never matches
		{"pub", "devices/u/a+b/x", "u", "a+b", false},   // wildcard in a client id never matches
		{"sub", "plant1/#", "u", "c", true},             // covered by plant1/#
		{"sub", "plant1/+/+/set", "u", "c", false},      // covered first by the write rule
		{"sub", "#", "u", "c", false},                   // no rule covers everything
		{"sub", "+/pump/speed", "u", "c", false},        // + reaches beyond plant1
		{"sub", "plant1/secret/+", "u", "c", false},     // the deny rule covers it
		{"sub", "$share/g/plant1/#", "u", "c", true},    // shared subscription
		{"sub", "devices/u/c/+", "u", "c", true},        // substitution in a covered filter
		{"sub", "devices/+/c/#", "u", "c", false},       // + where %u stands
		{"read", "$SYS/broker/uptime", "u", "c", false}, // wildcards do not reach $ topics
	}
	for _, c := range cases {
		var got bool
		switch c.op {
		case "pub":
			got = a.canPublish(c.topic, c.user, c.client)
		default:
			got = a.canRead(c.topic, c.user, c.client)
		}
		if got != c.want {
			t.Errorf("%s %s (user %q client %q) = %v, want %v", c.op, c.topic, c.user, c.client, got, c.want)
		}
	}
	var full acl
	if !full.canPublish("any/thing", "", "") || !full.canRead("#", "", "") {
		t.Error("no rules must mean full access")
	}
}

func TestACLRuleErrors(t *testing.T) {
	for _, r := range []ACLRule{{Filter: "a/#/b", Access: "read"}, {Filter: "a/b+", Access: "read"},
		{Filter: "", Access: "read"}, {Filter: "a", Access: "rw"}, {Filter: "a"}} {
		if _, err := compileRule(r); err == nil {
			t.Errorf("%+v: no error", r)
		}
	}
}

func TestCheckSecurity(t *testing.T) {
	var errs, warns []string
	r := &both{&errs, &warns}
	c := Config{Users: []User{
		{Username: "a", Password: "plain"},
		{Username: "b", PasswordHash: "not-a-hash"},
		{Username: "c/d", PasswordHash: "$2a$04$abcdefghijklmnopqrstuu5VQ4pR/xZg3ED1MZnA6VEXl2j0Mq1Hm"},
		{Username: "e", ACL: []ACLRule{{Filter: "x", Access: "all"}}},
	}, Listeners: []ListenerConfig{{Type: "tls", Address: "0.0.0.0:8883"}, {Type: "ws", Address: "x"}, {Type: "udp", Address: ":1"}}}
	c.Check(r)
	all := strings.Join(errs, "\n")
	for _, want := range []string{
		"users[0].password: plaintext passwords are refused",
		"users[1].password_hash: password_hash is not a bcrypt hash",
		"users[2].username: username \"c/d\" contains",
		"users[3].password_hash: user \"e\" has no password_hash",
		"users[3].acl[0]: unknown access \"all\"",
		"listeners[0].cert_file: a tls listener needs cert_file",
		"listeners[1].address: address \"x\" is not host:port",
		"listeners[2].type: unknown listener type \"udp\"",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("missing error %q in:\n%s", want, all)
		}
	}
	if c.anonymous {
		t.Error("anonymous allowed with users configured")
	}
	// The defaults of allow_anonymous.
	for _, tc := range []struct {
		cfg  Config
		want bool
	}{
		{Config{}, true},
		{Config{Listen: "0.0.0.0:1883"}, false},
		{Config{Users: []User{{Username: "u", PasswordHash: hash(t, "x")}}}, false},
		{Config{Listen: "0.0.0.0:1883", AllowAnonymous: new(bool)}, false},
	} {
		tc.cfg.Check(&both{new([]string), new([]string)})
		if tc.cfg.anonymous != tc.want {
			t.Errorf("%+v: anonymous %v, want %v (%s)", tc.cfg.Listeners, tc.cfg.anonymous, tc.want, tc.cfg.anonymousReason)
		}
	}
}

func TestRestamp(t *testing.T) {
	const epoch = int64(7) << 16
	for _, tc := range []struct{ in []int64 }{
		{[]int64{100, 100, 100, 100}},
		{[]int64{100, 99, 101, 101}},                             // two publishers
		{[]int64{epoch - 2, epoch - 1, epoch - 1, epoch, epoch}}, // across the 16-bit wrap
	} {
		out := restamp(tc.in)
		for i := range out {
			if out[i] < tc.in[i] {
				t.Errorf("%v -> %v: earlier than real", tc.in, out)
			}
			if i > 0 && uint16(out[i]) <= uint16(out[i-1]) {
				t.Errorf("%v -> %v: mochi's uint16 sort would not keep the order", tc.in, out)
			}
		}
	}
}

type both struct{ errs, warns *[]string }

func (b *both) Errorf(path, format string, args ...any) {
	*b.errs = append(*b.errs, path+": "+fmt.Sprintf(format, args...))
}
func (b *both) Warnf(path, format string, args ...any) {
	*b.warns = append(*b.warns, path+": "+fmt.Sprintf(format, args...))
}

// BenchmarkACLDelivery is the ACL's cost per message delivered to a
// subscriber with the benchmark's two rules (a deny first, then read).
func BenchmarkACLDelivery(b *testing.B) {
	a, err := compileACL([]ACLRule{{Filter: "bench/+/+/set", Access: "deny"}, {Filter: "bench/#", Access: "read"}})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if !a.canRead("bench/dev3/r417", "hmi", "b") {
			b.Fatal("denied")
		}
	}
}
