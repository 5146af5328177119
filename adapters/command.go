package adapters

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxCommandPayload bounds a command's payload. The longest value a point can
// take is a string of 250 bytes; a payload far beyond that is a mistake.
const MaxCommandPayload = 4096

// ParseCommand reads a command payload: a bare JSON value (42.5, true,
// "text") or an object {"value": 42.5, "id": "abc"}. It returns the value
// and the id as its JSON text (a string or a number, echoed verbatim in the
// result; nil when there is none). The id is returned even when the value
// is bad, so that the refusal can carry it.
//
// Numbers keep their precision: an integer literal becomes an Int (or a
// Uint above MaxInt64), anything with a fraction or exponent a float64.
func ParseCommand(payload []byte) (v Value, id []byte, err error) {
	p := bytes.TrimSpace(payload)
	switch {
	case len(p) == 0:
		return Value{}, nil, errors.New("empty payload: send a value (42.5, true, \"text\") or {\"value\": ..., \"id\": ...}")
	case len(payload) > MaxCommandPayload:
		return Value{}, nil, fmt.Errorf("payload of %d bytes is longer than the %d a command may have", len(payload), MaxCommandPayload)
	case !utf8.Valid(p):
		return Value{}, nil, errors.New("payload is not valid UTF-8")
	case p[0] == '{':
		return parseObject(p)
	}
	v, err = parseValue(p)
	return v, nil, err
}

// parseObject reads {"value": ..., "id": ...}; other keys are refused so that
// a misspelt "value" is reported rather than taken for a missing one.
func parseObject(p []byte) (Value, []byte, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(p, &fields); err != nil {
		return Value{}, nil, fmt.Errorf("payload is not a valid JSON object: %v", jsonErr(err))
	}
	var id []byte
	if raw, ok := fields["id"]; ok {
		raw = bytes.TrimSpace(raw)
		if len(raw) == 0 || (raw[0] != '"' && raw[0] != '-' && (raw[0] < '0' || raw[0] > '9')) {
			return Value{}, nil, errors.New(`"id" must be a string or a number`)
		}
		id = append([]byte(nil), raw...)
	}
	for k := range fields {
		if k != "value" && k != "id" {
			return Value{}, id, fmt.Errorf("unknown key %q in the command: use {\"value\": ..., \"id\": ...}", k)
		}
	}
	raw, ok := fields["value"]
	if !ok {
		return Value{}, id, errors.New(`the command object has no "value"`)
	}
	v, err := parseValue(bytes.TrimSpace(raw))
	return v, id, err
}

// parseValue reads one JSON scalar.
func parseValue(p []byte) (Value, error) {
	switch {
	case bytes.Equal(p, []byte("true")):
		return Bool(true), nil
	case bytes.Equal(p, []byte("false")):
		return Bool(false), nil
	case bytes.Equal(p, []byte("null")):
		return Value{}, errors.New("the value is null: send a number, true/false or a \"string\"")
	case p[0] == '"':
		var s string
		if err := json.Unmarshal(p, &s); err != nil {
			return Value{}, fmt.Errorf("bad JSON string: %v", jsonErr(err))
		}
		return String(s), nil
	case p[0] == '{' || p[0] == '[':
		return Value{}, errors.New("the value must be a number, true/false or a \"string\", not an object or array")
	case p[0] == '-' || (p[0] >= '0' && p[0] <= '9'):
		return parseNumber(p)
	}
	return Value{}, fmt.Errorf("payload %q is not JSON: send a number, true/false, a \"quoted string\" or {\"value\": ..., \"id\": ...}", shorten(p))
}

// parseNumber reads a JSON number exactly: integers as Int or Uint, the rest
// as float64.
func parseNumber(p []byte) (Value, error) {
	var n json.Number
	if err := json.Unmarshal(p, &n); err != nil {
		return Value{}, fmt.Errorf("payload %q is not a valid number", shorten(p))
	}
	s := string(n)
	if !strings.ContainsAny(s, ".eE") {
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			return Int(i), nil
		}
		if u, err := strconv.ParseUint(s, 10, 64); err == nil {
			return Uint(u), nil
		}
		return Value{}, fmt.Errorf("number %s is out of range for any register type", shorten(p))
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) {
		return Value{}, fmt.Errorf("number %s is out of range for any register type", shorten(p))
	}
	return Float64(f), nil
}

// jsonErr drops encoding/json's package prefix.
func jsonErr(err error) string { return strings.TrimPrefix(err.Error(), "json: ") }

// shorten keeps error messages about huge payloads readable.
func shorten(p []byte) string {
	if len(p) > 40 {
		return string(p[:40]) + "…"
	}
	return string(p)
}

// KindName names a value's kind for error messages: "a number", "a string".
func KindName(k Kind) string {
	switch k {
	case KindBool:
		return "a boolean"
	case KindInt, KindUint, KindFloat:
		return "a number"
	case KindString:
		return "a string"
	}
	return "nothing"
}
