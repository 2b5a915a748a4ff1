package bench

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/baton-sh/baton/internal/loadgen"
)

func TestFailureReasonGroupsAcrossURLs(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		s    loadgen.Sample
		want string
	}{
		{loadgen.Sample{Method: "POST", Err: `Post "http://127.0.0.1:41234/": EOF`}, "POST EOF"},
		{loadgen.Sample{Method: "GET", Err: `Get "http://127.0.0.1:5/": dial tcp 127.0.0.1:5: connect: connection refused`}, "GET dial tcp 127.0.0.1:5: connect: connection refused"},
		{loadgen.Sample{Method: "GET", Err: "status 502: <html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>"}, "GET status 502: 502 Bad Gateway"},
		{loadgen.Sample{Method: "GET", Err: "status 503: warming up"}, "GET status 503: warming up"},
		{loadgen.Sample{Method: "POST", Err: "read tcp 127.0.0.1:37528->127.0.0.1:41745: read: connection reset by peer"}, "POST read tcp 127.0.0.1:*->127.0.0.1:41745: read: connection reset by peer"},
	} {
		if got := failureReason(tc.s); got != tc.want {
			t.Errorf("failureReason(%q) = %q, want %q", tc.s.Err, got, tc.want)
		}
	}
	long := failureReason(loadgen.Sample{Method: "GET", Err: strings.Repeat("é", 200)})
	if !strings.HasSuffix(long, "…") || len([]rune(long)) != len("GET ")+90+1 {
		t.Errorf("a long reason is not cut short: %q", long)
	}
}

func TestTableShowsEveryMode(t *testing.T) {
	t.Parallel()
	rep := &Report{Modes: []*ModeReport{
		{Mode: ModeRelayHost, Deploys: make([]Deploy, 3), Requests: 81234, DeployP50: 3100 * time.Millisecond, DeployMax: 4 * time.Second,
			Inside:  Latency{P50: 2100 * time.Microsecond, P99: 9800 * time.Microsecond, Max: 40 * time.Millisecond, Count: 10},
			Outside: Latency{P50: 1900 * time.Microsecond, P99: 8 * time.Millisecond, Max: 35 * time.Millisecond, Count: 10}},
		{Mode: ModeNaive, Error: "setting up: boom"},
	}}
	var text, md strings.Builder
	if err := rep.WriteTable(&text); err != nil {
		t.Fatal(err)
	}
	if err := rep.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(text.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "mode ") {
		t.Fatalf("table:\n%s", text.String())
	}
	for _, want := range []string{"0/81234", "3.1s/4.0s", "2.1ms/9.8ms/40ms", "1.9ms/8.0ms/35ms"} {
		if !strings.Contains(lines[1], want) {
			t.Errorf("relay-host row %q lacks %q", lines[1], want)
		}
	}
	if !strings.Contains(lines[2], "naive") || !strings.Contains(lines[2], "error") {
		t.Errorf("naive row %q does not show the error", lines[2])
	}
	if mdLines := strings.Split(strings.TrimSpace(md.String()), "\n"); len(mdLines) != 4 || !strings.HasPrefix(mdLines[1], "| --- |") {
		t.Fatalf("markdown:\n%s", md.String())
	}
}

func TestSideBySideKeepsEachEnginesNumbersInItsColumn(t *testing.T) {
	t.Parallel()
	old := &Report{Engine: Engine{Version: "20.10.24", API: "1.41", Store: "fuse-overlayfs"}, Deploys: 3, Modes: []*ModeReport{
		{Mode: ModeRelayHost, Deploys: make([]Deploy, 3), Requests: 1000, DeployP50: 3 * time.Second, DeployMax: 4 * time.Second},
		{Mode: ModeNaive, Deploys: make([]Deploy, 3), Requests: 900, Failed: 90, DeployP50: 2 * time.Second, DeployMax: 2 * time.Second},
	}}
	cur := &Report{Engine: Engine{Version: "2.0.0-beta.24", API: "1.56", Store: "containerd image store"}, Deploys: 3, Modes: []*ModeReport{
		{Mode: ModeRelayHost, Deploys: make([]Deploy, 3), Requests: 2000, Failed: 1, DeployP50: 5 * time.Second, DeployMax: 6 * time.Second},
		{Mode: ModeNone, Error: "setting up: boom"},
	}}
	var out strings.Builder
	if err := WriteSideBySide(&out, []*Report{old, cur}); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	t.Log("\n" + text)
	for _, want := range []string{
		"[1] Docker 20.10.24 (API 1.41, fuse-overlayfs)",
		"[2] Docker 2.0.0-beta.24 (API 1.56, containerd image store)",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("legend lacks %q:\n%s", want, text)
		}
	}
	lines := strings.Split(strings.TrimSpace(text), "\n")
	table := lines[len(lines)-4:]
	if !strings.Contains(table[0], "failed/total [1]") || !strings.Contains(table[0], "failed/total [2]") {
		t.Fatalf("header %q", table[0])
	}
	// mode, failed [1], failed [2], deploy [1], deploy [2], ...
	for i, want := range [][]string{
		{"relay-host", "0/1000", "1/2000", "3.0s/4.0s", "5.0s/6.0s"},
		{"naive", "90/900", "-", "2.0s/2.0s", "-"},
		{"none", "-", "error", "-", "-"},
	} {
		if got := strings.Fields(table[i+1])[:5]; !slices.Equal(got, want) {
			t.Errorf("row %d = %q, want %q", i+1, got, want)
		}
	}
	if err := WriteSideBySide(&out, nil); err == nil {
		t.Error("no reports: no error")
	}
}

// engineShare subtracts the engine's own medians from the deploys' and
// says nothing without a floor or a time to traffic.
func TestEngineShare(t *testing.T) {
	s := time.Second
	deploys := []Deploy{
		{ToTraffic: 1800 * time.Millisecond, Duration: 2600 * time.Millisecond},
		{ToTraffic: 1700 * time.Millisecond, Duration: 2400 * time.Millisecond},
		{ToTraffic: 2000 * time.Millisecond, Duration: 3000 * time.Millisecond},
	}
	floor := &EngineFloor{Runs: 3, Networks: 2, Start: s / 2, StartToReady: 1500 * time.Millisecond, Stop: 400 * time.Millisecond}
	got := engineShare(&ModeReport{Deploys: deploys, Engine: floor})
	for _, want := range []string{"same 2 networks", "start 500ms", "start to app ready 1.5s", "stop 400ms",
		"to traffic 1.8s (+300ms over", "return 800ms after traffic (+400ms over"} {
		if !strings.Contains(got, want) {
			t.Errorf("engineShare = %q, want it to contain %q", got, want)
		}
	}
	// A deploy faster than the floor's own run shows a minus, once.
	fast := engineShare(&ModeReport{Deploys: []Deploy{{ToTraffic: 1400 * time.Millisecond, Duration: 1750 * time.Millisecond}}, Engine: floor})
	if !strings.Contains(fast, "(-100ms over") || !strings.Contains(fast, "(-50ms over") {
		t.Errorf("engineShare = %q, want -100ms and -50ms", fast)
	}
	if got := engineShare(&ModeReport{Deploys: deploys}); got != "" {
		t.Errorf("without a floor: %q, want nothing", got)
	}
	if got := engineShare(&ModeReport{Deploys: []Deploy{{Duration: s}}, Engine: floor}); got != "" {
		t.Errorf("without a time to traffic: %q, want nothing", got)
	}
}
