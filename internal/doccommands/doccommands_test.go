package doccommands

import (
	"strings"
	"testing"
)

func TestExtract(t *testing.T) {
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
	got := Extract("x.md", md)
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
