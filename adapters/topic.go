package adapters

import (
	"errors"
	"fmt"
	"strings"
)

// DefaultTopic is the topic template used when neither the point nor its
// device sets one.
const DefaultTopic = "{gateway}/{device}/{point}"

// Reserved words that may not be used as point names because the gateway
// publishes or subscribes there itself: a device's availability, and the
// command topic suffix used for writes.
var reservedPointNames = map[string]bool{"availability": true, "set": true}

// Reserved device names: the gateway's own status topic lives at
// {gateway}/status, and $-prefixed levels are broker-internal.
var reservedDeviceNames = map[string]bool{"status": true}

// TopicVars are the variables a topic template may use.
type TopicVars struct {
	Gateway, Adapter, Device, Point string
}

// RenderTopic renders a topic template once, at load time. The variables are
// {gateway} (also spelled {gateway.id}), {adapter} (also {bus}), {device} and
// {point}. The result must be a valid MQTT topic name with no wildcard and no
// empty level.
func RenderTopic(tmpl string, v TopicVars) (string, error) {
	var b strings.Builder
	rest := tmpl
	for {
		i := strings.IndexAny(rest, "{}")
		if i < 0 {
			b.WriteString(rest)
			break
		}
		if rest[i] == '}' {
			return "", fmt.Errorf("topic template %q: unmatched '}'", tmpl)
		}
		b.WriteString(rest[:i])
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			return "", fmt.Errorf("topic template %q: unclosed '{'", tmpl)
		}
		name := rest[i+1 : i+j]
		switch name {
		case "gateway", "gateway.id":
			b.WriteString(v.Gateway)
		case "adapter", "bus":
			b.WriteString(v.Adapter)
		case "device":
			b.WriteString(v.Device)
		case "point":
			b.WriteString(v.Point)
		default:
			return "", fmt.Errorf("topic template %q: unknown variable {%s} (use {gateway}, {adapter}, {device}, {point})", tmpl, name)
		}
		rest = rest[i+j+1:]
	}
	topic := b.String()
	if err := CheckTopic(topic); err != nil {
		return "", fmt.Errorf("topic template %q renders %q: %w", tmpl, topic, err)
	}
	if strings.HasSuffix(topic, "/set") || strings.HasSuffix(topic, "/set/result") {
		// Retained values there would be taken for commands.
		return "", fmt.Errorf("topic template %q renders %q: topics ending in /set and /set/result are for commands and their results", tmpl, topic)
	}
	return topic, nil
}

// CheckTopic reports why topic is not a valid MQTT topic name for values.
func CheckTopic(topic string) error {
	switch {
	case topic == "":
		return errors.New("empty topic")
	case len(topic) > 65535:
		return errors.New("topic longer than 65535 bytes")
	case strings.ContainsAny(topic, "+#"):
		return errors.New("topic contains a wildcard ('+' or '#')")
	case strings.ContainsRune(topic, 0):
		return errors.New("topic contains a NUL character")
	case strings.HasPrefix(topic, "$"):
		return errors.New("topic starts with '$' (reserved for the broker)")
	}
	for _, level := range strings.Split(topic, "/") {
		if level == "" {
			return errors.New("topic has an empty level")
		}
	}
	return nil
}

// CheckName reports why name cannot name a gateway, adapter, device or point:
// names become topic levels, so they are restricted to letters, digits, '-'
// and '_'.
func CheckName(name string) error {
	if name == "" {
		return errors.New("name is empty")
	}
	if len(name) > 64 {
		return errors.New("name is longer than 64 characters")
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("name %q contains %q: use only letters, digits, '-' and '_'", name, c)
		}
	}
	return nil
}

// CheckPointName is CheckName plus the reserved point names.
func CheckPointName(name string) error {
	if err := CheckName(name); err != nil {
		return err
	}
	if reservedPointNames[strings.ToLower(name)] {
		return fmt.Errorf("point name %q is reserved (the gateway publishes {device}/availability and uses {point}/set for commands)", name)
	}
	return nil
}

// CheckDeviceName is CheckName plus the reserved device names.
func CheckDeviceName(name string) error {
	if err := CheckName(name); err != nil {
		return err
	}
	if reservedDeviceNames[strings.ToLower(name)] {
		return fmt.Errorf("device name %q is reserved ({gateway}/status is the gateway's status topic)", name)
	}
	return nil
}
