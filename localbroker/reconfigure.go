package localbroker

import (
	"bytes"
	"crypto/tls"
	"math"
	"net"
	"reflect"
	"sort"
	"strings"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Reconfiguring the running broker (a SIGHUP reload). The mochi server is
// never replaced: retained values, sessions and the in-process
// subscriptions (the publisher's, the bridge's) live on, and so do the
// connections of every listener the reload leaves as it was. What changes:
//
//   - Listeners are matched by type and address. A new one is bound in
//     Prepare, so that a busy port rejects the reload; a removed one stops
//     and its clients are disconnected (MQTT 5: reason 0x98, administrative
//     action). One that stays keeps its socket and its clients; its
//     certificate files are read again, so a renewed certificate is served
//     to the next handshakes. If its client CAs or use_identity_as_username
//     changed, its clients are disconnected, to come back under the new rules.
//   - Users, ACLs, allow_anonymous and anonymous_acl apply at once, to new
//     connections and to every message of the connected ones (mochi checks
//     each delivery and each publish): a user cut from readwrite to read
//     publishes nothing more from the next packet on. A connected client
//     whose user was removed, or an anonymous one when anonymous clients
//     are refused now, is disconnected (MQTT 5: 0x87, not authorized) and
//     its session deleted, its will not sent: it loses access at once. A
//     user whose password changed is disconnected, its session kept, so
//     that who knows the new password can resume it. A client whose will
//     topic its new ACL does not let it publish to is disconnected, its
//     will not sent.
//   - connect_timeout, message_expiry and max_clients apply at once;
//     max_packet_size, max_inflight, max_pending and session_expiry are
//     mochi's per connection, read without synchronisation: they take
//     effect at the next start, and Commit names them.

// Change is a reconfiguration prepared against the running broker: its new
// listeners are bound, not yet serving. Commit applies it; Abort leaves the
// broker as it was. One of them must be called.
type Change struct {
	b       *Broker
	next    Config
	ls      []*listener // next's listeners, in config order
	added   []*listener
	removed []*listener
	// stopped are removed listeners that stopped accepting in Prepare,
	// because an added one needed their port.
	stopped   map[*listener]bool
	newTLS    map[*listener]*tlsChange // kept tls and wss listeners
	tightened []*listener              // kept: client certificate rules changed
	state     *authState
	done      bool
}

type tlsChange struct {
	conf    *tls.Config
	renewed bool
}

// Prepare checks next (a config that passed Check) against the running
// broker and binds the listeners it adds. On error nothing changed; a
// listener that cannot open its address is a *ListenError.
func (b *Broker) Prepare(next Config) (*Change, error) {
	b.mu.Lock()
	old := b.listeners
	b.mu.Unlock()
	c := &Change{b: b, next: next, ls: make([]*listener, len(next.Listeners)),
		stopped: map[*listener]bool{}, newTLS: map[*listener]*tlsChange{}}

	pool := map[string][]*listener{}
	for _, l := range old {
		k := listenerKey(l.conf)
		pool[k] = append(pool[k], l)
	}
	var fresh []int
	for i, lc := range next.Listeners {
		k := listenerKey(lc)
		q := pool[k]
		if len(q) == 0 {
			fresh = append(fresh, i)
			continue
		}
		l := q[0]
		pool[k] = q[1:]
		kept := &listener{id: l.id, conf: lc, g: l.g, tls: l.tls}
		if l.tls != nil {
			conf, err := loadedTLS(lc)
			if err != nil {
				return nil, listenError(i, lc, err)
			}
			cur := l.tls.cur.Load()
			c.newTLS[kept] = &tlsChange{conf: conf, renewed: !sameCertificates(cur, conf)}
			if lc.ClientCAFile != l.conf.ClientCAFile || !cur.ClientCAs.Equal(conf.ClientCAs) {
				c.tightened = append(c.tightened, kept)
			}
		}
		if lc.UseIdentityAsUsername != l.conf.UseIdentityAsUsername && !c.isTightened(kept) {
			c.tightened = append(c.tightened, kept)
		}
		c.ls[i] = kept
	}
	for _, l := range old { // in their order, for the log
		k := listenerKey(l.conf)
		for _, r := range pool[k] {
			if r == l {
				c.removed = append(c.removed, l)
			}
		}
	}
	for _, i := range fresh {
		lc := next.Listeners[i]
		for _, r := range c.removed {
			// 127.0.0.1:1883 becoming 0.0.0.0:1883, or tcp becoming tls
			// on the same port: the old socket must go first.
			if !c.stopped[r] && samePort(r.conf.Address, lc.Address) {
				r.g.stopAccepting()
				c.stopped[r] = true
			}
		}
		l, err := b.openListener(lc)
		if err != nil {
			c.Abort()
			return nil, listenError(i, lc, err)
		}
		c.ls[i] = l
		c.added = append(c.added, l)
	}
	st, err := newAuthState(next, c.ls, b.auth.state.Load())
	if err != nil {
		c.Abort()
		return nil, err
	}
	c.state = st
	return c, nil
}

func (c *Change) isTightened(l *listener) bool {
	for _, t := range c.tightened {
		if t == l {
			return true
		}
	}
	return false
}

// listenerKey identifies a listener across configs: its socket.
func listenerKey(l ListenerConfig) string { return l.Type + " " + l.Address }

// samePort reports whether two listen addresses name the same port.
func samePort(a, b string) bool {
	_, pa, errA := net.SplitHostPort(a)
	_, pb, errB := net.SplitHostPort(b)
	return errA == nil && errB == nil && pa == pb && pa != "0" && pa != ""
}

// sameCertificates reports whether two TLS configs serve the same chain.
func sameCertificates(a, b *tls.Config) bool {
	if len(a.Certificates) != len(b.Certificates) {
		return false
	}
	for i := range a.Certificates {
		x, y := a.Certificates[i].Certificate, b.Certificates[i].Certificate
		if len(x) != len(y) {
			return false
		}
		for j := range x {
			if !bytes.Equal(x[j], y[j]) {
				return false
			}
		}
	}
	return true
}

// Abort undoes Prepare: the listeners it bound close, and those it stopped
// for their port listen again.
func (c *Change) Abort() {
	if c.done {
		return
	}
	c.done = true
	for _, l := range c.added {
		l.g.shut(packets.ErrServerShuttingDown)
		c.b.srv.Listeners.Delete(l.id)
	}
	for _, r := range c.removed {
		if c.stopped[r] {
			c.b.restore(r)
		}
	}
}

// restore opens a listener that Prepare stopped again, under its id, so its
// connected clients still belong to it.
func (b *Broker) restore(l *listener) {
	g, err := b.newGuard(l, l.g.conns)
	if err == nil {
		old := l.g
		b.srv.Listeners.Delete(l.id)
		if err = b.srv.AddListener(g); err != nil {
			b.srv.Listeners.Add(old)
		}
	}
	if err != nil {
		b.log.Error("the reload was rejected, but a listener it had stopped cannot listen again: it stays closed until the next reload or restart",
			"type", l.conf.Type, "addr", l.conf.Address, "err", err)
		return
	}
	b.mu.Lock()
	l.g = g
	b.mu.Unlock()
	b.srv.Listeners.Serve(l.id, b.srv.EstablishConnection)
}

// Commit applies the change. It returns the settings that changed but take
// effect only at the next start, by config key.
func (c *Change) Commit() (atNextStart []string) {
	if c.done {
		return nil
	}
	c.done = true
	b := c.b
	prev := b.auth.state.Load()
	b.mu.Lock()
	prevCfg := b.cfg
	b.mu.Unlock()

	var renewed []string
	for l, t := range c.newTLS {
		l.tls.cur.Store(t.conf)
		if t.renewed {
			renewed = append(renewed, describe(l))
		}
	}
	b.auth.state.Store(c.state)
	b.setLimits(c.next)
	for _, l := range c.added {
		b.srv.Listeners.Serve(l.id, b.srv.EstablishConnection)
		b.log.Info("mqtt broker listening", "type", l.conf.Type, "addr", l.g.Address())
	}
	dropped := 0
	for _, r := range c.removed {
		dropped += r.g.shut(packets.ErrAdministrativeAction)
		b.srv.Listeners.Delete(r.id)
		b.log.Info("mqtt broker listener closed", "type", r.conf.Type, "addr", r.g.Address())
	}
	for _, l := range c.tightened {
		n := l.g.dropClients(packets.ErrAdministrativeAction, false)
		dropped += n
		b.log.Info("mqtt broker listener: client certificate rules changed; its clients were disconnected to connect again under them",
			"type", l.conf.Type, "addr", l.g.Address(), "clients", n)
	}
	revoked := b.revalidate(prev, c.state)
	b.mu.Lock()
	b.listeners, b.cfg = c.ls, c.next
	b.mu.Unlock()

	atNextStart = restartOnly(b.srv.Options.Capabilities, c.next)
	if len(c.added)+len(c.removed)+len(c.tightened)+len(renewed)+revoked > 0 || !sameRules(prevCfg, c.next) || !sameLimits(prevCfg, c.next) {
		sort.Strings(renewed)
		b.log.Info("broker reconfigured",
			"listeners", strings.Join(describeAll(c.ls), ", "),
			"added", len(c.added), "removed", len(c.removed), "certificates_renewed", strings.Join(renewed, ", "),
			"users", c.state.users.Len(), "anonymous", c.state.anonymous,
			"clients_disconnected", dropped+revoked)
	}
	return atNextStart
}

func describe(l *listener) string { return l.conf.Type + " " + l.g.Address() }

func describeAll(ls []*listener) []string {
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = describe(l)
	}
	return out
}

