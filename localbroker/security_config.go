package localbroker

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// ListenerConfig is one item of `broker.listeners`.
type ListenerConfig struct {
	// Type is tcp, tls, ws (MQTT over WebSocket, for browser HMIs) or wss
	// (WebSocket over TLS).
	Type string `yaml:"type"`
	// Address is host:port; 0.0.0.0 or an empty host listens on every
	// interface.
	Address string `yaml:"address"`
	// CertFile and KeyFile are the server certificate (chain) and key, in
	// PEM (tls and wss).
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ClientCAFile, when set, requires every client to present a
	// certificate signed by one of these CAs (tls and wss).
	ClientCAFile string `yaml:"client_ca_file"`
	// UseIdentityAsUsername takes the client certificate's common name as
	// the username (the certificate is the credential: no password is
	// checked) and applies that user's ACL. Needs client_ca_file.
	UseIdentityAsUsername bool `yaml:"use_identity_as_username"`

	fromListen bool        // made from the `listen` shorthand
	tls        *tls.Config // loaded by Check
}

// User is one item of `broker.users`.
type User struct {
	Username string `yaml:"username"`
	// PasswordHash is a bcrypt hash ($2a$, $2b$ or $2y$), as `gateway
	// passwd` prints. A user without one can only connect with a client
	// certificate on a listener with use_identity_as_username.
	PasswordHash string `yaml:"password_hash"`
	// Password exists only to refuse plaintext passwords with a clear
	// message.
	Password string `yaml:"password"`
	// ACL rules, checked in order; the first whose filter matches decides,
	// and no match means deny. A user without rules has full access.
	ACL []ACLRule `yaml:"acl"`
}

// ACLRule grants or denies access to the topics a filter matches. %u and
// %c in the filter stand for the username and the client id.
type ACLRule struct {
	Filter string `yaml:"filter"`
	// Access is read (subscribe and receive), write (publish), readwrite
	// or deny.
	Access string `yaml:"access"`
}

