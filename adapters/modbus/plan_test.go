package modbus

import (
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"
)

func items(spans ...[2]int) []planItem {
	out := make([]planItem, len(spans))
	for i, s := range spans {
		out[i] = planItem{addr: s[0], size: s[1], read: pointRead{regs: s[1]}}
	}
	return out
}

func TestPlanTableBoundaries(t *testing.T) {
	cases := []struct {
		name  string
		items []planItem
		lim   limits
		want  [][2]int // start, count per request
	}{
		{"single", items([2]int{5, 2}), limits{125, 10}, [][2]int{{5, 2}}},
		{"gap exactly max_gap merges", items([2]int{0, 1}, [2]int{11, 1}), limits{125, 10}, [][2]int{{0, 12}}},
		{"gap one over splits", items([2]int{0, 1}, [2]int{12, 1}), limits{125, 10}, [][2]int{{0, 1}, {12, 1}}},
		{"max_gap 0 merges adjacent only", items([2]int{0, 1}, [2]int{1, 1}, [2]int{3, 1}), limits{125, 0}, [][2]int{{0, 2}, {3, 1}}},
		{"exactly max registers", items([2]int{0, 4}, [2]int{121, 4}), limits{125, 200}, [][2]int{{0, 125}}},
		{"one over max registers", items([2]int{0, 4}, [2]int{122, 4}), limits{125, 200}, [][2]int{{0, 4}, {122, 4}}},
		{"overlapping points share", items([2]int{10, 2}, [2]int{10, 1}, [2]int{11, 1}), limits{125, 0}, [][2]int{{10, 2}}},
		{"contained point does not extend", items([2]int{0, 10}, [2]int{2, 2}, [2]int{12, 1}), limits{125, 2}, [][2]int{{0, 13}}},
		{"unsorted input", items([2]int{50, 1}, [2]int{0, 1}, [2]int{25, 1}), limits{125, 30}, [][2]int{{0, 51}}},
	}
	for _, c := range cases {
		got := planTable(Holding, c.items, c.lim)
		var spans [][2]int
		for _, q := range got {
			spans = append(spans, [2]int{int(q.start), int(q.count)})
		}
		if len(spans) != len(c.want) {
			t.Errorf("%s: got %v, want %v", c.name, spans, c.want)
			continue
		}
		for i := range spans {
			if spans[i] != c.want[i] {
				t.Errorf("%s: got %v, want %v", c.name, spans, c.want)
				break
			}
		}
	}
}

// TestPlanTableOptimal checks on random layouts that every point lands in
// exactly one request that covers it within the limits, and that the greedy
// plan uses no more requests than the optimum found by dynamic programming.
func TestPlanTableOptimal(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for iter := 0; iter < 3000; iter++ {
		n := 1 + rng.IntN(12)
		lim := limits{max: 4 + rng.IntN(30), gap: rng.IntN(8)}
		var spans [][2]int
		for i := 0; i < n; i++ {
			size := 1 + rng.IntN(min(4, lim.max))
			spans = append(spans, [2]int{rng.IntN(80), size})
		}
		its := items(spans...)
		for i := range its {
			its[i].read.off = -1
			its[i].read.regs = i // identify the item
		}
		plan := planTable(Holding, its, lim)
		seen := make([]int, n)
		for _, q := range plan {
			if int(q.count) > lim.max {
				t.Fatalf("request %d+%d exceeds max %d (%v)", q.start, q.count, lim.max, spans)
			}
			for _, r := range q.reads {
				id := r.regs
				seen[id]++
				s := spans[id]
				if s[0] < int(q.start) || s[0]+s[1] > q.end() || r.off != s[0]-int(q.start) {
					t.Fatalf("point %v not covered at the right offset by %d+%d (off %d)", s, q.start, q.count, r.off)
				}
			}
		}
		for id, c := range seen {
			if c != 1 {
				t.Fatalf("point %v placed %d times (%v)", spans[id], c, spans)
			}
		}
		if opt := optimalBlocks(spans, lim); len(plan) > opt {
			t.Fatalf("greedy used %d requests, optimum %d, for %v with %+v", len(plan), opt, spans, lim)
		}
	}
}

// optimalBlocks computes the minimum number of requests by DP over runs of
// points sorted by address.
func optimalBlocks(spans [][2]int, lim limits) int {
	s := append([][2]int(nil), spans...)
	sort.Slice(s, func(i, j int) bool { return s[i][0] < s[j][0] })
	n := len(s)
	best := make([]int, n+1)
	for i := 1; i <= n; i++ {
		best[i] = 1 << 30
	}
	for i := 0; i < n; i++ {
		start, end := s[i][0], s[i][0]+s[i][1]
		for j := i; j < n; j++ {
			if j > i {
				if s[j][0]-end > lim.gap {
					break
				}
				end = max(end, s[j][0]+s[j][1])
			}
			if end-start > lim.max {
				break
			}
			best[j+1] = min(best[j+1], best[i]+1)
		}
	}
	return best[n]
}

func TestWireBytes(t *testing.T) {
	q := request{table: Holding, count: 10}
	if req, resp := q.wireBytes(transportRTU); req != 8 || resp != 25 {
		t.Errorf("rtu FC03 x10: %d/%d bytes, want 8/25", req, resp)
	}
	if req, resp := q.wireBytes(transportTCP); req != 12 || resp != 29 {
		t.Errorf("tcp FC03 x10: %d/%d bytes, want 12/29", req, resp)
	}
	c := request{table: Coil, count: 9}
	if req, resp := c.wireBytes(transportRTU); req != 8 || resp != 7 {
		t.Errorf("rtu FC01 x9: %d/%d bytes, want 8/7", req, resp)
	}
}

// TestHealthy: a bus counts as stuck only when one poll outlasts what its
// timeouts allow, plus slack.
func TestHealthy(t *testing.T) {
	timeout := time.Second
	retries := 1
	a := &Adapter{cfg: &Config{ConnectTimeout: 3 * time.Second}}
	a.cfg.Base.Name = "line1"
	a.devices = []*device{{cfg: &DeviceConfig{Timeout: timeout, retries: retries}, requests: make([]request, 4)}}
	if got, want := a.pollBound(), 4*2*(4*time.Second); got != want {
		t.Fatalf("pollBound = %s, want %s", got, want)
	}
	now := time.Now()
	if err := a.Healthy(now); err != nil {
		t.Errorf("idle bus: %v", err)
	}
	a.stats.busySince.Store(now.Add(-a.pollBound()).UnixNano())
	if err := a.Healthy(now); err != nil {
		t.Errorf("a long but possible poll: %v", err)
	}
	a.stats.busySince.Store(now.Add(-a.pollBound() - stuckAfter - time.Second).UnixNano())
	if err := a.Healthy(now); err == nil || !strings.Contains(err.Error(), "bus line1 stuck") {
		t.Errorf("stuck bus: %v", err)
	}
}