// sameRules reports whether two configs admit and allow the same.
func sameRules(a, b Config) bool {
	return a.anonymous == b.anonymous && reflect.DeepEqual(a.Users, b.Users) && reflect.DeepEqual(a.AnonymousACL, b.AnonymousACL)
}

func sameLimits(a, b Config) bool {
	return a.MaxClients == b.MaxClients && a.MaxPacketSize == b.MaxPacketSize && a.MaxInflight == b.MaxInflight &&
		a.MaxPending == b.MaxPending && a.SessionExpiry == b.SessionExpiry && a.MessageExpiry == b.MessageExpiry &&
		a.ConnectTimeout == b.ConnectTimeout
}

// restartOnly names the limits of next that differ from mochi's in force.
func restartOnly(caps *mqtt.Capabilities, next Config) []string {
	var out []string
	if caps.MaximumPacketSize != uint32(next.MaxPacketSize) {
		out = append(out, "broker.max_packet_size")
	}
	if caps.MaximumInflight != uint16(min(next.MaxInflight, math.MaxUint16)) {
		out = append(out, "broker.max_inflight")
	}
	if caps.MaximumClientWritesPending != int32(next.MaxPending) {
		out = append(out, "broker.max_pending")
	}
	if caps.MaximumSessionExpiryInterval != uint32(next.SessionExpiry.Seconds()) {
		out = append(out, "broker.session_expiry")
	}
	return out
}

