package config

import (
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// quotedScalar reports (and returns true for) a number or boolean written
// in quotes: `scale: "0.1"` is a string in YAML, and a strict config does
// not guess. A quoted ${ENV} reference is fine: only the environment can
// say what it holds.
func (d *decoder) quotedScalar(n *yaml.Node, path, what string) bool {
	if n.Kind != yaml.ScalarNode || (n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle)) == 0 || strings.Contains(n.Value, "${") {
		return false
	}
	d.c.errorf(path, "expected %s, found the string %q: write it without quotes", what, n.Value)
	return true
}
