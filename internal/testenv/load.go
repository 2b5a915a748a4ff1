package testenv

import (
	"fmt"
	"strings"

	"github.com/baton-sh/baton/internal/loadgen"
)

// CheckLoad fails the test on any failed request, listing the first ten,
// and when the load hardly ran (fewer than 100 requests), so a test whose
// load never reached the service cannot pass on zero failures.
func CheckLoad(t TB, res *loadgen.Result) {
	t.Helper()
	t.Logf("load: %s", res.Summary())
	if res.Total() < 100 {
		t.Fatalf("only %d requests were made; the load did not run", res.Total())
	}
	if n := res.Failed(); n > 0 {
		var lines []string
		for i, f := range res.Failures() {
			if i == 10 {
				break
			}
			lines = append(lines, fmt.Sprintf("%s %s at %s: %d %s", f.Method, f.Version, f.Start.Format("15:04:05.000"), f.Status, f.Err))
		}
		t.Fatalf("%d of %d requests failed:\n%s", n, res.Total(), strings.Join(lines, "\n"))
	}
}