// revalidate checks every client and session against the new rules, and
// dismisses those they no longer admit. It returns how many were
// disconnected.
func (b *Broker) revalidate(prev, next *authState) int {
	n := 0
	for _, cl := range b.srv.Clients.GetAll() {
		if cl.Net.Inline {
			continue
		}
		willTopic, hasWill := b.auth.will(cl)
		reason, revoke := next.recheck(prev, cl, willTopic, hasWill)
		if reason == "" {
			continue
		}
		if b.dismiss(cl, reason, revoke) {
			n++
		}
	}
	return n
}

// recheck says why the rules of s no longer admit a client admitted under
// prev ("" if they do), and whether its access is revoked (the user is
// gone, or anonymous clients are refused) rather than its credentials or
// its will out of date. The password is not known here: a changed hash
// counts as out of date. willTopic is the client's will, if hasWill.
func (s *authState) recheck(prev *authState, cl *mqtt.Client, willTopic string, hasWill bool) (reason string, revoke bool) {
	name := string(cl.Properties.Username)
	switch {
	case prev.identity[cl.Net.Listener]:
		if _, ok := s.users.byName[name]; !ok {
			return "its certificate's user " + name + " is no longer in broker.users", true
		}
	case name != "":
		a, ok := s.users.byName[name]
		if !ok {
			return "user " + name + " was removed from broker.users", true
		}
		if o, ok := prev.users.byName[name]; ok && !bytes.Equal(o.hash, a.hash) {
			return "the password of user " + name + " changed", false
		}
	case !s.anonymous:
		return "anonymous clients are refused now", true
	}
	if !hasWill || cl.Closed() {
		return "", false
	}
	// Only a client whose rules changed can have lost its will topic.
	before, _ := prev.aclFor(cl)
	after, user := s.aclFor(cl)
	if !sameACL(before, after) && !after.canPublish(willTopic, user, cl.ID) {
		return "its will topic " + willTopic + " is not writable for it any more", false
	}
	return "", false
}

