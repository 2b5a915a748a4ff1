package unattended

import "testing"

func TestSelectorAllows(t *testing.T) {
	cases := []struct {
		sel    Selector
		labels map[string]string
		ok     bool
	}{
		{Selector{}, map[string]string{"baton.enable": "true"}, true},
		{Selector{}, map[string]string{"baton.enable": "1"}, true},
		{Selector{}, map[string]string{}, false},
		{Selector{}, map[string]string{"baton.enable": "false"}, false},
		{Selector{}, map[string]string{"baton.enable": "yes please"}, false},
		{Selector{All: true}, map[string]string{}, true},
		{Selector{All: true}, map[string]string{"baton.enable": "false"}, false},
		{Selector{All: true}, map[string]string{"baton.role": "relay"}, false},
		{Selector{Scope: "a"}, map[string]string{"baton.enable": "true", "baton.scope": "a"}, true},
		{Selector{Scope: "a"}, map[string]string{"baton.enable": "true", "baton.scope": "b"}, false},
		{Selector{Scope: "a"}, map[string]string{"baton.enable": "true"}, false},
	}
	for _, c := range cases {
		if err := c.sel.Allows(c.labels); (err == nil) != c.ok {
			t.Errorf("%+v allows %v: %v, want ok=%v", c.sel, c.labels, err, c.ok)
		}
	}
}
