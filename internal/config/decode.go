package config

import (
	"encoding"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	yaml "go.yaml.in/yaml/v3"
)

// decoder maps a YAML node tree onto Go values strictly: unknown keys,
// duplicate keys, wrong types and out-of-range numbers are all reported —
// every one of them, each with its position — instead of stopping at the
// first, as library decoders do. A technician editing the file on a factory
// floor gets the whole list at once.
type decoder struct {
	c     *collector
	env   func(string) (string, bool)
	depth int
	nodes int // decoded so far, bounded: aliases can multiply a small file
}

// maxNodes bounds the work of one load. A real config of 10,000 points has
// about 100,000 nodes; a chain of aliases that expands to more is a mistake
// (or a "billion laughs"), not a config.
const maxNodes = 2_000_000

// nodeDecoder lets a type take over decoding of its own node (used for
// adapter entries, whose Go type depends on their `type:` key).
type nodeDecoder interface {
	decodeNode(d *decoder, n *yaml.Node, path string)
}

var (
	durationType      = reflect.TypeOf(time.Duration(0))
	textUnmarshalType = reflect.TypeOf((*encoding.TextUnmarshaler)(nil)).Elem()
	nodeDecoderType   = reflect.TypeOf((*nodeDecoder)(nil)).Elem()
)

func posOf(n *yaml.Node) pos {
	if n == nil {
		return pos{}
	}
	return pos{n.Line, n.Column}
}

// resolve strips documents and follows aliases.
func (d *decoder) resolve(n *yaml.Node) *yaml.Node {
	for i := 0; i < 32 && n != nil; i++ {
		switch {
		case n.Kind == yaml.DocumentNode && len(n.Content) == 1:
			n = n.Content[0]
		case n.Kind == yaml.AliasNode:
			n = n.Alias
		default:
			return n
		}
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

// count books n more decoded values; past maxNodes it reports once and
// says stop.
func (d *decoder) count(path string, n int) bool {
	if d.nodes > maxNodes {
		return false
	}
	if d.nodes += n; d.nodes > maxNodes {
		d.c.errorf(path, "the config expands to more than %d values (aliases referring to aliases?)", maxNodes)
		return false
	}
	return true
}

// decode decodes n into v (which must be settable), recording positions and
// problems under path.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	d.c.at(path, posOf(n))
	d.depth++
	defer func() { d.depth-- }()
	if d.depth > 64 {
		d.c.errorf(path, "nesting too deep")
		return
	}
	if !d.count(path, 1) {
		return
	}
	n = d.resolve(n)
	if v.CanAddr() && v.Addr().Type().Implements(nodeDecoderType) {
		v.Addr().Interface().(nodeDecoder).decodeNode(d, n, path)
		return
	}
	if v.Kind() == reflect.Pointer {
		if isNull(n) {
			v.SetZero()
			return
		}
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(n, v.Elem(), path)
		return
	}
	if isNull(n) {
		v.SetZero() // an empty key means "default"
		return
	}
	switch {
	case v.Type() == durationType:
		d.decodeDuration(n, v, path)
		return
	case v.CanAddr() && v.Addr().Type().Implements(textUnmarshalType):
		s, ok := d.scalar(n, path)
		if !ok {
			return
		}
		if err := v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s)); err != nil {
			d.c.errorf(path, "%v", err)
		}
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		d.decodeStruct(n, v, path)
	case reflect.Slice:
		d.decodeSlice(n, v, path)
	case reflect.Map:
		d.decodeMap(n, v, path)
	case reflect.String:
		if s, ok := d.scalar(n, path); ok {
			v.SetString(s)
		}
	case reflect.Bool:
		d.decodeBool(n, v, path)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		d.decodeInt(n, v, path)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		d.decodeUint(n, v, path)
	case reflect.Float32, reflect.Float64:
		d.decodeFloat(n, v, path)
	default:
		d.c.errorf(path, "internal error: cannot decode into %s", v.Type())
	}
}

