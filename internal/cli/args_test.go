package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strings"
	"testing"

	ucli "github.com/urfave/cli/v2"

	"github.com/baton-sh/baton/internal/doccommands"
	"github.com/baton-sh/baton/internal/notify"
	"github.com/baton-sh/baton/internal/testenv"
)

// parsed is what a command's Action saw: which command ran, the flags that
// were set (by name, as strings) and the positional arguments.
type parsed struct {
	cmd   string
	flags map[string]string
	args  []string
}

// parseOnly runs args through the real app with every Action replaced by a
// recorder, so the test sees exactly what the commands would get.
func parseOnly(t *testing.T, args ...string) (parsed, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	app := newApp(&stdout, &stderr)
	var got parsed
	var walk func(prefix string, cmds []*ucli.Command)
	walk = func(prefix string, cmds []*ucli.Command) {
		for _, c := range cmds {
			name := strings.TrimSpace(prefix + " " + c.Name)
			walk(name, c.Subcommands)
			if c.Action == nil {
				continue
			}
			c.Action = func(cc *ucli.Context) error {
				got = parsed{cmd: name, flags: map[string]string{}, args: cc.Args().Slice()}
				for _, f := range cc.Command.Flags {
					n := f.Names()[0]
					switch {
					case !cc.IsSet(n):
					case isSlice(f):
						got.flags[n] = fmt.Sprint(cc.StringSlice(n))
					default:
						got.flags[n] = fmt.Sprint(cc.Value(n))
					}
				}
				for _, n := range []string{"state-dir", "log-level"} {
					if _, own := got.flags[n]; !own && cc.IsSet(n) {
						got.flags["global:"+n] = cc.String(n)
					}
				}
				return nil
			}
		}
	}
	walk("", app.Commands)
	argv, err := flagsFirst(app, append([]string{"baton"}, args...))
	if err != nil {
		return got, err
	}
	return got, app.RunContext(context.Background(), argv)
}

