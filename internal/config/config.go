// Package config loads the gateway's YAML file strictly: unknown keys, wrong
// types, impossible values and conflicts between sections are all reported
// at once, each with file:line:col and its key path, before anything starts.
// `gateway check` and `gateway run` go through exactly the same code.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"reflect"
	"strings"

	yaml "go.yaml.in/yaml/v3"

	"github.com/fieldbridge/fieldbridge/adapters"
	"github.com/fieldbridge/fieldbridge/bridge"
	"github.com/fieldbridge/fieldbridge/internal/httpapi"
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
	// Bridge, when present, forwards local topics to a cloud broker with
	// store-and-forward, and cloud commands to the local broker.
	Bridge *bridge.Config `yaml:"bridge"`
	// HTTP is the metrics, health and status endpoint; on by default on
	// loopback (set after Load: never nil).
	HTTP *httpapi.Config `yaml:"http"`
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
func (e *AdapterEntry) decodeNode(d *decoder, n *yaml.Node, path string) {
	e.path = path
	entries, _, ok := d.mapEntries(n, path)
	if !ok {
		return
	}
	for _, kv := range entries {
		switch kv.key.Value {
		case "type":
			d.c.at(path+".type", posOf(kv.value))
			e.Type, _ = d.scalar(d.resolve(kv.value), path+".type")
		case "name":
			d.c.at(path+".name", posOf(kv.value))
			e.Name, _ = d.scalar(d.resolve(kv.value), path+".name")
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
		return nil, Problems{syntaxProblem(name, data, err)}
	}
	if root == nil {
		return nil, Problems{{File: name, Line: 1, Col: 1, Msg: "the config is empty"}}
	}
	c.at("", pos{1, 1})
	d := &decoder{c: c, env: opts.LookupEnv}
	d.decode(root, reflect.ValueOf(&cfg.File).Elem(), "")
	cfg.check()
	cfg.crossCheck()
	cfg.Warnings = c.warnings()
	if errs := c.errors(); len(errs) > 0 {
		return cfg, errs
	}
	return cfg, nil
}

// parseYAML parses the one document of a config file into a node tree.
// (go.yaml.in/yaml/v3: its tree of a 4,000-point config holds a third of the
// memory goccy/go-yaml's AST does, which bounds the gateway's peak RSS.)
func parseYAML(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []*yaml.Node
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if len(n.Content) > 0 && !isNull(n.Content[0]) {
			docs = append(docs, &n)
		}
	}
	switch len(docs) {
	case 0:
		return nil, nil
	case 1:
		return docs[0], nil
	}
	return nil, fmt.Errorf("the config holds %d YAML documents (separated by ---); write one", len(docs))
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
		for _, a := range cfg.Broker.Addresses() {
			if s.Listen == a && !strings.HasSuffix(a, ":0") { // port 0: each gets a free one
				c.errorf("simulator.listen", "the simulator and the broker both listen on %s", s.Listen)
			}
		}
	}
	if cfg.Bridge != nil {
		cfg.Bridge.Check(g.ID, g.DataDir, prefixed{c, "bridge"})
	}
	if cfg.HTTP == nil {
		cfg.HTTP = new(httpapi.Config)
	}
	cfg.HTTP.Check(cfg.Broker.Addresses(), len(cfg.Broker.Users) > 0, prefixed{c, "http"})
	env := adapters.Env{GatewayID: g.ID}
	if g.ID == "" || adapters.CheckName(g.ID) != nil {
		// Reported above; a stand-in keeps every topic check from
		// reporting it again as an empty or bad topic level.
		env.GatewayID = "gateway"
	}
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
	out := cfg.buildAll(c, log, nil)
	if errs := c.errors(); len(errs) > 0 {
		return nil, errs
	}
	return out, nil
}

// buildAll builds the adapter entries that skip does not exclude and
// reports into c what only the whole set shows: device names, topics and
// exclusive resources (serial ports) used twice.
func (cfg *Config) buildAll(c *collector, log *slog.Logger, skip func(e *AdapterEntry) bool) []adapters.Adapter {
	var out []adapters.Adapter
	devices := map[string]string{}
	topics := map[string]string{}
	claim := func(topic, path, what string) {
		if prev, dup := topics[topic]; dup {
			c.errorf(path, "%s publishes to %s, which %s already uses", what, topic, prev)
			return
		}
		topics[topic] = path
		if b := cfg.Bridge; b != nil {
			for _, cloud := range b.ForwardTopics(topic) {
				if cloud == b.StatusTopic {
					c.errorf(path, "%s is forwarded to %s, the bridge's status topic (set bridge.status_topic or change the forward prefix)", what, cloud)
				}
			}
		}
	}
	held := map[string]string{} // exclusive resource -> adapter path
	for i := range cfg.Adapters {
		e := &cfg.Adapters[i]
		if skip != nil && skip(e) {
			continue
		}
		a, err := e.Config.Build(adapters.Env{GatewayID: cfg.Gateway.ID, Log: log.With("adapter", e.Type)})
		if err != nil {
			c.errorf(e.path, "%v", err)
			continue
		}
		if x, ok := a.(adapters.Exclusive); ok {
			for _, r := range x.Exclusive() {
				if prev, dup := held[r]; dup {
					c.errorf(e.path, "%s is already used by %s: put every device on that line under one adapter", r, prev)
				}
				held[r] = e.path
			}
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
	return out
}

// crossCheck reports, in the same pass as every other problem, the
// conflicts between adapters: it builds each entry that has no error of
// its own (Build must not see a config its Check refused) and checks the
// set. A gateway id with errors makes every topic doubtful: then nothing.
func (cfg *Config) crossCheck() {
	c := cfg.c
	has := func(prefix string) bool {
		for _, p := range c.problems {
			if !p.Warning && (p.Path == prefix || strings.HasPrefix(p.Path, prefix+".") || strings.HasPrefix(p.Path, prefix+"[")) {
				return true
			}
		}
		return false
	}
	if has("gateway.id") || (cfg.Bridge != nil && has("bridge")) {
		return
	}
	cfg.buildAll(c, slog.New(slog.DiscardHandler), func(e *AdapterEntry) bool { return e.Config == nil || has(e.path) })
}