// isLoopback reports whether a listen address only accepts connections
// from the machine itself.
func isLoopback(address string) bool {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (c *Config) checkListeners(r Reporter) {
	seen := map[string]int{}
	for i := range c.Listeners {
		l := &c.Listeners[i]
		key := fmt.Sprintf("listeners[%d]", i)
		if l.fromListen {
			key = "listen"
		}
		switch l.Type {
		case "tcp", "tls", "ws", "wss":
		case "":
			r.Errorf(key+".type", "listener needs a type: tcp, tls, ws or wss")
		default:
			r.Errorf(key+".type", "unknown listener type %q (use tcp, tls, ws or wss)", l.Type)
		}
		if l.Address == "" {
			r.Errorf(key+".address", "listener needs an address (host:port, e.g. 0.0.0.0:8883)")
		} else if _, _, err := net.SplitHostPort(l.Address); err != nil {
			r.Errorf(key+".address", "address %q is not host:port: %v", l.Address, err)
		} else if prev, dup := seen[l.Address]; dup && !strings.HasSuffix(l.Address, ":0") {
			r.Errorf(key+".address", "listeners[%d] already listens on %s", prev, l.Address)
		}
		seen[l.Address] = i
		secure := l.Type == "tls" || l.Type == "wss"
		if !secure {
			for _, f := range []struct{ key, v string }{{"cert_file", l.CertFile}, {"key_file", l.KeyFile}, {"client_ca_file", l.ClientCAFile}} {
				if f.v != "" {
					r.Errorf(key+"."+f.key, "%s is for tls and wss listeners; this one is %s", f.key, l.Type)
				}
			}
			if l.UseIdentityAsUsername {
				r.Errorf(key+".use_identity_as_username", "use_identity_as_username needs a tls or wss listener with client_ca_file")
			}
			continue
		}
		if l.UseIdentityAsUsername && l.ClientCAFile == "" {
			r.Errorf(key+".use_identity_as_username", "use_identity_as_username needs client_ca_file: without client certificates there is no identity")
		}
		conf, errs := serverTLS(*l)
		for _, e := range errs {
			r.Errorf(key+"."+e.key, "%v", e.err)
		}
		l.tls = conf
	}
}

// identityListener reports whether some listener takes usernames from
// client certificates.
func (c *Config) identityListener() bool {
	for _, l := range c.Listeners {
		if l.UseIdentityAsUsername {
			return true
		}
	}
	return false
}

func (c *Config) checkUsers(r Reporter) {
	names := map[string]int{}
	for i := range c.Users {
		u := &c.Users[i]
		key := fmt.Sprintf("users[%d]", i)
		switch {
		case u.Username == "":
			r.Errorf(key+".username", "user needs a username")
		case strings.ContainsAny(u.Username, "/+#"):
			r.Errorf(key+".username", "username %q contains / + or #: usernames stand for %%u in ACL filters, so they cannot", u.Username)
		}
		if prev, dup := names[u.Username]; dup && u.Username != "" {
			r.Errorf(key+".username", "username %q is already used by users[%d]", u.Username, prev)
		}
		names[u.Username] = i
		if u.Password != "" {
			r.Errorf(key+".password", "plaintext passwords are refused: put a bcrypt hash in password_hash (`gateway passwd` prints one)")
		}
		switch {
		case u.PasswordHash != "":
			if err := checkHash(u.PasswordHash); err != nil {
				r.Errorf(key+".password_hash", "password_hash is not a bcrypt hash (%v): `gateway passwd` prints one; plaintext passwords are refused", err)
			}
		case u.Password == "" && !c.identityListener():
			r.Errorf(key+".password_hash", "user %q has no password_hash and no listener takes usernames from client certificates: it could never connect", u.Username)
		}
		checkACL(r, key+".acl", u.ACL)
	}
	checkACL(r, "anonymous_acl", c.AnonymousACL)
}

// checkHash checks a bcrypt hash entirely: bcrypt.Cost reads only its
// prefix, and a hash damaged further on (cut short in an editor, a
// character lost in a copy) would be accepted and never match any
// password.
func checkHash(h string) error {
	if _, err := bcrypt.Cost([]byte(h)); err != nil {
		return err
	}
	prefix := len("$2a$10$")
	if h[2] == '$' {
		prefix = len("$2$10$") // the first version, without a minor one
	}
	size := prefix + 22 + 31 // the salt and the hash, in bcrypt's base64
	if len(h) != size {
		return fmt.Errorf("%d characters, a bcrypt hash has %d", len(h), size)
	}
	for i := prefix; i < size; i++ {
		c := h[i]
		if !(c == '.' || c == '/' || '0' <= c && c <= '9' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z') {
			return fmt.Errorf("character %d (%q) is not one of bcrypt's", i+1, c)
		}
	}
	return nil
}

func checkACL(r Reporter, key string, rules []ACLRule) {
	for i, rule := range rules {
		k := fmt.Sprintf("%s[%d]", key, i)
		if _, err := compileRule(rule); err != nil {
			r.Errorf(k, "%v", err)
		}
	}
}

// checkAnonymous resolves allow_anonymous and says what it means.
func (c *Config) checkAnonymous(r Reporter) {
	var beyond []string
	for _, l := range c.Listeners {
		if !isLoopback(l.Address) {
			beyond = append(beyond, l.Address)
		}
	}
	where := strings.Join(beyond, ", ")
	switch {
	case c.AllowAnonymous != nil:
		c.anonymous = *c.AllowAnonymous
		c.anonymousReason = "allow_anonymous"
	case len(c.Users) > 0:
		c.anonymousReason = "default: users are configured"
	case len(beyond) > 0:
		c.anonymousReason = "default: a listener is beyond loopback"
		key := "listeners"
		if c.Listeners[0].fromListen {
			key = "listen"
		}
		r.Warnf(key, "the broker listens beyond loopback (%s) with no users: anonymous clients are refused (allow_anonymous defaults to false), so no network client can connect; add users, or set allow_anonymous: true to let any host that reaches it read and publish", where)
	default:
		c.anonymous = true
		c.anonymousReason = "default: no users, loopback only"
	}
	if c.anonymous && len(beyond) > 0 {
		if len(c.AnonymousACL) == 0 {
			r.Warnf("allow_anonymous", "anonymous clients are allowed with full access on %s: any host that reaches it can read and publish (add users, or limit them with anonymous_acl)", where)
		}
	}
	if !c.anonymous && len(c.Users) == 0 && !c.identityListener() && len(beyond) == 0 {
		r.Warnf("allow_anonymous", "anonymous clients are refused and there are no users: no client can connect")
	}
}

// Addresses are the listeners' addresses (after Check).
func (c *Config) Addresses() []string {
	out := make([]string, len(c.Listeners))
	for i, l := range c.Listeners {
		out[i] = l.Address
	}
	return out
}

// Describe prints the broker's listeners and who may connect, for `gateway
// check`; nothing for the plain `listen` shorthand with no security keys.
func (c *Config) Describe(w io.Writer) {
	if len(c.Listeners) == 1 && c.Listeners[0].fromListen && len(c.Users) == 0 && c.AllowAnonymous == nil && len(c.AnonymousACL) == 0 {
		return
	}
	var ls []string
	for _, l := range c.Listeners {
		s := l.Type + " " + l.Address
		if l.ClientCAFile != "" {
			s += " (client certificates required"
			if l.UseIdentityAsUsername {
				s += ", CN is the username"
			}
			s += ")"
		}
		ls = append(ls, s)
	}
	anon := "refused"
	if c.anonymous {
		anon = "allowed with full access"
		if len(c.AnonymousACL) > 0 {
			anon = fmt.Sprintf("allowed, %d ACL rule(s)", len(c.AnonymousACL))
		}
	}
	fmt.Fprintf(w, "broker: %s; %d user(s); anonymous clients %s (%s)\n", strings.Join(ls, ", "), len(c.Users), anon, c.anonymousReason)
}
