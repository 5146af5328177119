package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fieldbridge/fieldbridge/internal/testpeer"
)

// readDevice serves the registers of testdata/read/plant.yaml.
func readDevice(t *testing.T) *testpeer.Device {
	return testpeer.StartTCP(t, testpeer.DeviceSpec{
		Units: map[byte]testpeer.UnitSpec{1: {
			Holding: map[uint16]uint16{
				0: 0x4365, 1: 0xCCCD, // 229.8
				2: 0xCCCD, 3: 0x4365, // 229.8, CDAB
				4: 0x0001, 5: 0xE240, // 123456 × 0.01
				6:  0xFF33,                         // -20.5
				7:  0x0008,                         // bit 3
				10: 0x4142, 11: 0x4344, 12: 0x2000, // "ABCD "
			},
			Input:    map[uint16]uint16{0: 0x0004, 1: 0x0003, 2: 0x0002, 3: 0x0001},
			Coils:    map[uint16]bool{0: true},
			Discrete: map[uint16]bool{1: true},
		}},
		Silent:     []byte{9},
		Exceptions: []testpeer.ExceptionRange{{Unit: 1, Table: testpeer.Holding, Start: 100, End: 199, Code: 2}},
	})
}

// TestReadGolden: `gateway read` polls the configured points once with the
// real planner and decoders and prints the table in testdata/read.
func TestReadGolden(t *testing.T) {
	dev := readDevice(t)
	t.Setenv("FB_TEST_ADDR", dev.Addr)
	config := filepath.Join("testdata", "read", "plant.yaml")
	golden := filepath.Join("testdata", "read", "plant.golden")
	code, out, errOut := runCmd(t, "read", "--config", config)
	got := fmt.Sprintf("exit %d\n%s", code, out)
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("gateway read (stderr %q):\n--- got\n%s--- want\n%s", errOut, got, want)
	}

	// One device, one point, as JSON: strict JSON with the same content.
	code, out, _ = runCmd(t, "read", "--config", config, "--device", "meter1", "--point", "voltage_cdab", "--json")
	var rs []map[string]any
	if err := json.Unmarshal([]byte(out), &rs); err != nil || code != exitOK || len(rs) != 1 ||
		rs[0]["value"] != 229.8 || rs[0]["raw"] != "cccd 4365" || rs[0]["quality"] != "good" || rs[0]["unit"] != "V" {
		t.Errorf("read --json: exit %d %v %s", code, err, out)
	}
	if code, _, errOut := runCmd(t, "read", "--config", config, "--device", "nope"); code != exitUsage || !strings.Contains(errOut, "no point matches") {
		t.Errorf("unknown device: exit %d %s", code, errOut)
	}
}
