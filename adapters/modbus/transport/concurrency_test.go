package transport

import (
	"errors"
	"sync"
	"testing"
	"time"
)

// The bus goroutine sends in a loop while a metrics goroutine reads Stats and
// the shutdown path calls Close: no data race (run with -race), and the loop
// ends with ErrClosed.
func TestStatsAndCloseFromOtherGoroutines(t *testing.T) {
	sm := newSim()
	type setup struct {
		name string
		tr   interface {
			busTransportStats
			SetTimeout(time.Duration)
		}
		req []byte
	}
	b := newFakeBus(t)
	b.serve(func(n int, req []byte) action { return action{bytes: sm.rtuAnswer(req)} })
	ser := newTestSerial(t, b, slowMachine)
	tcpSrv := serveTCP(t, mbapDevice(func(_, _ int, adu []byte) tcpAction { return tcpAction{bytes: sm.tcpAnswer(adu)} }))
	rtuSrv := serveTCP(t, rtuDeviceServer(func(_, _ int, req []byte) rtuServerAction {
		return rtuServerAction{bytes: sm.rtuAnswer(req)}
	}))
	for _, s := range []setup{
		{"serial", ser, readRegs(t, 1, 0, 2)},
		{"tcp", newTestTCP(t, tcpSrv.addr(), slowMachine), tcpReadRegs(t, tcpPackager(1), 0, 2)},
		{"rtu over tcp", newTestRTUOverTCP(t, rtuSrv.addr(), 0, slowMachine), readRegs(t, 1, 0, 2)},
	} {
		t.Run(s.name, func(t *testing.T) {
			var wg sync.WaitGroup
			stop := make(chan struct{})
			wg.Add(1)
			go func() { // metrics
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
						s.tr.Stats()
					}
				}
			}()
			sent := make(chan error, 1)
			wg.Add(1)
			go func() { // the bus
				defer wg.Done()
				for {
					s.tr.SetTimeout(slowMachine)
					if _, err := s.tr.Send(s.req); err != nil {
						sent <- err
						return
					}
				}
			}()
			waitFor(t, "some traffic", 5*time.Second, func() bool { return s.tr.Stats().Responses >= 20 })
			s.tr.Close()
			select {
			case err := <-sent:
				if !errors.Is(err, ErrClosed) {
					t.Errorf("Send after Close: %v, want ErrClosed", err)
				}
			case <-time.After(5 * time.Second):
				t.Error("Send loop did not end after Close")
			}
			close(stop)
			wg.Wait()
		})
	}
}

type busTransportStats interface {
	Send([]byte) ([]byte, error)
	Close() error
	Stats() Stats
}
