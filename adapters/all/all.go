// Package all enables every adapter compiled into the gateway: one blank
// import per adapter. Adding a protocol is one folder under adapters/ and one
// line here.
package all

import (
	_ "github.com/fieldbridge/fieldbridge/adapters/modbus" // type: modbus
)
