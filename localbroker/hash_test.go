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
