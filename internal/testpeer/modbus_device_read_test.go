package testpeer

import (
	"slices"
	"testing"
	"time"
)

// TestDeviceGetAndFunctions: a write made on the wire shows in Get, and the
// function codes the device received are reported in order.
func TestDeviceGetAndFunctions(t *testing.T) {
	d := StartTCP(t, testSpec())
	c := dialModbus(t, d.Addr)
	if got := c.request(1, []byte{0x06, 0x00, 0x05, 0x12, 0x34}, 2*time.Second); len(got) != 5 {
		t.Fatalf("FC06 reply % x", got)
	}
	if got := c.request(1, []byte{0x05, 0x00, 0x01, 0xFF, 0x00}, 2*time.Second); len(got) != 5 {
		t.Fatalf("FC05 reply % x", got)
	}
	if got := d.Get(1, Holding, 4, 3); !slices.Equal(got, []uint16{0, 0x1234, 0}) {
		t.Errorf("holding 4..6 = %04x", got)
	}
	if got := d.Get(1, Holding, 0, 2); !slices.Equal(got, []uint16{1234, 5678}) {
		t.Errorf("holding 0..1 = %v", got)
	}
	if got := d.GetBits(1, Coil, 0, 3); !slices.Equal(got, []bool{true, true, true}) {
		t.Errorf("coils 0..2 = %v", got)
	}
	if got := d.Functions(1); !slices.Equal(got, []int{6, 5}) {
		t.Errorf("functions %v, want [6 5]", got)
	}
	if got := d.Functions(9); len(got) != 0 {
		t.Errorf("functions of an unknown unit: %v", got)
	}
}
