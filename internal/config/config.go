// Package config loads the gateway's YAML file strictly: unknown keys, wrong
// types, impossible values and conflicts between sections are all reported
// at once, each with file:line:col and its key path, before anything starts.
// `gateway check` and `gateway run` go through exactly the same code.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"

	"github.com/fieldbridge/fieldbridge/adapters"
	"github.com/fieldbridge/fieldbridge/internal/simulator"
	"github.com/fieldbridge/fieldbridge/localbroker"
)

// File is the whole configuration file.
type File struct {
	Gateway Gateway            `yaml:"gateway"`
	Log     Log                `yaml:"log"`
	Broker  localbroker.Config `yaml:"broker"`
	// Adapters are the buses; each entry is decoded by its `type`.
	Adapters []AdapterEntry `yaml:"adapters"`
	// Simulator, when present, starts the built-in Modbus TCP device
	// simulator in-process (the demo).
	Simulator *simulator.Config `yaml:"simulator"`
}

// Gateway is the `gateway:` section.
type Gateway struct {
	// ID is the root of every topic: letters, digits, '-' and '_'.
	ID string `yaml:"id"`
	// DataDir keeps state across restarts (default /var/lib/fieldbridge).
	// Relative paths are relative to the working directory.
	DataDir string `yaml:"data_dir"`
}

// Log is the `log:` section.
type Log struct {
	// Level is debug, info (default), warn or error.
	Level string `yaml:"level"`
	// Format is text (default) or json.
	Format string `yaml:"format"`
}

// DefaultDataDir is where state lives when gateway.data_dir is not set.
const DefaultDataDir = "/var/lib/fieldbridge"

// AdapterEntry is one item of `adapters:`.
type AdapterEntry struct {
	Name, Type string
	Config     adapters.Config
	path       string
}

// decodeNode decodes an adapter entry into the config type its `type:`
// names.
func (e *AdapterEntry) decodeNode(d *decoder, n ast.Node, path string) {
	e.path = path
	entries, _, ok := d.mapEntries(n, path)
	if !ok {
		return
	}
	for _, mv := range entries {
		switch keyText(mv) {
		case "type":
			e.Type, _ = d.scalar(d.resolve(mv.Value), path+".type")
		case "name":
			e.Name, _ = d.scalar(d.resolve(mv.Value), path+".name")
		}
	}
	if e.Type == "" {
		d.c.errorf(path, "adapter needs type (one of: %s)", strings.Join(adapters.Types(), ", "))
		return
	}
	reg, ok := adapters.Lookup(e.Type)
	if !ok {
		d.c.errorf(path+".type", "unknown adapter type %q (known: %s)", e.Type, strings.Join(adapters.Types(), ", "))
		return
	}
	e.Config = reg.NewConfig()
	d.decode(n, reflect.ValueOf(e.Config).Elem(), path)
}

// Config is a loaded and checked configuration.
type Config struct {
	File
	// Path is the file it came from.
	Path string
	// Warnings are problems that do not stop the gateway.
	Warnings Problems
	c        *collector
}

// Options adjust loading (for tests).
type Options struct {
	// LookupEnv resolves ${NAME}; default os.LookupEnv.
	LookupEnv func(string) (string, bool)
}

// Load reads, decodes and checks a config file. On failure the error is a
// Problems listing everything found.
func Load(path string, opts Options) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, Problems{{File: path, Msg: fmt.Sprintf("cannot read config: %v", errors.Unwrap(err))}}
	}
	return Parse(path, data, opts)
}

// Parse is Load for bytes already read; name is used in messages.
func Parse(name string, data []byte, opts Options) (*Config, error) {
	if opts.LookupEnv == nil {
		opts.LookupEnv = os.LookupEnv
	}
	c := newCollector(name)
	cfg := &Config{Path: name, c: c}
	root, err := parseYAML(data)
	if err != nil {
		var ye yaml.Error
		if errors.As(err, &ye) && ye.GetToken() != nil {
			p := ye.GetToken().Position
			return nil, Problems{{File: name, Line: p.Line, Col: p.Column, Msg: "yaml: " + ye.GetMessage()}}
		}
		return nil, Problems{{File: name, Msg: "yaml: " + err.Error()}}
	}
	if root == nil {
		return nil, Problems{{File: name, Line: 1, Col: 1, Msg: "the config is empty"}}
	}
	c.at("", pos{1, 1})
	d := &decoder{c: c, anchors: map[string]ast.Node{}, env: opts.LookupEnv}
	d.collectAnchors(root)
	d.decode(root, reflect.ValueOf(&cfg.File).Elem(), "")
	cfg.check()
	cfg.Warnings = c.warnings()
	if errs := c.errors(); len(errs) > 0 {
		return cfg, errs
	}
	return cfg, nil
}

