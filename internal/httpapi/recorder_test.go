package httpapi

import (
	"errors"
	"testing"
	"time"

	"github.com/fieldbridge/fieldbridge/adapters"
)

func testDevice(name string, points ...string) *adapters.Device {
	d := &adapters.Device{Name: name, Adapter: "bus"}
	for _, p := range points {
		d.Points = append(d.Points, &adapters.Point{Device: name, Name: p})
	}
	return d
}

// TestRecorderAggregates: points bad and the stalest good value per device,
// a point never read good counting from the start.
func TestRecorderAggregates(t *testing.T) {
	a, b := testDevice("a", "x", "y"), testDevice("b", "z")
	as := []adapters.Adapter{adapterOf(a, b)}
	adapters.Number(as)
	start := time.Unix(1000, 0)
	r := NewRecorder(as, nullSink{}, start)
	t1, t2 := start.Add(5*time.Second), start.Add(9*time.Second)
	fail := errors.New("unit 1 holding 0..1: no response (timeout)")
	r.Publish([]adapters.Sample{
		{Point: a.Points[0], Value: adapters.Int(1), Time: t1},
		{Point: a.Points[1], Value: adapters.Int(2), Time: t1},
	})
	r.Publish([]adapters.Sample{{Point: a.Points[1], Err: fail, Time: t2}, {Point: b.Points[0], Err: fail, Time: t2}})
	if g := r.byDev[a].aggregate(start); g.bad != 1 || g.total != 2 || !g.stalest.Equal(t1) {
		t.Errorf("a: %+v", g)
	}
	if g := r.byDev[b].aggregate(start); g.bad != 1 || !g.stalest.Equal(start) {
		t.Errorf("b (never good): %+v", g)
	}
	r.Publish([]adapters.Sample{{Point: a.Points[0], Value: adapters.Int(3), Time: t2}, {Point: a.Points[1], Value: adapters.Int(4), Time: t2}})
	if g := r.byDev[a].aggregate(start); g.bad != 0 || !g.stalest.Equal(t2) {
		t.Errorf("a after recovery: %+v", g)
	}
	if s := r.byDev[b].snapshot(false); s.lastErr != fail || !s.lastErrTime.Equal(t2) {
		t.Errorf("b's last error: %+v", s)
	}
}

// TestRecorderAllocationFree: the poll path pays no allocation for the
// status page.
func TestRecorderAllocationFree(t *testing.T) {
	d := testDevice("a", "x", "y", "z")
	as := []adapters.Adapter{adapterOf(d)}
	adapters.Number(as)
	r := NewRecorder(as, nullSink{}, time.Now())
	fail := errors.New("bad")
	batch := []adapters.Sample{
		{Point: d.Points[0], Value: adapters.Float32(1.5), Time: time.Now()},
		{Point: d.Points[1], Value: adapters.String("abc"), Time: time.Now()},
		{Point: d.Points[2], Err: fail, Time: time.Now()},
	}
	if n := testing.AllocsPerRun(1000, func() { r.Publish(batch) }); n != 0 {
		t.Errorf("Publish allocates %v times per batch", n)
	}
}
