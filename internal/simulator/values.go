package simulator

import (
	"math"
	"strings"
	"time"
)

// The signals of the simulated plant, each a pure function of the time since
// start so that a test with a frozen clock can predict every register.
// Offsets are chosen so that every word of a multi-register value is
// non-zero: a word-order mistake then shows as a wildly wrong number instead
// of passing unnoticed while the high word happens to be 0.

// sine is sin(2π·t/period), taken modulo the period so that quarter periods
// land exactly on 0, ±1.
func sine(t, period time.Duration) float64 {
	return math.Sin(2 * math.Pi * float64(t%period) / float64(period))
}

// voltage is a mains voltage: 230 V ± 5 V, period 60 s.
func voltage(t time.Duration) float32 {
	return float32(230 + 5*sine(t, 60*time.Second))
}

// power is a signed active power in W, ±15 kW with period 90 s; negative is
// export, so the group exercises sign extension.
func power(t time.Duration) int32 {
	return int32(math.Round(15000 * sine(t, 90*time.Second)))
}

// counter counts seconds, starting at 1,000,000.
func counter(t time.Duration) uint32 {
	return 1_000_000 + uint32(t/time.Second)
}

// frequency is a grid frequency: 50 Hz ± 0.05 Hz, period 20 s; a float64 so
// the demo shows digits a float32 could not carry.
func frequency(t time.Duration) float64 {
	return 50 + 0.05*sine(t, 20*time.Second)
}

// energy is an energy total in 0.01 kWh, +3 per second, starting above 2^40
// so all four registers matter.
func energy(t time.Duration) uint64 {
	return 1_234_567_890_123 + 3*uint64(t/time.Second)
}

// temperature is a motor temperature in 0.1 °C ramping from -20.0 °C to
// +80.0 °C and back, one step per 100 ms (a 200 s triangle): it crosses zero
// both ways, which catches int16 read as uint16.
func temperature(t time.Duration) int16 {
	k := int64(t/(100*time.Millisecond)) % 2000
	if k < 1000 {
		return int16(-200 + k)
	}
	return int16(800 - (k - 1000))
}

// speed is a pump speed in rpm, 1500 ± 1000, period 45 s.
func speed(t time.Duration) uint16 {
	return uint16(1500 + math.Round(1000*sine(t, 45*time.Second)))
}

// The bits of the pump drive's alarm word.
const (
	bitOvertemp    = 0  // temperature at or above 60.0 °C
	bitFrost       = 1  // temperature below 0 °C
	bitHeartbeat   = 4  // toggles every second
	bitMaintenance = 15 // always set: exercises the top bit
)

// alarmWord is the pump drive's alarm register.
func alarmWord(t time.Duration) uint16 {
	var w uint16
	temp := temperature(t)
	if temp >= 600 {
		w |= 1 << bitOvertemp
	}
	if temp < 0 {
		w |= 1 << bitFrost
	}
	if (t/time.Second)%2 == 1 {
		w |= 1 << bitHeartbeat
	}
	w |= 1 << bitMaintenance
	return w
}

// alarmBit returns the value function of one bit of the alarm word, so the
// bit points are views of the word and can never disagree with it.
func alarmBit(bit uint) func(time.Duration) bool {
	return func(t time.Duration) bool { return alarmWord(t)>>bit&1 == 1 }
}

// netVolume is a signed volume total in mL (forward minus reverse flow):
// below -2^32 so an int64 read as 32 bits cannot pass, +12.345 L per second.
func netVolume(t time.Duration) int64 {
	return -9_876_543_210_000 + 12_345*int64(t/time.Second)
}

// beacon is a warning beacon output: toggles every 3 s.
func beacon(t time.Duration) bool { return (t/(3*time.Second))%2 == 1 }

// running is the pump's running feedback: on for 50 s of every minute.
func running(t time.Duration) bool { return t%time.Minute < 50*time.Second }

// Fixed strings. The serial number has an odd length so that a BADC decoder
// must handle a half-filled last register.
const (
	serialNumber = "SN-042917"
	model        = "FieldBridge PM-3000"
	modelRegs    = 12
)

// spacePadded pads s with spaces to n registers, as many devices pad their
// strings, so the gateway's trimming of trailing spaces is exercised too.
func spacePadded(s string, regs int) string {
	return s + strings.Repeat(" ", 2*regs-len(s))
}