// scalar returns the text of a scalar node, with ${ENV} references expanded.
func (d *decoder) scalar(n *yaml.Node, path string) (string, bool) {
	switch n.Kind {
	case yaml.ScalarNode:
	case yaml.MappingNode:
		d.c.errorf(path, "expected a single value, found a mapping")
		return "", false
	case yaml.SequenceNode:
		d.c.errorf(path, "expected a single value, found a list")
		return "", false
	default:
		d.c.errorf(path, "expected a single value")
		return "", false
	}
	out, err := expandEnv(n.Value, d.env)
	if err != nil {
		d.c.errorf(path, "%v", err)
		return "", false
	}
	return out, true
}

// expandEnv replaces ${NAME} with the environment variable NAME; "$$" is a
// literal "$". An unset variable is an error: a secret silently replaced by
// an empty string would fail much later and much less clearly.
func expandEnv(s string, lookup func(string) (string, bool)) (string, error) {
	if !strings.Contains(s, "$") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '$' || i+1 >= len(s) {
			b.WriteByte(c)
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '{':
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 {
				return "", fmt.Errorf("unclosed ${ in %q", s)
			}
			name := s[i+2 : i+2+end]
			if name == "" {
				return "", fmt.Errorf("empty ${} in %q", s)
			}
			val, ok := lookup(name)
			if !ok {
				return "", fmt.Errorf("environment variable %s is not set", name)
			}
			b.WriteString(val)
			i += 2 + end
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

func (d *decoder) decodeDuration(n *yaml.Node, v reflect.Value, path string) {
	s, ok := d.scalar(n, path)
	if !ok {
		return
	}
	if s == "0" {
		v.SetInt(0)
		return
	}
	dur, err := time.ParseDuration(s)
	if err != nil {
		if _, nerr := strconv.ParseFloat(s, 64); nerr == nil {
			d.c.errorf(path, "duration %q has no unit: write e.g. %ss or %sms", s, s, s)
		} else {
			d.c.errorf(path, "invalid duration %q (examples: 250ms, 1s, 5m)", s)
		}
		return
	}
	if dur < 0 {
		d.c.errorf(path, "duration %s is negative", s)
		return
	}
	v.SetInt(int64(dur))
}

func (d *decoder) decodeBool(n *yaml.Node, v reflect.Value, path string) {
	if d.quotedScalar(n, path, "true or false") {
		return
	}
	s, ok := d.scalar(n, path)
	if !ok {
		return
	}
	switch strings.ToLower(s) {
	case "true":
		v.SetBool(true)
	case "false":
		v.SetBool(false)
	default:
		d.c.errorf(path, "expected true or false, found %q", s)
	}
}

func (d *decoder) decodeInt(n *yaml.Node, v reflect.Value, path string) {
	if d.quotedScalar(n, path, "an integer") {
		return
	}
	s, ok := d.scalar(n, path)
	if !ok {
		return
	}
	i, err := strconv.ParseInt(strings.ReplaceAll(s, "_", ""), 0, 64)
	if err != nil {
		d.c.errorf(path, "expected an integer, found %q", s)
		return
	}
	if v.OverflowInt(i) {
		d.c.errorf(path, "%d is out of range", i)
		return
	}
	v.SetInt(i)
}

func (d *decoder) decodeUint(n *yaml.Node, v reflect.Value, path string) {
	if d.quotedScalar(n, path, "a non-negative integer") {
		return
	}
	s, ok := d.scalar(n, path)
	if !ok {
		return
	}
	u, err := strconv.ParseUint(strings.ReplaceAll(s, "_", ""), 0, 64)
	if err != nil {
		if strings.HasPrefix(s, "-") {
			d.c.errorf(path, "%s is negative", s)
		} else {
			d.c.errorf(path, "expected a non-negative integer, found %q", s)
		}
		return
	}
	if v.OverflowUint(u) {
		d.c.errorf(path, "%d is out of range", u)
		return
	}
	v.SetUint(u)
}

func (d *decoder) decodeFloat(n *yaml.Node, v reflect.Value, path string) {
	if d.quotedScalar(n, path, "a number") {
		return
	}
	s, ok := d.scalar(n, path)
	if !ok {
		return
	}
	f, err := strconv.ParseFloat(strings.ReplaceAll(s, "_", ""), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		d.c.errorf(path, "expected a finite number, found %q", s)
		return
	}
	v.SetFloat(f)
}

func (d *decoder) decodeSlice(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.SequenceNode {
		d.c.errorf(path, "expected a list, found %s", describe(n))
		return
	}
	out := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		d.decode(item, out.Index(i), fmt.Sprintf("%s[%d]", path, i))
	}
	v.Set(out)
}

// entry is one key: value pair of a mapping.
type entry struct{ key, value *yaml.Node }

// mapEntries returns the key/value pairs of a mapping node, in order, with
// merge keys (<<: *anchor) expanded first so explicit keys override them.
// The second result is how many leading entries came from merges.
func (d *decoder) mapEntries(n *yaml.Node, path string) ([]entry, int, bool) {
	if n.Kind != yaml.MappingNode {
		d.c.errorf(path, "expected a mapping (key: value), found %s", describe(n))
		return nil, 0, false
	}
	var merged, explicit []entry
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Tag == "!!merge" {
			src := d.resolve(v)
			srcs := []*yaml.Node{src}
			if src.Kind == yaml.SequenceNode {
				srcs = srcs[:0]
				for _, s := range src.Content {
					srcs = append(srcs, d.resolve(s))
				}
			}
			for _, s := range srcs {
				if !d.count(path, 1) {
					return nil, 0, false
				}
				if entries, _, ok := d.mapEntries(s, path); ok {
					if !d.count(path, len(entries)) {
						return nil, 0, false
					}
					merged = append(merged, entries...)
				}
			}
			continue
		}
		explicit = append(explicit, entry{k, v})
	}
	return append(merged, explicit...), len(merged), true
}

