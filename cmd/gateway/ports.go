package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"text/tabwriter"

	"go.bug.st/serial/enumerator"
)

// portInfo is one serial port as `gateway ports` lists it.
type portInfo struct {
	Port string `json:"port"`
	// ByID is the /dev/serial/by-id link: the name to put in a config,
	// stable across reboots and replugging.
	ByID         string `json:"by_id,omitempty"`
	USB          bool   `json:"usb"`
	VID          string `json:"vid,omitempty"`
	PID          string `json:"pid,omitempty"`
	SerialNumber string `json:"serial_number,omitempty"`
	Manufacturer string `json:"manufacturer,omitempty"`
	Product      string `json:"product,omitempty"`
}

func init() {
	register(command{
		name:    "ports",
		summary: "list serial ports with USB ids and /dev/serial/by-id names",
		usage:   "ports [--json]",
		about: `Ports lists the serial ports of this machine, USB adapters (the usual RS-485
converters) first, with their USB vendor and product id, serial number and
product string, and their /dev/serial/by-id name: the name to write in a
config, which stays the same across reboots and replugging, unlike
/dev/ttyUSB0. A machine without USB serial adapters says so and exits 0.`,
		run: cmdPorts,
	})
}

func cmdPorts(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("ports")
	asJSON := fs.Bool("json", false, "print JSON")
	if ok, code := parse(fs, args, stdout, stderr); !ok {
		return code
	}
	details, err := enumerator.GetDetailedPortsList()
	if err != nil {
		fmt.Fprintln(stderr, "gateway ports:", err)
		return exitFail
	}
	ports := describePorts(details, linksIn("/dev/serial/by-id"), aliases("/dev/serial0", "/dev/serial1"))
	if *asJSON {
		if ports == nil {
			ports = []portInfo{}
		}
		data, _ := json.MarshalIndent(map[string]any{"ports": ports}, "", "  ")
		fmt.Fprintln(stdout, string(data))
		return exitOK
	}
	writePorts(stdout, ports)
	return exitOK
}

// describePorts merges the enumerator's ports with their by-id links
// (link target → link) and the Raspberry Pi's /dev/serialN aliases, which
// the enumerator does not list.
func describePorts(details []*enumerator.PortDetails, byID map[string]string, extra []string) []portInfo {
	var out []portInfo
	seen := map[string]bool{}
	for _, d := range details {
		if d == nil || d.Name == "" {
			continue // a tty without a device behind it
		}
		seen[d.Name] = true
		out = append(out, portInfo{
			Port: d.Name, ByID: byID[resolve(d.Name)], USB: d.IsUSB, VID: d.VID, PID: d.PID,
			SerialNumber: d.SerialNumber, Manufacturer: d.Manufacturer, Product: d.Product,
		})
	}
	for _, a := range extra {
		if !seen[a] {
			out = append(out, portInfo{Port: a, ByID: byID[resolve(a)]})
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].USB != out[j].USB {
			return out[i].USB // USB adapters, the usual RS-485 converters, first
		}
		return out[i].Port < out[j].Port
	})
	return out
}

func writePorts(w io.Writer, ports []portInfo) {
	usb := 0
	for _, p := range ports {
		if p.USB {
			usb++
		}
	}
	if len(ports) > 0 {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "port\tusb id\tserial number\tproduct\tby-id (use this name in configs)")
		for _, p := range ports {
			id, product := "-", p.Product
			if p.USB {
				id = p.VID + ":" + p.PID
				if p.Manufacturer != "" {
					product = p.Manufacturer + " " + product
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.Port, id, orDash(p.SerialNumber), orDash(product), orDash(p.ByID))
		}
		_ = tw.Flush()
	}
	if usb == 0 {
		fmt.Fprintln(w, "no USB serial adapters found (is the adapter plugged in? `dmesg | tail` shows what the kernel saw)")
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// linksIn maps the targets of the symlinks in dir to the links.
func linksIn(dir string) map[string]string {
	out := map[string]string{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return out
	}
	for _, e := range entries {
		link := filepath.Join(dir, e.Name())
		out[resolve(link)] = link
	}
	return out
}

// aliases returns the paths that exist.
func aliases(paths ...string) []string {
	var out []string
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			out = append(out, p)
		}
	}
	return out
}

func resolve(path string) string {
	if real, err := filepath.EvalSymlinks(path); err == nil {
		return real
	}
	return path
}