// TestFlagsAnywhere: every verb parses the same with its flags before, after
// or around its positional arguments.
func TestFlagsAnywhere(t *testing.T) {
	cases := []struct {
		name   string
		orders [][]string // every order must give want
		want   parsed
	}{
		{"deploy image", [][]string{
			{"deploy", "--image", "registry.example.com/shop/web:1.4.2", "web"},
			{"deploy", "web", "--image", "registry.example.com/shop/web:1.4.2"},
			{"deploy", "web", "--image=registry.example.com/shop/web:1.4.2"},
			{"deploy", "-image", "registry.example.com/shop/web:1.4.2", "web"},
		}, parsed{"deploy", map[string]string{"image": "registry.example.com/shop/web:1.4.2"}, []string{"web"}}},
		{"deploy bools and values", [][]string{
			{"deploy", "--force", "-q", "--http-probe", "/healthz", "--health-timeout", "2m", "web"},
			{"deploy", "web", "--force", "-q", "--http-probe", "/healthz", "--health-timeout", "2m"},
			{"deploy", "--force", "web", "-q", "--http-probe", "/healthz", "--health-timeout=2m"},
			{"deploy", "-q", "web", "--http-probe=/healthz", "--force=true", "--health-timeout", "2m"},
		}, parsed{"deploy", map[string]string{"force": "true", "quiet": "true", "http-probe": "/healthz", "health-timeout": "2m0s"}, []string{"web"}}},
		{"deploy bool false", [][]string{
			{"deploy", "--relay=false", "web"},
			{"deploy", "web", "--relay=false"},
		}, parsed{"deploy", map[string]string{"relay": "false"}, []string{"web"}}},
		{"deploy value that looks like a flag", [][]string{
			{"deploy", "--nginx-reload", "-s reload", "web"},
			{"deploy", "web", "--nginx-reload", "-s reload"},
		}, parsed{"deploy", map[string]string{"nginx-reload": "-s reload"}, []string{"web"}}},
		{"deploy compose short aliases", [][]string{
			{"deploy", "-p", "shop", "-f", "docker-compose.yml", "--nginx-upstream", "./baton/web.conf", "--nginx-service", "nginx", "web"},
			{"deploy", "web", "-p", "shop", "-f", "docker-compose.yml", "--nginx-upstream", "./baton/web.conf", "--nginx-service", "nginx"},
			{"deploy", "-p", "shop", "web", "-f", "docker-compose.yml", "--nginx-service=nginx", "--nginx-upstream", "./baton/web.conf"},
		}, parsed{"deploy", map[string]string{"project-name": "shop", "compose-file": "[docker-compose.yml]", "nginx-upstream": "./baton/web.conf", "nginx-service": "nginx"}, []string{"web"}}},
		{"rollback", [][]string{
			{"rollback", "--json", "--drain", "10s", "web"},
			{"rollback", "web", "--json", "--drain", "10s"},
			{"rollback", "--json", "web", "--drain=10s"},
		}, parsed{"rollback", map[string]string{"json": "true", "drain": "10s"}, []string{"web"}}},
		{"status", [][]string{
			{"status", "--json", "web"},
			{"status", "web", "--json"},
		}, parsed{"status", map[string]string{"json": "true"}, []string{"web"}}},
		{"history", [][]string{
			{"history", "--json", "--limit", "5", "web"},
			{"history", "web", "--json", "--limit", "5"},
			{"history", "--limit=5", "web", "--json"},
		}, parsed{"history", map[string]string{"json": "true", "limit": "5"}, []string{"web"}}},
		{"watch (no positional)", [][]string{
			{"watch", "--interval", "5m", "--once", "--all"},
			{"watch", "--once", "--all", "--interval=5m"},
		}, parsed{"watch", map[string]string{"interval": "5m0s", "once": "true", "all": "true"}, []string{}}},
		{"serve (no positional)", [][]string{
			{"serve", "--listen", "127.0.0.1:9090", "--token-file", "tok"},
			{"serve", "--token-file=tok", "--listen", "127.0.0.1:9090"},
		}, parsed{"serve", map[string]string{"listen": "127.0.0.1:9090", "token-file": "tok"}, []string{}}},
		{"global flags after the verb", [][]string{
			{"--state-dir", "/tmp/s", "--log-level", "debug", "history", "web"},
			{"history", "web", "--state-dir", "/tmp/s", "--log-level=debug"},
			{"--log-level", "debug", "history", "--state-dir=/tmp/s", "web"},
		}, parsed{"history", map[string]string{"global:state-dir": "/tmp/s", "global:log-level": "debug"}, []string{"web"}}},
		{"relay subcommand flags after", [][]string{
			{"relay", "ctl", "set", "--control", "/tmp/c.sock", "--name", "web", "--addr", "a:1", "--addr", "b:2"},
			{"relay", "ctl", "set", "--name=web", "--addr", "a:1", "--control", "/tmp/c.sock", "--addr=b:2"},
		}, parsed{"relay ctl set", map[string]string{"control": "/tmp/c.sock", "name": "web", "addr": "[a:1 b:2]"}, []string{}}},
		{"relay serve own log-level", [][]string{
			{"relay", "serve", "--log-level", "debug", "--listen", ":1"},
			{"relay", "serve", "--listen", ":1", "--log-level=debug"},
		}, parsed{"relay serve", map[string]string{"log-level": "debug", "listen": ":1"}, []string{}}},
		{"promote", [][]string{
			{"promote", "--json", "-q", "web"},
			{"promote", "web", "--json", "-q"},
			{"promote", "-q", "web", "--json=true"},
		}, parsed{"promote", map[string]string{"json": "true", "quiet": "true"}, []string{"web"}}},
		{"abort", [][]string{
			{"abort", "--json", "--quiet", "web"},
			{"abort", "web", "--quiet", "--json"},
			{"abort", "--quiet", "web", "--json"},
		}, parsed{"abort", map[string]string{"json": "true", "quiet": "true"}, []string{"web"}}},
		{"relay dial", [][]string{
			{"relay", "dial", "--timeout", "3s", "10.0.0.2:80"},
			{"relay", "dial", "10.0.0.2:80", "--timeout", "3s"},
			{"relay", "dial", "10.0.0.2:80", "--timeout=3s"},
		}, parsed{"relay dial", map[string]string{"timeout": "3s"}, []string{"10.0.0.2:80"}}},
		{"relay ctl status", [][]string{
			{"relay", "ctl", "status", "--control", "/tmp/c.sock"},
			{"relay", "ctl", "status", "--control=/tmp/c.sock"},
		}, parsed{"relay ctl status", map[string]string{"control": "/tmp/c.sock"}, []string{}}},
		{"relay ctl split", [][]string{
			{"relay", "ctl", "split", "--control", "/tmp/c.sock", "--name", "web-new", "--addr", "a:1", "--percent", "20"},
			{"relay", "ctl", "split", "--percent=20", "--addr", "a:1", "--name", "web-new", "--control", "/tmp/c.sock"},
		}, parsed{"relay ctl split", map[string]string{"control": "/tmp/c.sock", "name": "web-new", "addr": "[a:1]", "percent": "20"}, []string{}}},
		{"relay ctl wait-drained", [][]string{
			{"relay", "ctl", "wait-drained", "--control", "/tmp/c.sock", "--name", "web-old", "--timeout", "5s"},
			{"relay", "ctl", "wait-drained", "--timeout=5s", "--name=web-old", "--control", "/tmp/c.sock"},
		}, parsed{"relay ctl wait-drained", map[string]string{"control": "/tmp/c.sock", "name": "web-old", "timeout": "5s"}, []string{}}},
		{"relay ctl forget", [][]string{
			{"relay", "ctl", "forget", "--control", "/tmp/c.sock", "--name", "web-old"},
			{"relay", "ctl", "forget", "--name=web-old", "--control=/tmp/c.sock"},
		}, parsed{"relay ctl forget", map[string]string{"control": "/tmp/c.sock", "name": "web-old"}, []string{}}},
		{"kernel-helper wait", [][]string{{"kernel-helper", "wait"}}, parsed{"kernel-helper wait", map[string]string{}, []string{}}},
		{"kernel-helper route", [][]string{
			{"kernel-helper", "route", "--service", "web", "--listen", "10.0.0.11:8081", "--target", "172.18.0.5:8080", "--source", "172.18.0.1", "--bridge", "br-0123456789ab"},
			{"kernel-helper", "route", "--bridge=br-0123456789ab", "--source", "172.18.0.1", "--target", "172.18.0.5:8080", "--listen=10.0.0.11:8081", "--service", "web"},
		}, parsed{"kernel-helper route", map[string]string{"service": "web", "listen": "10.0.0.11:8081", "target": "172.18.0.5:8080", "source": "172.18.0.1", "bridge": "br-0123456789ab"}, []string{}}},
		{"kernel-helper established", [][]string{
			{"kernel-helper", "established", "--pid", "42", "--port", "8080", "--from", "172.18.0.1"},
			{"kernel-helper", "established", "--from=172.18.0.1", "--port=8080", "--pid", "42"},
		}, parsed{"kernel-helper established", map[string]string{"pid": "42", "port": "8080", "from": "172.18.0.1"}, []string{}}},
	}
	for _, verb := range []string{"bypass", "remove", "target", "has", "connections"} {
		cases = append(cases, struct {
			name   string
			orders [][]string
			want   parsed
		}{"kernel-helper " + verb, [][]string{
			{"kernel-helper", verb, "--service", "web"},
			{"kernel-helper", verb, "--service=web"},
		}, parsed{"kernel-helper " + verb, map[string]string{"service": "web"}, []string{}}})
	}
	// Every command that runs something has a case here: a verb added
	// later without one fails this test rather than going untried.
	var stdout, stderr bytes.Buffer
	tried := map[string]bool{}
	for _, tc := range cases {
		tried[tc.want.cmd] = true
	}
	for name, c := range allCommands(newApp(&stdout, &stderr)) {
		if c.Action != nil && !tried[name] {
			t.Errorf("command %q has no case in TestFlagsAnywhere: add its flags in both orders", name)
		}
	}
	for _, tc := range cases {
		for _, args := range tc.orders {
			got, err := parseOnly(t, args...)
			if err != nil {
				t.Errorf("%s: baton %s: %v", tc.name, strings.Join(args, " "), err)
				continue
			}
			if got.args == nil {
				got.args = []string{}
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("%s: baton %s:\n got %+v\nwant %+v", tc.name, strings.Join(args, " "), got, tc.want)
			}
		}
	}
}

