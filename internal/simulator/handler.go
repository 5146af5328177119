package simulator

import (
	"github.com/simonvetter/modbus"
)

// handler adapts the simulator to the library's RequestHandler, keeping
// those four methods out of the Simulator's own API.
//
// The library calls it from one goroutine per client connection, so calls
// run concurrently; each takes the simulator's mutex for its whole run.
// Errors must be the library's own values, unwrapped: it maps them to
// exception codes with ==, and anything else becomes exception 4.
type handler struct{ s *Simulator }

var _ modbus.RequestHandler = handler{}

// HandleCoils serves FC 1 (read), 5 and 15 (write).
func (h handler) HandleCoils(req *modbus.CoilsRequest) ([]bool, error) {
	if req.IsWrite {
		regs := make([]uint16, len(req.Args))
		for i, b := range req.Args {
			if b {
				regs[i] = 1
			}
		}
		return nil, h.s.write(req.UnitId, Coil, req.Addr, regs)
	}
	return h.s.readBits(req.UnitId, Coil, req.Addr, req.Quantity)
}

// HandleDiscreteInputs serves FC 2.
func (h handler) HandleDiscreteInputs(req *modbus.DiscreteInputsRequest) ([]bool, error) {
	return h.s.readBits(req.UnitId, DiscreteInput, req.Addr, req.Quantity)
}

// HandleHoldingRegisters serves FC 3 (read), 6 and 16 (write).
func (h handler) HandleHoldingRegisters(req *modbus.HoldingRegistersRequest) ([]uint16, error) {
	if req.IsWrite {
		return nil, h.s.write(req.UnitId, Holding, req.Addr, req.Args)
	}
	return h.s.read(req.UnitId, Holding, req.Addr, req.Quantity)
}

// HandleInputRegisters serves FC 4.
func (h handler) HandleInputRegisters(req *modbus.InputRegistersRequest) ([]uint16, error) {
	return h.s.read(req.UnitId, Input, req.Addr, req.Quantity)
}

// readBits reads coils or discrete inputs, which are stored as 0/1 registers.
func (s *Simulator) readBits(unit uint8, t Table, addr, qty uint16) ([]bool, error) {
	regs, err := s.read(unit, t, addr, qty)
	if err != nil {
		return nil, err
	}
	out := make([]bool, len(regs))
	for i, r := range regs {
		out[i] = r != 0
	}
	return out, nil
}

// read returns qty registers (or bits as 0/1) from addr, all computed at one
// instant. Gaps inside a span read as 0.
func (s *Simulator) read(unit uint8, t Table, addr, qty uint16) ([]uint16, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	tm, err := s.lookup(unit, t, addr, qty)
	if err != nil {
		return nil, err
	}
	now := s.now()
	out := make([]uint16, qty)
	lo, hi := int(addr), int(addr)+int(qty)
	for _, e := range tm.owners {
		start, end := int(e.Address), int(e.Address)+e.Registers()
		if end <= lo || start >= hi {
			continue
		}
		regs := s.stored[e]
		if !e.Writable {
			regs, err = e.encode(e.value(now))
			if err != nil { // cannot happen: build encoded this point's type
				s.log.Error("encode failed", "point", e.Name, "err", err)
				return nil, modbus.ErrServerDeviceFailure
			}
		}
		for a := max(start, lo); a < min(end, hi); a++ {
			out[a-lo] = regs[a-start]
		}
	}
	return out, nil
}

// write stores values at addr if every address belongs to a writable point;
// otherwise it changes nothing, so a rejected write never half-applies.
func (s *Simulator) write(unit uint8, t Table, addr uint16, values []uint16) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	tm, err := s.lookup(unit, t, addr, uint16(len(values)))
	if err != nil {
		return err
	}
	owners := make([]*entry, len(values))
	for i := range values {
		a := addr + uint16(i)
		e := tm.owner(a)
		if e == nil || !e.Writable {
			name := "a gap"
			if e != nil {
				name = e.Name + " (read-only)"
			}
			s.log.Debug("write refused", "unit", unit, "table", t, "addr", a, "target", name)
			return modbus.ErrIllegalDataAddress
		}
		owners[i] = e
	}
	for i, v := range values {
		e := owners[i]
		s.stored[e][int(addr)+i-int(e.Address)] = v
	}
	s.log.Info("write stored", "unit", unit, "table", t, "addr", addr, "count", len(values))
	return nil
}

// lookup finds the unit's table and checks that the request lies in a span.
// Callers hold mu.
func (s *Simulator) lookup(unit uint8, t Table, addr, qty uint16) (*tableMap, error) {
	if s.state != stateRunning {
		// Close has begun: serve nothing more.
		return nil, modbus.ErrServerDeviceFailure
	}
	u := plant.units[unit]
	if u == nil {
		s.log.Debug("unknown unit", "unit", unit)
		return nil, modbus.ErrGWTargetFailedToRespond
	}
	tm := u.tables[t]
	if tm == nil || qty == 0 || !tm.inSpan(addr, qty) {
		s.log.Debug("outside the map", "unit", unit, "table", t, "addr", addr, "count", qty)
		return nil, modbus.ErrIllegalDataAddress
	}
	return tm, nil
}
