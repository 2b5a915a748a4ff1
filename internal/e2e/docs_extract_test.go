package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/baton-sh/baton/internal/testenv"
)

// docFiles are the documents whose command blocks are tested (the same set
// the before-stop hook parses): README.md, docs/*.md, and the READMEs of the
// compose examples.
func docFiles(root string) ([]string, error) {
	files := []string{"README.md"}
	for _, pat := range []string{"docs/*.md", "compose-examples/README.md", "compose-examples/*/README.md"} {
		m, err := filepath.Glob(filepath.Join(root, pat))
		if err != nil {
			return nil, err
		}
		sort.Strings(m)
		for _, f := range m {
			rel, err := filepath.Rel(root, f)
			if err != nil {
				return nil, err
			}
			files = append(files, rel)
		}
	}
	return files, nil
}

// docCommand is one command line of a document's code blocks: continuation
// lines joined, the trailing comment cut.
type docCommand struct {
	File string
	Line int // of the command's first line
	Text string
}

func (c docCommand) String() string { return fmt.Sprintf("%s:%d: `%s`", c.File, c.Line, c.Text) }

// shellFences are the fence languages whose lines are commands; a block in
// another language (nginx, yaml, json) is configuration, not commands.
var shellFences = map[string]bool{"": true, "sh": true, "bash": true, "shell": true, "console": true}

// extractCommands returns the commands of a markdown document: the lines of
// fenced blocks (```, ```sh, ```console ...) and of indented blocks (four
// spaces), with `\` continuations joined and trailing `# comments` (outside
// quotes) cut; comment-only and blank lines are skipped. In a block that
// uses `$ ` prompts, only the prompted lines are commands (the rest is their
// output).
func extractCommands(file, text string) []docCommand {
	type raw struct {
		line int
		text string
	}
	var blocks [][]raw
	var cur []raw
	flush := func() {
		if len(cur) > 0 {
			blocks = append(blocks, cur)
			cur = nil
		}
	}
	inFence, shellFence := false, false
	for i, ln := range strings.Split(text, "\n") {
		trimmed := strings.TrimSpace(ln)
		if strings.HasPrefix(trimmed, "```") {
			flush()
			if !inFence {
				shellFence = shellFences[strings.TrimSpace(strings.TrimPrefix(trimmed, "```"))]
			}
			inFence = !inFence
			continue
		}
		switch {
		case inFence:
			if shellFence {
				cur = append(cur, raw{i + 1, trimmed})
			}
		case strings.HasPrefix(ln, "    ") || strings.HasPrefix(ln, "\t"):
			cur = append(cur, raw{i + 1, trimmed})
		case trimmed == "" && len(cur) > 0:
			// A blank line inside an indented block continues it.
			cur = append(cur, raw{i + 1, ""})
		default:
			flush()
		}
	}
	flush()

	var out []docCommand
	for _, b := range blocks {
		prompted := false
		for _, r := range b {
			if strings.HasPrefix(r.text, "$ ") {
				prompted = true
			}
		}
		var joined []raw
		var acc *raw
		for _, r := range b {
			t := r.text
			// A synopsis wrapped over lines: [optional] parts continue it.
			if acc == nil && strings.HasPrefix(t, "[") && len(joined) > 0 {
				acc = &joined[len(joined)-1]
				joined = joined[:len(joined)-1]
			}
			if acc != nil {
				acc.text += " " + strings.TrimSpace(strings.TrimSuffix(t, "\\"))
			} else {
				acc = &raw{r.line, strings.TrimSpace(strings.TrimSuffix(t, "\\"))}
			}
			if !strings.HasSuffix(t, "\\") {
				joined = append(joined, *acc)
				acc = nil
			}
		}
		if acc != nil {
			joined = append(joined, *acc)
		}
		for _, r := range joined {
			t := r.text
			if prompted {
				if !strings.HasPrefix(t, "$ ") {
					continue
				}
				t = strings.TrimPrefix(t, "$ ")
			}
			t = strings.Join(strings.Fields(cutComment(t)), " ")
			if t == "" {
				continue
			}
			out = append(out, docCommand{File: file, Line: r.line, Text: t})
		}
	}
	return out
}

// cutComment removes a shell comment: a # at the start or after a blank,
// outside quotes.
func cutComment(s string) string {
	var quote rune
	prevBlank := true
	for i, r := range s {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			}
		case r == '\'' || r == '"':
			quote = r
		case r == '#' && prevBlank:
			return strings.TrimSpace(s[:i])
		}
		prevBlank = r == ' ' || r == '\t'
	}
	return strings.TrimSpace(s)
}

// documentedCommands reads every command of the documents.
func documentedCommands(t testing.TB) (root string, cmds []docCommand) {
	t.Helper()
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	files, err := docFiles(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, extractCommands(f, string(b))...)
	}
	return root, cmds
}

func TestExtractCommands(t *testing.T) {
	md := "intro\n\n" +
		"    baton deploy web --image a:1    # a comment\n" +
		"    # only a comment\n" +
		"\n" +
		"    baton deploy web \\\n" +
		"        --nginx-reload \"nginx -s reload\"   # why\n" +
		"text\n" +
		"```nginx\nupstream web { include x; }\n```\n" +
		"```console\n$ PG_TAG=17 baton deploy db\nbaton: refused ... (exit code 2)\n```\n" +
		"```\necho 'a # not a comment' # a comment\n```\n" +
		"    baton watch [--a 1]\n    [--b 2]\n" +
		"  two spaces is prose\n"
	got := extractCommands("x.md", md)
	want := []string{
		"x.md:3: `baton deploy web --image a:1`",
		"x.md:6: `baton deploy web --nginx-reload \"nginx -s reload\"`",
		"x.md:13: `PG_TAG=17 baton deploy db`",
		"x.md:17: `echo 'a # not a comment'`",
		"x.md:19: `baton watch [--a 1] [--b 2]`",
	}
	var gs []string
	for _, c := range got {
		gs = append(gs, c.String())
	}
	if strings.Join(gs, "\n") != strings.Join(want, "\n") {
		t.Errorf("extractCommands:\n got %s\nwant %s", strings.Join(gs, "\n     "), strings.Join(want, "\n     "))
	}
}

// TestDocsCommandsAccountedFor fails when a documented command is neither
// run by TestDocsCommandsRun nor listed with a reason, so a command added
// to the docs is tested or consciously excused. It also fails on a table
// entry that no document has any more. It needs no Docker (runs with -short).
func TestDocsCommandsAccountedFor(t *testing.T) {
	_, cmds := documentedCommands(t)
	if len(cmds) < 20 {
		t.Fatalf("found only %d documented commands; the extraction is broken", len(cmds))
	}
	known := docTable()
	seen := map[string]bool{}
	for _, c := range cmds {
		seen[c.Text] = true
		if _, ok := known[c.Text]; !ok {
			t.Errorf("%s is documented but the docs test neither runs it nor lists it: add a step to a scenario in internal/e2e/docs_test.go (docScenarios), or list it in docsNotRun or docsNotCommands with the reason", c)
		}
	}
	for text, how := range known {
		if !seen[text] {
			t.Errorf("docs test entry `%s` (%s) matches no documented command any more: update or remove it in internal/e2e/docs_test.go", text, how)
		}
	}
}

// whereDocumented lists the places a command text is documented.
func whereDocumented(cmds []docCommand, text string) string {
	var at []string
	for _, c := range cmds {
		if c.Text == text {
			at = append(at, fmt.Sprintf("%s:%d", c.File, c.Line))
		}
	}
	if len(at) == 0 {
		return "(not documented)"
	}
	return strings.Join(at, ", ")
}