func (d *decoder) decodeMap(n *yaml.Node, v reflect.Value, path string) {
	if v.Type().Key().Kind() != reflect.String {
		d.c.errorf(path, "internal error: map key must be a string")
		return
	}
	entries, _, ok := d.mapEntries(n, path)
	if !ok {
		return
	}
	if v.IsNil() {
		v.Set(reflect.MakeMap(v.Type()))
	}
	for _, e := range entries {
		k := e.key.Value
		ev := reflect.New(v.Type().Elem()).Elem()
		d.decode(e.value, ev, path+"."+k)
		v.SetMapIndex(reflect.ValueOf(k).Convert(v.Type().Key()), ev)
	}
}

// fieldIndex maps yaml key names to struct field index paths, following
// `yaml:",inline"` embedding.
func fieldIndex(t reflect.Type) map[string][]int {
	m := map[string][]int{}
	var walk func(t reflect.Type, prefix []int)
	walk = func(t reflect.Type, prefix []int) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag := f.Tag.Get("yaml")
			name, opts, _ := strings.Cut(tag, ",")
			idx := append(append([]int(nil), prefix...), i)
			if opts == "inline" || (f.Anonymous && tag == "") {
				ft := f.Type
				if ft.Kind() == reflect.Struct {
					walk(ft, idx)
				}
				continue
			}
			if name == "-" || !f.IsExported() {
				continue
			}
			if name == "" {
				name = strings.ToLower(f.Name)
			}
			m[name] = idx
		}
	}
	walk(t, nil)
	return m
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	entries, nMerged, ok := d.mapEntries(n, path)
	if !ok {
		return
	}
	fields := fieldIndex(v.Type())
	seen := map[string]bool{} // explicit keys only: they may override merged ones
	for i, e := range entries {
		k := e.key.Value
		kp := k
		if path != "" {
			kp = path + "." + k
		}
		d.c.at(kp, posOf(e.key))
		idx, ok := fields[k]
		if !ok {
			d.c.errorf(kp, "unknown key %q%s", k, suggest(k, fields))
			continue
		}
		if i >= nMerged {
			if seen[k] {
				d.c.errorf(kp, "key %q appears twice", k)
				continue
			}
			seen[k] = true
		}
		d.decode(e.value, v.FieldByIndex(idx), kp)
	}
}

// suggest names the closest known key, for typos like "adress".
func suggest(k string, fields map[string][]int) string {
	best, bestD := "", 3
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if dist := editDistance(k, name); dist < bestD {
			best, bestD = name, dist
		}
	}
	if best != "" {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	return fmt.Sprintf(" (known keys: %s)", strings.Join(names, ", "))
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!int", "!!float":
			return "the number " + n.Value
		case "!!bool":
			return "the boolean " + n.Value
		case "!!null":
			return "nothing"
		}
		return fmt.Sprintf("the string %q", n.Value)
	}
	return "an unexpected value"
}
