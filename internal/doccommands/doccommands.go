// Package doccommands finds the commands in baton's documentation: the
// lines of the code blocks of README.md, docs/*.md and the compose examples'
// READMEs. The docs test runs them (internal/e2e) and the CLI's tests parse
// them (internal/cli), so a documented command that stops working fails.
package doccommands

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Files are the documents whose command blocks are tested (the same set
// the before-stop hook parses): README.md, docs/*.md, and the READMEs of the
// compose examples.
func Files(root string) ([]string, error) {
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

// Command is one command line of a document's code blocks: continuation
// lines joined, the trailing comment cut.
type Command struct {
	File string
	Line int // of the command's first line
	Text string
}

func (c Command) String() string { return fmt.Sprintf("%s:%d: `%s`", c.File, c.Line, c.Text) }

// shellFences are the fence languages whose lines are commands; a block in
// another language (nginx, yaml, json) is configuration, not commands.
var shellFences = map[string]bool{"": true, "sh": true, "bash": true, "shell": true, "console": true}

// Extract returns the commands of a markdown document: the lines of
// fenced blocks (```, ```sh, ```console ...) and of indented blocks (four
// spaces), with `\` continuations joined and trailing `# comments` (outside
// quotes) cut; comment-only and blank lines are skipped. In a block that
// uses `$ ` prompts, only the prompted lines are commands (the rest is their
// output).
func Extract(file, text string) []Command {
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

	var out []Command
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
			out = append(out, Command{File: file, Line: r.line, Text: t})
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

// Read returns every command of the documents under the module root.
func Read(root string) ([]Command, error) {
	files, err := Files(root)
	if err != nil {
		return nil, err
	}
	var cmds []Command
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			return nil, err
		}
		cmds = append(cmds, Extract(f, string(b))...)
	}
	return cmds, nil
}
