package localbroker

import (
	"fmt"
	"strings"
)

// access is what an ACL rule grants.
type access uint8

const (
	accessDeny access = iota
	accessRead
	accessWrite
	accessReadWrite
)

func (a access) canRead() bool  { return a == accessRead || a == accessReadWrite }
func (a access) canWrite() bool { return a == accessWrite || a == accessReadWrite }

// level kinds of a compiled filter.
const (
	levelLiteral = iota
	levelPlus
	levelHash
	levelTemplate // a literal containing %u or %c
)

// part is a piece of a template level: a literal, or the username or the
// client id.
type part struct {
	lit  string
	kind byte // 0 literal, 'u' username, 'c' client id
}

type level struct {
	kind  int
	lit   string
	parts []part
}

// rule is an ACL rule compiled once at start: matching a topic against it
// allocates nothing, %u and %c are compared in place.
type rule struct {
	filter string
	levels []level
	access access
}

// acl is an ordered rule list; nil means full access.
type acl []rule

func compileRule(r ACLRule) (rule, error) {
	out := rule{filter: r.Filter}
	switch strings.ToLower(r.Access) {
	case "read":
		out.access = accessRead
	case "write":
		out.access = accessWrite
	case "readwrite":
		out.access = accessReadWrite
	case "deny":
		out.access = accessDeny
	case "":
		return out, fmt.Errorf("ACL rule needs access: read, write, readwrite or deny")
	default:
		return out, fmt.Errorf("unknown access %q (use read, write, readwrite or deny)", r.Access)
	}
	if r.Filter == "" {
		return out, fmt.Errorf("ACL rule needs a filter (e.g. plant1/#)")
	}
	segs := strings.Split(r.Filter, "/")
	for i, s := range segs {
		switch {
		case s == "#":
			if i != len(segs)-1 {
				return out, fmt.Errorf("filter %q: # must be the last level", r.Filter)
			}
			out.levels = append(out.levels, level{kind: levelHash})
		case s == "+":
			out.levels = append(out.levels, level{kind: levelPlus})
		case strings.ContainsAny(s, "+#"):
			return out, fmt.Errorf("filter %q: + and # must stand alone in a level", r.Filter)
		case strings.Contains(s, "%u") || strings.Contains(s, "%c"):
			out.levels = append(out.levels, level{kind: levelTemplate, parts: templateParts(s)})
		default:
			out.levels = append(out.levels, level{kind: levelLiteral, lit: s})
		}
	}
	return out, nil
}

func templateParts(s string) []part {
	var parts []part
	for s != "" {
		i := strings.Index(s, "%")
		if i < 0 || i == len(s)-1 {
			return append(parts, part{lit: s})
		}
		switch s[i+1] {
		case 'u', 'c':
			if i > 0 {
				parts = append(parts, part{lit: s[:i]})
			}
			parts = append(parts, part{kind: s[i+1]})
			s = s[i+2:]
		default:
			parts = append(parts, part{lit: s[:i+1]})
			s = s[i+1:]
		}
	}
	return parts
}

func compileACL(rules []ACLRule) (acl, error) {
	if len(rules) == 0 {
		return nil, nil
	}
	out := make(acl, 0, len(rules))
	for _, r := range rules {
		c, err := compileRule(r)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// equal reports whether the template, with %u and %c replaced, is seg. A
// username or client id that is empty or holds a wildcard or a slash never
// matches: it must not widen what the rule grants.
func (l *level) equal(seg, user, client string) bool {
	for _, p := range l.parts {
		v := p.lit
		switch p.kind {
		case 'u':
			v = user
		case 'c':
			v = client
		}
		if p.kind != 0 && (v == "" || strings.ContainsAny(v, "/+#")) {
			return false
		}
		if !strings.HasPrefix(seg, v) {
			return false
		}
		seg = seg[len(v):]
	}
	return seg == ""
}

// next splits the next level off s; done reports that it was the last.
func next(s string, pos int) (seg string, rest int, done bool) {
	if i := strings.IndexByte(s[pos:], '/'); i >= 0 {
		return s[pos : pos+i], pos + i + 1, false
	}
	return s[pos:], len(s), true
}

// matches reports whether the rule's filter matches a topic name.
// Wildcards in the first level do not match topics that start with $
// (MQTT-4.7.2-1), so "#" grants nothing under $SYS.
func (r *rule) matches(topic, user, client string) bool {
	if strings.HasPrefix(topic, "$") && len(r.levels) > 0 && (r.levels[0].kind == levelPlus || r.levels[0].kind == levelHash) {
		return false
	}
	pos, done := 0, false
	for i := range r.levels {
		l := &r.levels[i]
		if l.kind == levelHash {
			return true // also the parent level: "a/#" matches "a"
		}
		if done {
			return false
		}
		var seg string
		seg, pos, done = next(topic, pos)
		switch l.kind {
		case levelLiteral:
			if seg != l.lit {
				return false
			}
		case levelTemplate:
			if !l.equal(seg, user, client) {
				return false
			}
		}
	}
	return done
}

// covers reports whether every topic a subscription filter can match is
// matched by the rule's filter.
func (r *rule) covers(filter, user, client string) bool {
	if strings.HasPrefix(filter, "$") && len(r.levels) > 0 && (r.levels[0].kind == levelPlus || r.levels[0].kind == levelHash) {
		return false
	}
	pos, done := 0, false
	for i := range r.levels {
		l := &r.levels[i]
		if l.kind == levelHash {
			return true
		}
		if done {
			return false
		}
		var seg string
		seg, pos, done = next(filter, pos)
		if seg == "#" {
			return false // the filter reaches further than this level
		}
		switch l.kind {
		case levelLiteral:
			if seg != l.lit {
				return false
			}
		case levelTemplate:
			if seg == "+" || !l.equal(seg, user, client) {
				return false
			}
		}
	}
	return done
}

// canPublish decides a publish to topic: the first matching rule.
func (a acl) canPublish(topic, user, client string) bool {
	if a == nil {
		return true
	}
	for i := range a {
		if a[i].matches(topic, user, client) {
			return a[i].access.canWrite()
		}
	}
	return false
}

// canRead decides a subscription (a filter with wildcards: the first rule
// that covers all of it) or the delivery of a message (a topic: the first
// rule that matches it). A subscription that is granted still has each
// message checked at delivery, so a deny rule inside it holds.
func (a acl) canRead(topicOrFilter, user, client string) bool {
	if a == nil {
		return true
	}
	if strings.HasPrefix(topicOrFilter, "$share/") {
		// A shared subscription: $share/{group}/{filter}.
		rest := topicOrFilter[len("$share/"):]
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			topicOrFilter = rest[i+1:]
		}
	}
	wild := strings.ContainsAny(topicOrFilter, "+#")
	for i := range a {
		if wild && a[i].covers(topicOrFilter, user, client) || !wild && a[i].matches(topicOrFilter, user, client) {
			return a[i].access.canRead()
		}
	}
	return false
}
