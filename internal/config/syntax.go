package config

import (
	"regexp"
	"strconv"
	"strings"
)

var syntaxLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parserProblems are the messages of yaml's parser (as opposed to its
// scanner). For them yaml reports the 0-based line of the enclosing block
// (or of the problem when the block starts on the first line): one line
// early, and often several lines before the mistake.
var parserProblems = map[string]bool{
	"did not find expected key":              true,
	"did not find expected '-' indicator":    true,
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"did not find expected node content":     true,
	"did not find expected <document start>": true,
	"found undefined tag handle":             true,
	"found incompatible YAML document":       true,
	"found duplicate %YAML directive":        true,
	"found duplicate %TAG directive":         true,
	"did not find expected <stream-start>":   true,
}

// syntaxProblem turns a parser error into a Problem. For a broken block
// the parser names the line where the block starts; the usual mistake is a
// line further down indented to a column no enclosing block uses, and that
// line is reported when there is one. Otherwise the message says "at or
// after", and the column is the line's first character, where an
// indentation mistake shows.
func syntaxProblem(name string, data []byte, err error) Problem {
	m := syntaxLine.FindStringSubmatch(err.Error())
	if m == nil {
		return Problem{File: name, Msg: strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	line, _ := strconv.Atoi(m[1])
	lines := strings.Split(string(data), "\n")
	what := m[2]
	msg := "yaml syntax error at or after this line: " + what
	if parserProblems[what] {
		line++
		if what == "did not find expected key" || what == "did not find expected '-' indicator" {
			if l := misindented(lines, line); l > 0 {
				line, msg = l, "yaml syntax: this line is indented to a column no block above it uses ("+what+")"
			}
		}
	}
	col := 1
	if line >= 1 && line <= len(lines) {
		text := lines[line-1]
		col = len(text) - len(strings.TrimLeft(text, " ")) + 1
		if strings.HasPrefix(text[col-1:], "\t") {
			msg = "yaml syntax: a tab indents this line; YAML is indented with spaces only"
		}
	}
	return Problem{File: name, Line: line, Col: col, Msg: msg}
}

// misindented returns the first line from line `from` (1-based) on that
// dedents to a column no open block uses, or 0. A deeper line opens a
// block; a block sequence entry ("- key: v") opens two: the dash's and the
// content's.
func misindented(lines []string, from int) int {
	open := []int{0}
	for i, text := range lines {
		trimmed := strings.TrimLeft(text, " ")
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		indent := len(text) - len(trimmed)
		dedent := false
		for len(open) > 1 && indent < open[len(open)-1] {
			open, dedent = open[:len(open)-1], true
		}
		switch top := open[len(open)-1]; {
		case indent == top:
		case !dedent && indent > top:
			open = append(open, indent)
		case i+1 >= from:
			return i + 1
		default:
			open = append(open, indent) // not ours to judge
		}
		for strings.HasPrefix(trimmed, "- ") {
			rest := strings.TrimLeft(trimmed[1:], " ")
			indent += len(trimmed) - len(rest)
			open = append(open, indent)
			trimmed = rest
		}
	}
	return 0
}
