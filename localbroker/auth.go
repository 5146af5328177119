package localbroker

import (
	"crypto/tls"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// authHook authenticates clients (bcrypt passwords, or the client
// certificate's CN on identity listeners) and applies the ACLs. mochi asks
// every hook and admits when any one says yes, so it must be the only hook
// that provides these events.
//
// Its rules are one authState, swapped whole by a reload (reconfigure.go):
// every decision loads the state once, so it never mixes two configs.
type authHook struct {
	mqtt.HookBase
	state    atomic.Pointer[authState]
	log      *slog.Logger
	stats    *secStats
	refusals limiter

	// b disconnects the clients a reload revoked (reconfigure.go).
	b *Broker
	// wills holds the will topic of each connected client that has a
	// will (*mqtt.Client -> string), for a reload to check.
	wills sync.Map
}

// authState is what authHook decides by: one config's users, anonymous
// access and identity listeners.
type authState struct {
	users     *Users
	anonymous bool
	anonACL   acl
	identity  map[string]bool // listener id -> CN is the username
}

// denyAll is the ACL of a client whose username is no longer a user (a
// reload revoked it, and disconnects it): nothing.
var denyAll = acl{}

// secStats are the security counters.
type secStats struct {
	authFailures, publishesDenied, subscriptionsRefused atomic.Int64
}

func (*authHook) ID() string { return "fieldbridge-auth" }

func (*authHook) Provides(b byte) bool {
	switch b {
	case mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnPublish, mqtt.OnSubscribed,
		mqtt.OnSessionEstablished, mqtt.OnDisconnect:
		return true
	}
	return false
}

// OnConnectAuthenticate admits or refuses a CONNECT.
func (h *authHook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	st := h.state.Load()
	reason := st.authenticate(cl, pk)
	if reason == "" && pk.Connect.WillFlag {
		// mochi publishes wills without an ACL check: a read-only account
		// must not reach …/set through its will.
		a, user := st.aclFor(cl)
		if !a.canPublish(pk.Connect.WillTopic, user, cl.ID) {
			reason = "the will topic " + pk.Connect.WillTopic + " is not writable for this client"
		}
	}
	if reason == "" {
		return true
	}
	h.stats.authFailures.Add(1)
	if n, ok := h.refusals.allow(time.Now()); ok {
		h.log.Info("mqtt client refused", "reason", reason, "client", cl.ID, "username", string(pk.Connect.Username),
			"remote", cl.Net.Remote, "listener", cl.Net.Listener, "refusals_not_logged", n)
	}
	return false
}

// authenticate returns why a client is refused, or "". It sets the
// client's username to what the ACLs know it by.
func (s *authState) authenticate(cl *mqtt.Client, pk packets.Packet) string {
	reason, _, name, set := s.decide(cl, pk)
	if reason == "" && set {
		cl.Properties.Username = name
	}
	return reason
}

// admits is authenticate for a client admitted already, changing nothing;
// revoke says the refusal is for good (no such user, or no anonymous
// clients), not for the credentials.
func (s *authState) admits(cl *mqtt.Client, pk packets.Packet) (reason string, revoke bool) {
	reason, revoke, _, _ = s.decide(cl, pk)
	return reason, revoke
}

// decide is the authentication: why a client is refused ("" if admitted),
// whether for good, and the username to set, if set.
func (s *authState) decide(cl *mqtt.Client, pk packets.Packet) (reason string, revoke bool, name []byte, set bool) {
	if s.identity[cl.Net.Listener] {
		cn := peerCN(cl)
		if cn == "" {
			return "no client certificate common name", false, nil, false
		}
		if _, ok := s.users.lookup(cn); !ok {
			return "certificate common name " + cn + " is not a configured user", true, nil, false
		}
		return "", false, []byte(cn), true
	}
	username := string(pk.Connect.Username)
	if username == "" {
		switch {
		case len(pk.Connect.Password) > 0:
			return "a password without a username", false, nil, false
		case !s.anonymous:
			return "anonymous clients are refused (no username)", true, nil, false
		}
		return "", false, nil, false
	}
	if s.users.Len() == 0 {
		if !s.anonymous {
			return "anonymous clients are refused and there are no users", true, nil, false
		}
		return "", false, nil, true // no accounts: a username means nothing
	}
	if _, ok := s.users.lookup(username); !ok {
		// verify costs the same for unknown users: timing tells nothing.
		s.users.verify(username, string(pk.Connect.Password))
		return "wrong username or password", true, nil, false
	}
	if _, ok := s.users.verify(username, string(pk.Connect.Password)); !ok {
		return "wrong username or password", false, nil, false
	}
	return "", false, nil, false
}

// peerCN is the common name of the client certificate, if any.
func peerCN(cl *mqtt.Client) string {
	tc, ok := cl.Net.Conn.(interface{ ConnectionState() tls.ConnectionState })
	if !ok {
		return ""
	}
	st := tc.ConnectionState()
	if len(st.PeerCertificates) == 0 {
		return ""
	}
	return st.PeerCertificates[0].Subject.CommonName
}

// aclFor returns a connected client's rules and the username for %u. A
// username that is not (or no longer) a user gets nothing: it must not
// fall back to the anonymous rules.
func (s *authState) aclFor(cl *mqtt.Client) (acl, string) {
	if len(cl.Properties.Username) > 0 {
		if a, ok := s.users.byName[string(cl.Properties.Username)]; ok {
			return a.acl, a.name
		}
		return denyAll, ""
	}
	return s.anonACL, ""
}

// OnACLCheck decides subscriptions, the delivery of each message, and
// publishes of MQTT 5 clients (mochi answers those with reason code 0x87).
func (h *authHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	a, user := h.state.Load().aclFor(cl)
	if !write {
		return a.canRead(topic, user, cl.ID)
	}
	if cl.Properties.ProtocolVersion < 5 {
		// Decided in OnPublish: refused here, mochi would disconnect a
		// 3.1.1 client that publishes at QoS 1 or 2.
		return true
	}
	if a.canPublish(topic, user, cl.ID) {
		return true
	}
	h.stats.publishesDenied.Add(1)
	return false
}

// OnPublish drops the denied publishes of MQTT 3.1.1 clients. They are
// acknowledged as usual (MQTT-3.3.5-2 allows it; the protocol has no way to
// say no), so a client is not disconnected and reconnecting in a loop.
func (h *authHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline || cl.Properties.ProtocolVersion >= 5 {
		return pk, nil
	}
	a, user := h.state.Load().aclFor(cl)
	if a.canPublish(pk.TopicName, user, cl.ID) {
		return pk, nil
	}
	h.stats.publishesDenied.Add(1)
	return pk, packets.CodeSuccessIgnore
}

// OnSubscribed counts refused subscriptions.
func (h *authHook) OnSubscribed(_ *mqtt.Client, _ packets.Packet, codes []byte) {
	for _, c := range codes {
		if c >= packets.ErrUnspecifiedError.Code {
			h.stats.subscriptionsRefused.Add(1)
		}
	}
}

// limiter lets one log line through per period and counts the others, so
// that a client retrying a wrong password every second costs one line in
// ten seconds.
type limiter struct {
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

const logEvery = 10 * time.Second

func (l *limiter) allow(now time.Time) (suppressed int, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() && now.Sub(l.last) < logEvery {
		l.suppressed++
		return 0, false
	}
	n := l.suppressed
	l.last, l.suppressed = now, 0
	return n, true
}
