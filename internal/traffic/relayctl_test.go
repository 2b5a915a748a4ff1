package traffic

import (
	"context"
	"testing"
	"time"

	"github.com/baton-sh/baton/dockerctl"
)

// execOnly answers docker exec with a fixed result; nothing else is called.
type execOnly struct {
	Engine
	res dockerctl.ExecResult
}

func (e execOnly) Exec(context.Context, string, []string) (dockerctl.ExecResult, error) {
	return e.res, nil
}

// wait-drained over docker exec exits 1 when the target did not drain, and
// its answer, with the counts of what the stop will cut, is on stdout all
// the same.
func TestExecWaitDrainedCounts(t *testing.T) {
	c := &execControl{eng: execOnly{res: dockerctl.ExecResult{ExitCode: 1,
		Stdout: `{"drained":false,"waited":7,"open":3,"generation":2,"current":null,"draining":[]}` + "\n"}}, container: "r"}
	w, err := c.WaitDrained(t.Context(), "old", time.Second)
	if err != nil || w.Drained || w.Waited != 7 || w.Open != 3 {
		t.Fatalf("not drained: %+v, %v; want waited 7, open 3", w, err)
	}
	c = &execControl{eng: execOnly{res: dockerctl.ExecResult{Stdout: `{"drained":true,"waited":2,"open":0,"generation":2,"current":null,"draining":[]}` + "\n"}}, container: "r"}
	w, err = c.WaitDrained(t.Context(), "old", time.Second)
	if err != nil || !w.Drained || w.Waited != 2 {
		t.Fatalf("drained: %+v, %v", w, err)
	}
}
