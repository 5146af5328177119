package localbroker

import (
	"strings"
	"testing"
)

// TestCheckHash: a bcrypt hash is checked whole, not only its prefix (which
// is all bcrypt.Cost reads): a damaged one would never match a password.
func TestCheckHash(t *testing.T) {
	good := hash(t, "pw")
	for _, h := range []string{good, "$2b$" + good[4:], "$2y$" + good[4:]} {
		if err := checkHash(h); err != nil {
			t.Errorf("%s: %v", h, err)
		}
	}
	for _, tc := range []struct{ hash, want string }{
		{good[:59], "59 characters"},
		{good + " ", "61 characters"},
		{good[:30] + "-" + good[31:], "character 31 ('-')"},
		{"$2a$99$" + good[7:], "cost"},
		{"secret", "too short"},
	} {
		if err := checkHash(tc.hash); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error with %q", tc.hash, err, tc.want)
		}
	}
}

// TestMaySubscribe: what the HTTP side asks of a user besides its password:
// whether it could subscribe to everything under the gateway id.
func TestMaySubscribe(t *testing.T) {
	u, err := NewUsers([]User{
		{Username: "hmi", ACL: []ACLRule{{Filter: "plant1/+/+/set", Access: "deny"}, {Filter: "plant1/#", Access: "read"}}},
		{Username: "admin"},
		{Username: "line1", ACL: []ACLRule{{Filter: "plant1/line1/#", Access: "readwrite"}}},
		{Username: "cmds", ACL: []ACLRule{{Filter: "plant1/+/+/set", Access: "write"}}},
		{Username: "own", ACL: []ACLRule{{Filter: "%u/#", Access: "read"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		user string
		want bool
	}{{"hmi", true}, {"admin", true}, {"line1", false}, {"cmds", false}, {"own", false}, {"nobody", false}} {
		if got := u.MaySubscribe(tc.user, "plant1/#"); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.user, got, tc.want)
		}
	}
	if !u.MaySubscribe("own", "own/#") {
		t.Error("%u is the username")
	}
}
