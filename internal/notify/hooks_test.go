package notify

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/baton-sh/baton/internal/journal"
)

func TestSplitWords(t *testing.T) {
	for in, want := range map[string][]string{
		`/usr/bin/backup --fast`:          {"/usr/bin/backup", "--fast"},
		`  a   b  `:                       {"a", "b"},
		`sh -c 'echo "$BATON_TARGET"; x'`: {"sh", "-c", `echo "$BATON_TARGET"; x`},
		`a "b c" d\ e`:                    {"a", "b c", "d e"},
		`a "x\"y\\z"`:                     {"a", `x"y\z`},
		`a;b|c&d $(e) ` + "`f`":           {"a;b|c&d", "$(e)", "`f`"},
		`''`:                              {""},
		``:                                nil,
	} {
		got, err := SplitWords(in)
		if err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		if strings.Join(got, "\x00") != strings.Join(want, "\x00") || len(got) != len(want) {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
	for _, bad := range []string{`a 'b`, `a "b`, `a \`} {
		if _, err := SplitWords(bad); err == nil {
			t.Errorf("%q split", bad)
		}
	}
}

// A hook gets the deploy's details in its environment, and values full of
// shell metacharacters (say, from a webhook payload) stay data: nothing in
// them is executed.
func TestHookEnvIsNeverExecuted(t *testing.T) {
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("no /bin/sh")
	}
	dir := t.TempDir()
	pwned := filepath.Join(dir, "pwned")
	out := filepath.Join(dir, "env")
	evil := `x"; touch ` + pwned + `; echo "$(touch ` + pwned + `)` + "`touch " + pwned + "`"
	e := journal.Entry{ID: "r1", Requests: []string{"r1", "r2"}, Target: "web", Trigger: "webhook", Who: evil,
		NewImage: "shop/web:2 && touch " + pwned, Outcome: "failed", Error: "$(touch " + pwned + ")", ExitCode: 1, Duration: 1500 * time.Millisecond}
	// The operator's command uses the values the safe way: quoted expansion.
	h, err := ParseHook("post-deploy", `/bin/sh -c 'printf "%s\n" "$BATON_WHO" "$BATON_NEW_IMAGE" "$BATON_ERROR" "$BATON_OUTCOME" "$BATON_REQUEST_IDS" "$BATON_EXIT_CODE" "$BATON_DURATION_SECONDS" "$BATON_PHASE" > `+out+`'`, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Run(t.Context(), HookEnv("post", e)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(pwned); err == nil {
		t.Fatal("a value in the environment was executed")
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{evil, e.NewImage, e.Error, "failed", "r1,r2", "1", "1.500", "post"}, "\n") + "\n"
	if string(b) != want {
		t.Fatalf("hook saw:\n%s\nwant:\n%s", b, want)
	}
	// The pre-deploy hook gets no outcome.
	for _, kv := range HookEnv("pre", e) {
		if strings.HasPrefix(kv, "BATON_OUTCOME=") || strings.HasPrefix(kv, "BATON_ERROR=") {
			t.Fatalf("pre-deploy env has %s", kv)
		}
	}
}

func TestHookFailureAndTimeout(t *testing.T) {
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("no /bin/sh")
	}
	h, _ := ParseHook("pre-deploy", `/bin/sh -c 'echo nope >&2; exit 3'`, time.Minute)
	if _, err := h.Run(t.Context(), nil); err == nil || !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("failing hook: %v", err)
	}
	h, _ = ParseHook("pre-deploy", `/bin/sh -c 'sleep 30'`, 200*time.Millisecond)
	start := time.Now()
	if _, err := h.Run(t.Context(), nil); err == nil || !strings.Contains(err.Error(), "killed") || time.Since(start) > 10*time.Second {
		t.Fatalf("slow hook: %v after %s", err, time.Since(start))
	}
	if _, err := ParseHook("pre-deploy", `  `, time.Minute); err == nil {
		t.Fatal("empty command accepted")
	}
}