func parseYAML(data []byte) (ast.Node, error) {
	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		return nil, err
	}
	var docs []ast.Node
	for _, doc := range f.Docs {
		if doc != nil && doc.Body != nil {
			docs = append(docs, doc.Body)
		}
	}
	switch len(docs) {
	case 0:
		return nil, nil
	case 1:
		return docs[0], nil
	}
	return nil, fmt.Errorf("the config holds %d YAML documents; write one", len(docs))
}

// check validates every section and fills defaults.
func (cfg *Config) check() {
	c := cfg.c
	g := &cfg.Gateway
	if g.ID == "" {
		c.errorf("gateway.id", "gateway.id is required: it is the root of every topic (e.g. plant1)")
	} else if err := adapters.CheckName(g.ID); err != nil {
		c.errorf("gateway.id", "%v", err)
	}
	if g.DataDir == "" {
		g.DataDir = DefaultDataDir
	}
	switch strings.ToLower(cfg.Log.Level) {
	case "":
		cfg.Log.Level = "info"
	case "debug", "info", "warn", "error":
	default:
		c.errorf("log.level", "log level %q: use debug, info, warn or error", cfg.Log.Level)
	}
	switch strings.ToLower(cfg.Log.Format) {
	case "":
		cfg.Log.Format = "text"
	case "text", "json":
	default:
		c.errorf("log.format", "log format %q: use text or json", cfg.Log.Format)
	}
	cfg.Broker.Check(prefixed{c, "broker"})
	if s := cfg.Simulator; s != nil {
		if s.Listen == "" {
			s.Listen = simulator.DefaultListen
		}
		if s.Listen == cfg.Broker.Listen {
			c.errorf("simulator.listen", "the simulator and the broker both listen on %s", s.Listen)
		}
	}
	env := adapters.Env{GatewayID: g.ID}
	names := map[string]int{}
	for i := range cfg.Adapters {
		e := &cfg.Adapters[i]
		if e.Config == nil {
			continue // already reported
		}
		if prev, dup := names[e.Name]; dup && e.Name != "" {
			c.errorf(e.path+".name", "adapter name %q is already used by adapters[%d]", e.Name, prev)
		}
		names[e.Name] = i
		e.Config.Check(env, prefixed{c, e.path})
	}
}

// Build builds the adapters with their logger and checks what only the whole
// set can show: device names and topics must be unique across the gateway.
func (cfg *Config) Build(log *slog.Logger) ([]adapters.Adapter, error) {
	c := newCollector(cfg.Path)
	c.positions = cfg.c.positions
	var out []adapters.Adapter
	devices := map[string]string{}
	topics := map[string]string{}
	claim := func(topic, path, what string) {
		if prev, dup := topics[topic]; dup {
			c.errorf(path, "%s publishes to %s, which %s already uses", what, topic, prev)
			return
		}
		topics[topic] = path
	}
	for i := range cfg.Adapters {
		e := &cfg.Adapters[i]
		a, err := e.Config.Build(adapters.Env{GatewayID: cfg.Gateway.ID, Log: log.With("adapter", e.Type)})
		if err != nil {
			c.errorf(e.path, "%v", err)
			continue
		}
		for _, d := range a.Devices() {
			dp := e.path + "." + d.Path
			if prev, dup := devices[d.Name]; dup {
				c.errorf(dp+".name", "device name %q is already used at %s: device names are unique across the gateway", d.Name, prev)
			}
			devices[d.Name] = dp
			claim(d.AvailabilityTopic, dp, "the availability of device "+d.Name)
			for _, p := range d.Points {
				claim(p.Topic, e.path+"."+p.Path, "point "+d.Name+"/"+p.Name)
			}
		}
		out = append(out, a)
	}
	if errs := c.errors(); len(errs) > 0 {
		return nil, errs
	}
	return out, nil
}
