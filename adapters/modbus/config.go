package modbus

import (
	"time"

	"github.com/fieldbridge/fieldbridge/adapters"
)

// Config is one Modbus bus: a serial line, a Modbus TCP endpoint, or a serial
// device server speaking RTU over TCP. Everything on it is polled by a single
// goroutine, so requests never overlap on the wire.
type Config struct {
	adapters.Base `yaml:",inline"`

	// Transport is tcp (Modbus TCP), rtu (serial line) or rtuovertcp (RTU
	// frames over a TCP socket, e.g. a Moxa NPort in TCP server mode).
	Transport string `yaml:"transport"`
	// Address is host:port for tcp and rtuovertcp (port 502 if omitted).
	Address string `yaml:"address"`
	// Device is the serial port for rtu, e.g. /dev/ttyUSB0 or
	// /dev/serial/by-id/usb-FTDI_… (stable across reboots and replugging).
	Device string `yaml:"device"`
	// Baud is the serial speed (rtu: required; rtuovertcp: optional, used for
	// timing projections only).
	Baud int `yaml:"baud"`
	// Parity is N, E or O (default E, the Modbus default).
	Parity string `yaml:"parity"`
	// DataBits is 7 or 8 (default 8).
	DataBits int `yaml:"data_bits"`
	// StopBits is 1 or 2 (default 1).
	StopBits int `yaml:"stop_bits"`

	// Timeout waits for a reply (default 1s); devices may override it.
	Timeout time.Duration `yaml:"timeout"`
	// ConnectTimeout bounds a TCP connect (default 3s).
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// Retries is how many more times a request is tried in the same cycle
	// after a timeout or transport error (default 1); devices may override.
	Retries *int `yaml:"retries"`
	// DelayBetweenRequests is a pause after every transaction, for devices
	// and converters that need time between frames (default 0).
	DelayBetweenRequests time.Duration `yaml:"delay_between_requests"`
	// BackoffInitial and BackoffMax bound the exponential backoff for dead
	// devices and for reconnecting a lost port or connection (1s, 60s).
	BackoffInitial time.Duration `yaml:"backoff_initial"`
	BackoffMax     time.Duration `yaml:"backoff_max"`

	Devices []DeviceConfig `yaml:"devices"`

	// Filled by Check.
	transport transportKind
	parity    byte
	retries   int
}

// DeviceConfig is one Modbus unit on the bus.
type DeviceConfig struct {
	// Name is unique across the gateway; it is a topic level.
	Name string `yaml:"name"`
	// Unit is the Modbus unit id (slave address): 1–247 on serial lines,
	// 0–255 over Modbus TCP.
	Unit *int `yaml:"unit"`
	// Interval between polls (default 1s).
	Interval time.Duration `yaml:"interval"`
	// Timeout and Retries override the bus values for this device.
	Timeout time.Duration `yaml:"timeout"`
	Retries *int          `yaml:"retries"`
	// MaxRegistersPerRequest caps a register read (default and maximum 125).
	MaxRegistersPerRequest int `yaml:"max_registers_per_request"`
	// MaxBitsPerRequest caps a coil/discrete read (default and maximum 2000).
	MaxBitsPerRequest int `yaml:"max_bits_per_request"`
	// MaxGap is how many unused registers the planner may read and discard
	// to merge two blocks into one request (default 10). Set 0 for devices
	// that refuse reads spanning undefined registers.
	MaxGap *int `yaml:"max_gap"`
	// MaxBitGap is the same for coils and discrete inputs, in bits (default 80).
	MaxBitGap *int `yaml:"max_bit_gap"`
	// Order is the default byte order of the device's points (default ABCD).
	Order string `yaml:"order"`
	// Topic, Publish and Deadband are defaults for the device's points.
	Topic    string   `yaml:"topic"`
	Publish  string   `yaml:"publish"`
	Deadband *float64 `yaml:"deadband"`
	// WriteFunction is 6 (default: FC06 for one register, FC16 for
	// several; FC05 for coils) or 16 for devices that accept only the
	// "write multiple" functions (FC16 always; FC15 for coils).
	WriteFunction int `yaml:"write_function"`
	// Description is free text for people reading the config.
	Description string `yaml:"description"`

	Points []PointConfig `yaml:"points"`

	// Filled by Check.
	unit      int
	retries   int
	maxGap    int
	maxBitGap int
}

// PointConfig is one value read from a device.
type PointConfig struct {
	// Name is unique within the device; it is a topic level.
	Name string `yaml:"name"`
	// Table is holding, input, coil or discrete.
	Table string `yaml:"table"`
	// Address is the 0-based PDU address (register 40001 in a manual's
	// 1-based numbering is holding address 0).
	Address *int `yaml:"address"`
	// Type is bool, int16, uint16, int32, uint32, int64, uint64, float32,
	// float64 or string (default uint16 for registers, bool for bits).
	Type string `yaml:"type"`
	// Order is the byte order (default: the device's, else ABCD).
	Order string `yaml:"order"`
	// Bit reads one bit (0 = least significant) of a register as a bool.
	Bit *int `yaml:"bit"`
	// Length is the size of a string in registers (2 characters each).
	Length int `yaml:"length"`
	// Scale and Offset: published value = raw × scale + offset.
	Scale  *float64 `yaml:"scale"`
	Offset *float64 `yaml:"offset"`
	// Unit is the engineering unit added to payloads, e.g. "V".
	Unit string `yaml:"unit"`
	// Topic overrides the topic template for this point.
	Topic string `yaml:"topic"`
	// Publish is on_change (default) or every_poll.
	Publish string `yaml:"publish"`
	// Deadband suppresses on_change publishes smaller than this.
	Deadband *float64 `yaml:"deadband"`
	// Writable accepts commands on {gateway}/{device}/{point}/set (coils
	// and holding registers only).
	Writable bool `yaml:"writable"`
	// Min and Max bound the values a command may set, in engineering units
	// (after scale and offset); writes outside are refused.
	Min *float64 `yaml:"min"`
	Max *float64 `yaml:"max"`
	// Description is free text for people reading the config.
	Description string `yaml:"description"`

	// Filled by Check.
	table Table
	typ   DataType
	spec  codecSpec
	regs  int // registers (or bits) covered
}

type transportKind uint8

const (
	transportTCP transportKind = iota + 1
	transportRTU
	transportRTUOverTCP
)

// Table is a Modbus data table; its value is the read function code.
type Table uint8

// Tables.
const (
	Coil     Table = 1
	Discrete Table = 2
	Holding  Table = 3
	Input    Table = 4
)

func (t Table) String() string {
	switch t {
	case Coil:
		return "coil"
	case Discrete:
		return "discrete"
	case Holding:
		return "holding"
	case Input:
		return "input"
	}
	return "table?"
}

func (t Table) bits() bool { return t == Coil || t == Discrete }

// Defaults, in one place.
const (
	defaultTimeout        = time.Second
	defaultConnectTimeout = 3 * time.Second
	defaultRetries        = 1
	defaultInterval       = time.Second
	defaultMaxRegisters   = 125
	defaultMaxBits        = 2000
	defaultMaxGap         = 10
	defaultMaxBitGap      = 80
	defaultBackoffInitial = time.Second
	defaultBackoffMax     = time.Minute
	defaultDataBits       = 8
	defaultStopBits       = 1
	defaultParity         = 'E'
)

func init() {
	adapters.Register(adapters.Registration{
		Type:      "modbus",
		NewConfig: func() adapters.Config { return new(Config) },
	})
}
