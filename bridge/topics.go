package bridge

import (
	"errors"
	"fmt"
	"strings"
)

// maxTopicLen is MQTT's limit on a topic or filter (a 16-bit length).
const maxTopicLen = 65535

// checkFilter reports why f is not a valid MQTT topic filter.
func checkFilter(f string) error {
	if f == "" {
		return errors.New("the filter is empty")
	}
	if len(f) > maxTopicLen {
		return fmt.Errorf("the filter is %d bytes long; MQTT allows %d", len(f), maxTopicLen)
	}
	if strings.ContainsRune(f, 0) {
		return errors.New("the filter contains a NUL character")
	}
	levels := strings.Split(f, "/")
	for i, l := range levels {
		switch {
		case l == "#" && i != len(levels)-1:
			return fmt.Errorf("filter %q: '#' must be the last level", f)
		case l != "#" && strings.Contains(l, "#"):
			return fmt.Errorf("filter %q: '#' must stand alone in its level (e.g. a/#)", f)
		case l != "+" && strings.Contains(l, "+"):
			return fmt.Errorf("filter %q: '+' must stand alone in its level (e.g. a/+/b)", f)
		}
	}
	return nil
}

// checkTopicPart reports why p cannot be part of a topic name (a prefix):
// it must not hold wildcards or NUL.
func checkTopicPart(p string) error {
	switch {
	case strings.ContainsAny(p, "+#"):
		return fmt.Errorf("%q contains a wildcard ('+' or '#'): it must be literal text", p)
	case strings.ContainsRune(p, 0):
		return fmt.Errorf("%q contains a NUL character", p)
	case len(p) > maxTopicLen:
		return fmt.Errorf("%q is longer than MQTT's %d bytes", p, maxTopicLen)
	}
	return nil
}

// literalPrefix is the part of a filter before its first wildcard level.
func literalPrefix(f string) string {
	levels := strings.Split(f, "/")
	for i, l := range levels {
		if l == "+" || l == "#" {
			return strings.Join(levels[:i], "/") + "/"
		}
	}
	return f
}

// match reports whether topic matches filter (MQTT 3.1.1 §4.7): '+' is one
// level, '#' the rest including the parent level itself, and wildcards at
// the start do not match topics beginning with '$'.
func match(filter, topic string) bool {
	if strings.HasPrefix(topic, "$") && (strings.HasPrefix(filter, "+") || strings.HasPrefix(filter, "#")) {
		return false
	}
	for {
		fl, frest, fmore := strings.Cut(filter, "/")
		if fl == "#" {
			return true
		}
		tl, trest, tmore := strings.Cut(topic, "/")
		if fl != "+" && fl != tl {
			return false
		}
		switch {
		case !fmore && !tmore:
			return true
		case !tmore:
			// "a/#" matches "a": the only way a longer filter still matches.
			return frest == "#"
		case !fmore:
			return false
		}
		filter, topic = frest, trest
	}
}

// ForwardTopics returns the cloud topics a local message on topic is sent
// to: one per forward rule that matches it, except those a subscribe rule
// covers (see ForwardRule). Call it on a checked Config.
func (c *Config) ForwardTopics(topic string) []string {
	var out []string
	for _, r := range c.Forward {
		if cloud := r.Prefix + topic; match(r.Filter, topic) && !c.downlinkCovers(cloud) {
			out = append(out, cloud)
		}
	}
	return out
}

// downlinkCovers reports whether a subscribe rule receives the cloud topic:
// the forward rules leave such topics alone.
func (c *Config) downlinkCovers(cloud string) bool {
	for i := range c.Subscribe {
		if match(c.Subscribe[i].Filter, cloud) {
			return true
		}
	}
	return false
}

// localTopic maps a cloud topic received by a subscribe rule to its local
// topic; ok is false when the topic does not carry the rule's prefix or
// nothing is left after stripping it.
func (r *SubscribeRule) localTopic(cloud string) (string, bool) {
	local, ok := strings.CutPrefix(cloud, r.StripPrefix)
	if !ok || local == "" {
		return "", false
	}
	return local, true
}
