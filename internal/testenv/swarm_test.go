package testenv

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// A run killed before its cleanup leaves its FORWARD rule; the next run of
// the same net removes every copy (tagged, or untagged by an older
// harness) and inserts one; the other nets' rules stay.
func TestForwardRuleLeftoversRemoved(t *testing.T) {
	other := strings.Join(forwardRule(250), " ")
	mine, old := strings.Join(forwardRule(249), " "), strings.Join(untaggedForwardRule(249), " ")
	table := []string{mine, other, mine, old}
	del := func(rule []string) error {
		r := strings.Join(rule, " ")
		i := slices.Index(table, r)
		if i < 0 {
			return errors.New("iptables: Bad rule (does a matching rule exist in that chain?)")
		}
		table = slices.Delete(table, i, i+1)
		return nil
	}
	if n := deleteRule(del, forwardRule(249)); n != 2 {
		t.Fatalf("removed %d tagged copies, want 2; table %q", n, table)
	}
	if n := deleteRule(del, untaggedForwardRule(249)); n != 1 {
		t.Fatalf("removed %d untagged copies, want 1; table %q", n, table)
	}
	if len(table) != 1 || table[0] != other {
		t.Fatalf("table %q, want only net 250's rule", table)
	}
	if !strings.Contains(mine, "--comment baton-test-10.249") {
		t.Fatalf("rule %q is not tagged with its net", mine)
	}
}
