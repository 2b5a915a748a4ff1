package testenv_test

import (
	"context"
	"fmt"
	"os"

	"github.com/baton-sh/baton/internal/testenv"
)

// A command such as the benchmark uses an Env where a test has its *testing.T:
// helpers run inside Run, and Close undoes what they made.
func ExampleNewEnv() {
	env := testenv.NewEnv(context.Background(), "bench", os.Stderr)
	defer func() {
		if err := env.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "cleanup:", err)
		}
	}()
	var ng *testenv.Nginx
	if err := env.Run(func(t testenv.TB) {
		cli := testenv.Docker(t)
		ref, _ := testenv.DemoImage(t, cli, testenv.DemoImageOpts{Version: "v1", HealthCheck: true})
		net := testenv.Network(t, cli, "", false)
		id := testenv.RunDemo(t, cli, testenv.RunOpts{Image: ref, Network: net})
		ng = testenv.HostNginx(t, testenv.NginxOpts{InitialServers: []string{testenv.ContainerIP(t, cli, id, net) + ":8080"}})
	}); err != nil {
		fmt.Fprintln(os.Stderr, "setup:", err)
		return
	}
	fmt.Println("load goes to", ng.URL())
}