// TestFlagsAnywhereDashDash: after "--" nothing is a flag, in either order.
func TestFlagsAnywhereDashDash(t *testing.T) {
	for _, args := range [][]string{
		{"deploy", "--force", "--", "-web"},
		{"deploy", "--force", "--", "--image"},
		{"history", "--json", "--", "--limit"},
	} {
		got, err := parseOnly(t, args...)
		if err != nil {
			t.Fatalf("baton %s: %v", strings.Join(args, " "), err)
		}
		last := args[len(args)-1]
		if !reflect.DeepEqual(got.args, []string{last}) || len(got.flags) != 1 {
			t.Errorf("baton %s: got args %q flags %v, want args [%s] and one flag", strings.Join(args, " "), got.args, got.flags, last)
		}
	}
	// Positive control: without "--" the same word is a flag.
	got, err := parseOnly(t, "history", "--json", "--limit", "3")
	if err != nil || got.flags["limit"] != "3" || len(got.args) != 0 {
		t.Errorf("baton history --json --limit 3: got %+v, %v", got, err)
	}
}

// TestUnknownFlagAnywhere: an unknown flag before or after the target is a
// one-line usage error with exit code 2, and a known one parses (control).
func TestUnknownFlagAnywhere(t *testing.T) {
	for _, args := range [][]string{
		{"deploy", "--bogus", "web"},
		{"deploy", "web", "--bogus"},
		{"deploy", "web", "--image", "x", "--bogus=1"},
		{"rollback", "web", "--bogus"},
		{"status", "web", "--bogus"},
		{"history", "web", "--bogus"},
		{"watch", "--once", "--bogus"},
		{"serve", "--bogus"},
		{"--bogus", "status"},
		{"deploy", "web", "--image"},
		{"history", "web", "--limit"},
	} {
		var stdout, stderr bytes.Buffer
		code := Run(context.Background(), append([]string{"baton"}, args...), &stdout, &stderr)
		lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
		if code != 2 || len(lines) != 1 || !(strings.Contains(lines[0], "bogus") || strings.Contains(lines[0], "needs an argument")) {
			t.Errorf("baton %s: exit %d, stderr %q; want exit 2 and one line naming the flag", strings.Join(args, " "), code, stderr.String())
		}
		if stdout.Len() != 0 {
			t.Errorf("baton %s: wrote to stdout: %q", strings.Join(args, " "), stdout.String())
		}
	}
	if _, err := parseOnly(t, "deploy", "web", "--image", "x"); err != nil {
		t.Errorf("control: baton deploy web --image x: %v", err)
	}
}

