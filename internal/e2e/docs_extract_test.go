package e2e

import (
	"fmt"
	"strings"
	"testing"

	"github.com/baton-sh/baton/internal/doccommands"
	"github.com/baton-sh/baton/internal/testenv"
)

type docCommand = doccommands.Command

// documentedCommands reads every command of the documents.
func documentedCommands(t testing.TB) (root string, cmds []docCommand) {
	t.Helper()
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	cmds, err = doccommands.Read(root)
	if err != nil {
		t.Fatal(err)
	}
	return root, cmds
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
	known, errs := docTable(cmds)
	for _, err := range errs {
		t.Error(err)
	}
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
