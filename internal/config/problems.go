package config

import (
	"fmt"
	"sort"
	"strings"
)

// Problem is one thing wrong (or suspicious) in a config file.
type Problem struct {
	File      string
	Line, Col int
	// Path is the key path, e.g. adapters[0].devices[1].points[2].bit.
	Path    string
	Msg     string
	Warning bool
}

// String renders the problem the way editors and CI logs understand:
// file:line:col: path: message.
func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", p.Line, p.Col)
	}
	b.WriteString(": ")
	if p.Warning {
		b.WriteString("warning: ")
	}
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Problems is every error found in a config file; it is an error itself.
type Problems []Problem

// Error lists every problem, one per line.
func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// sorted returns the problems in file order, then by path: the order a user
// fixes them in.
func (ps Problems) sorted() Problems {
	out := append(Problems(nil), ps...)
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		if a.Col != b.Col {
			return a.Col < b.Col
		}
		return a.Path < b.Path
	})
	return out
}

// pos is a position in the config file.
type pos struct{ line, col int }

// collector gathers problems and knows where each decoded key path is, so
// validators that only know a path still get a file:line:col.
type collector struct {
	file      string
	positions map[string]pos
	problems  Problems
}

func newCollector(file string) *collector {
	return &collector{file: file, positions: map[string]pos{}}
}

// at records where path is. The last record wins: a key decoded first from a
// merged anchor and then set explicitly is reported where it was set.
func (c *collector) at(path string, p pos) {
	if p.line > 0 {
		c.positions[path] = p
	}
}

// find returns the position of path, or of its nearest ancestor that appears
// in the file (a missing key is reported where its parent is).
func (c *collector) find(path string) pos {
	for p := path; ; {
		if at, ok := c.positions[p]; ok {
			return at
		}
		i := strings.LastIndexAny(p, ".[")
		if i <= 0 {
			return c.positions[""]
		}
		p = p[:i]
	}
}

func (c *collector) add(path string, warning bool, msg string) {
	if !warning {
		// One error per key: a value that failed to decode must not also
		// be reported as missing by the checks that run after decoding.
		for _, p := range c.problems {
			if !p.Warning && p.Path == path {
				return
			}
		}
	}
	at := c.find(path)
	c.problems = append(c.problems, Problem{File: c.file, Line: at.line, Col: at.col, Path: path, Msg: msg, Warning: warning})
}

func (c *collector) errorf(path, format string, args ...any) {
	c.add(path, false, fmt.Sprintf(format, args...))
}

func (c *collector) warnf(path, format string, args ...any) {
	c.add(path, true, fmt.Sprintf(format, args...))
}

func (c *collector) errors() Problems {
	var out Problems
	for _, p := range c.problems {
		if !p.Warning {
			out = append(out, p)
		}
	}
	return out.sorted()
}

func (c *collector) warnings() Problems {
	var out Problems
	for _, p := range c.problems {
		if p.Warning {
			out = append(out, p)
		}
	}
	return out.sorted()
}

// prefixed is a Reporter for one part of the file (an adapter entry): paths it
// is given are relative to prefix.
type prefixed struct {
	c      *collector
	prefix string
}

func (r prefixed) join(path string) string {
	switch {
	case path == "":
		return r.prefix
	case r.prefix == "":
		return path
	case path[0] == '[':
		return r.prefix + path
	}
	return r.prefix + "." + path
}

func (r prefixed) Errorf(path, format string, args ...any) {
	r.c.errorf(r.join(path), format, args...)
}

func (r prefixed) Warnf(path, format string, args ...any) {
	r.c.warnf(r.join(path), format, args...)
}