func sameACL(a, b acl) bool {
	if (a == nil) != (b == nil) || len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].filter != b[i].filter || a[i].access != b[i].access {
			return false
		}
	}
	return true
}

// dismiss disconnects a client the rules no longer admit (MQTT 5: 0x87,
// not authorized), without its will; a revoked one also loses its session,
// so that nothing is kept or queued for it. It reports whether a
// connection was closed.
func (b *Broker) dismiss(cl *mqtt.Client, reason string, revoke bool) bool {
	if _, hasWill := b.auth.will(cl); hasWill {
		// mochi clears the whole Will without synchronisation when a
		// client disconnects by itself: touched only for clients that
		// have one, which a clean disconnect at this very instant would
		// have cleared anyway.
		atomic.StoreUint32(&cl.Properties.Will.Flag, 0)
	}
	online := !cl.Closed()
	if online {
		_ = b.srv.DisconnectClient(cl, packets.ErrNotAuthorized)
	}
	if revoke {
		b.dropSession(cl)
	}
	switch {
	case online:
		b.log.Info("mqtt client disconnected: the reloaded config no longer admits it", "reason", reason,
			"client", cl.ID, "remote", cl.Net.Remote, "session_deleted", revoke)
	case revoke:
		b.log.Info("mqtt session deleted: the reloaded config no longer admits its client", "reason", reason, "client", cl.ID)
	}
	return online
}

// dropSession deletes a client's session: its subscriptions and what is
// queued for it.
func (b *Broker) dropSession(cl *mqtt.Client) {
	if cur, ok := b.srv.Clients.Get(cl.ID); !ok || cur != cl {
		return // already gone, or taken over by a new connection
	}
	b.srv.UnsubscribeClient(cl)
	cl.ClearInflights()
	b.srv.Clients.Delete(cl.ID)
}

// OnSessionEstablished checks a new connection again, under the rules in
// force now: a reload between its authentication and its joining the
// client list (which Commit scans) must not let it in under the old ones.
// Passwords that verified a moment ago are remembered, so this costs no
// bcrypt unless the user's hash just changed.
func (h *authHook) OnSessionEstablished(cl *mqtt.Client, pk packets.Packet) {
	// Recorded before the rules are loaded: a reload that stores new rules
	// after this load scans the client list (which has this client) and
	// finds its will here.
	if pk.Connect.WillFlag {
		h.wills.Store(cl, pk.Connect.WillTopic)
	}
	st := h.state.Load()
	reason, revoke := st.admits(cl, pk)
	if reason == "" && pk.Connect.WillFlag {
		if a, user := st.aclFor(cl); !a.canPublish(pk.Connect.WillTopic, user, cl.ID) {
			reason = "its will topic " + pk.Connect.WillTopic + " is not writable for it any more"
		}
	}
	if reason != "" {
		h.b.dismiss(cl, reason, revoke)
	}
}

// OnDisconnect forgets the client's will (mochi has sent or cleared it).
func (h *authHook) OnDisconnect(cl *mqtt.Client, _ error, _ bool) { h.wills.Delete(cl) }

// will is the will topic of a connected client, if it has a will. A reload
// reads it here, not in the client's properties, which mochi overwrites
// without synchronisation when the client disconnects.
func (h *authHook) will(cl *mqtt.Client) (topic string, ok bool) {
	v, ok := h.wills.Load(cl)
	if !ok {
		return "", false
	}
	return v.(string), true
}