// TestArgCountAfterReorder: a real second positional argument is still
// refused, wherever the flags are.
func TestArgCountAfterReorder(t *testing.T) {
	for _, args := range [][]string{
		{"deploy", "web", "api", "--image", "x"},
		{"deploy", "--image", "x", "web", "api"},
		{"rollback", "web", "--json", "api"},
	} {
		var stdout, stderr bytes.Buffer
		code := Run(context.Background(), append([]string{"baton"}, args...), &stdout, &stderr)
		if code != 2 || !strings.Contains(stderr.String(), "got 2 arguments") {
			t.Errorf("baton %s: exit %d, stderr %q; want exit 2, got 2 arguments", strings.Join(args, " "), code, stderr.String())
		}
	}
}

func TestFlagsFirstRewrite(t *testing.T) {
	app := newApp(&bytes.Buffer{}, &bytes.Buffer{})
	cases := []struct{ in, want string }{
		{"deploy web --image x", "deploy --image x web"},
		{"deploy web -q", "deploy -q web"},
		{"deploy web --force=false", "deploy --force=false web"},
		{"deploy web --force false", "deploy --force web false"}, // a bool never takes the next word
		{"deploy web -- --x", "deploy -- web --x"},
		{"deploy - --json", "deploy --json -"},
		{"status --state-dir /s web", "--state-dir /s status web"},
		{"help deploy", "help deploy"},
		{"nosuch --x y", "nosuch --x y"},
		{"--version", "--version"},
	}
	for _, tc := range cases {
		out, err := flagsFirst(app, append([]string{"baton"}, strings.Fields(tc.in)...))
		if err != nil {
			t.Errorf("flagsFirst(%q): %v", tc.in, err)
			continue
		}
		if got := strings.Join(out[1:], " "); got != tc.want {
			t.Errorf("flagsFirst(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// allCommands lists every command path of the app, with its command.
func allCommands(app *ucli.App) map[string]*ucli.Command {
	out := map[string]*ucli.Command{}
	var walk func(prefix string, cmds []*ucli.Command)
	walk = func(prefix string, cmds []*ucli.Command) {
		for _, c := range cmds {
			name := strings.TrimSpace(prefix + " " + c.Name)
			out[name] = c
			walk(name, c.Subcommands)
		}
	}
	walk("", app.Commands)
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func isSlice(f ucli.Flag) bool {
	_, ok := f.(*ucli.StringSliceFlag)
	return ok
}

// TestDocumentedCommandsParse runs every baton command of the README, docs
// and compose examples' READMEs through the parser (the commands' actions are
// replaced, so nothing runs): each must reach its command with no usage
// error, in the argument order the docs wrote it. internal/e2e's docs test
// runs them for real.
func TestDocumentedCommandsParse(t *testing.T) {
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	cmds, err := doccommands.Read(root)
	if err != nil {
		t.Fatal(err)
	}
	parsed := 0
	for _, c := range cmds {
		words, err := notify.SplitWords(c.Text)
		if err != nil {
			t.Errorf("%s: %v", c, err)
			continue
		}
		// Leading VAR=value assignments (WEB_TAG=v1.11 baton ...) and a
		// crontab line's schedule and user are not baton's.
		for len(words) > 0 && words[0] != "baton" && !strings.HasPrefix(words[0], "-") {
			words = words[1:]
		}
		if len(words) < 2 || words[0] != "baton" || strings.Contains(c.Text, "[") {
			continue // not a baton command, or a synopsis with [optional] parts
		}
		got, err := parseOnly(t, words[1:]...)
		if err != nil {
			t.Errorf("%s: %v", c, err)
			continue
		}
		if verb := docVerb(words[1:]); got.cmd != verb {
			t.Errorf("%s: ran command %q, want %q", c, got.cmd, verb)
			continue
		}
		// Every baton verb takes at most one positional argument; a flag
		// left among them is a flag the command never saw.
		if len(got.args) > 1 || (len(got.args) == 1 && strings.HasPrefix(got.args[0], "-")) {
			t.Errorf("%s: positional arguments %q, want at most one CONTAINER or SERVICE (flags taken as arguments?)", c, got.args)
			continue
		}
		parsed++
	}
	t.Logf("%d documented baton commands parse", parsed)
	// Control: the docs hold baton commands, and this test saw them.
	if parsed < 15 {
		t.Errorf("parsed only %d documented baton commands; the extraction or the filter is broken", parsed)
	}
}

// docVerb is the verb of a documented command line after "baton": the
// first word that is neither a global flag (baton --context web1 status)
// nor its value.
func docVerb(words []string) string {
	global := flagArity(newApp(io.Discard, io.Discard).Flags, true)
	for i := 0; i < len(words); i++ {
		w := words[i]
		if !isFlagWord(w) {
			return w
		}
		if global[flagName(w)] && !strings.Contains(w, "=") {
			i++
		}
	}
	return ""
}
