package cli

import (
	"fmt"
	"strings"

	ucli "github.com/urfave/cli/v2"
)

// flagsFirst rewrites args so that every flag comes before the positional
// arguments of its command, which is the only order urfave/cli (like Go's
// flag package) parses: it stops at the first positional argument. Users of
// the docker CLI write flags anywhere (`docker rm web -f`), and so do the
// README, cron lines and CI scripts (`baton deploy web --image REF`).
//
// The rewrite is driven by the commands' own flag definitions, so that a
// flag's value is never mistaken for a positional argument (or the reverse):
// a flag that takes a value consumes the next word unless written
// --flag=value; a bool flag never does (--force=false is one word). `--`
// ends the flags: everything after it stays positional, and is passed on
// after a `--` so that urfave/cli does not parse it either. Global flags
// (--state-dir, --log-level) given after the verb move in front of it,
// unless the command defines a flag of the same name. Unknown flags stay
// among the flags, where urfave/cli reports them as a usage error.
//
// A flag that needs a value but is the last word is an error here: moved in
// front of the positional arguments it would silently take one as its value.
func flagsFirst(app *ucli.App, args []string) ([]string, error) {
	if len(args) == 0 {
		return args, nil
	}
	out := []string{args[0]}
	rest := args[1:]
	global := flagArity(app.Flags, true)
	if !app.HideVersion {
		global["v"], global["version"] = false, false
	}

	// The app's own flags, up to the verb.
	var globals []string
	i := 0
	for i < len(rest) {
		a := rest[i]
		if a == "--" || !isFlagWord(a) {
			break
		}
		n := consumed(global, a, rest[i+1:])
		globals = append(globals, rest[i:i+n]...)
		i += n
	}
	if i >= len(rest) || rest[i] == "--" {
		return append(append(out, globals...), rest[i:]...), nil
	}
	cmd := findCommand(app.Commands, rest[i])
	if cmd == nil {
		// Not a command (a typo, or "help"): leave it to urfave/cli.
		return append(append(out, globals...), rest[i:]...), nil
	}
	verbs := []string{rest[i]}
	i++
	// Subcommands (baton relay ctl set ...): the words that name them come
	// before any flag of theirs, as the verb does.
	for len(cmd.Subcommands) > 0 && i < len(rest) && !isFlagWord(rest[i]) {
		sub := findCommand(cmd.Subcommands, rest[i])
		if sub == nil {
			break
		}
		verbs = append(verbs, rest[i])
		cmd = sub
		i++
	}
	own := flagArity(cmd.Flags, !cmd.HideHelp)
	var flags, positional []string
	dashdash := false
	for i < len(rest) {
		a := rest[i]
		if a == "--" {
			dashdash = true
			positional = append(positional, rest[i+1:]...)
			break
		}
		if !isFlagWord(a) {
			positional = append(positional, a)
			i++
			continue
		}
		name := flagName(a)
		if _, ok := own[name]; !ok {
			if _, ok := global[name]; ok {
				n := consumed(global, a, rest[i+1:])
				globals = append(globals, rest[i:i+n]...)
				i += n
				continue
			}
		}
		if own[name] && !strings.Contains(a, "=") && i+1 == len(rest) {
			return nil, fmt.Errorf("flag needs an argument: %s (see baton %s --help)", a, strings.Join(verbs, " "))
		}
		n := consumed(own, a, rest[i+1:])
		flags = append(flags, rest[i:i+n]...)
		i += n
	}
	out = append(out, globals...)
	out = append(out, verbs...)
	out = append(out, flags...)
	if dashdash || hasFlagWord(positional) {
		out = append(out, "--")
	}
	return append(out, positional...), nil
}

// isFlagWord says whether a word is a flag: it starts with a dash and is not
// "-" alone (which, by convention, names stdin).
func isFlagWord(a string) bool {
	return len(a) > 1 && a[0] == '-'
}

func hasFlagWord(words []string) bool {
	for _, w := range words {
		if isFlagWord(w) {
			return true
		}
	}
	return false
}

// flagName is the name of a flag word: "--image=x" and "-image" are "image".
func flagName(a string) string {
	a = strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
	if k := strings.IndexByte(a, '='); k >= 0 {
		a = a[:k]
	}
	return a
}

// consumed is how many words the flag word a takes from args: 2 when it takes
// a value that is in the next word, else 1. An unknown flag is taken alone.
func consumed(arity map[string]bool, a string, next []string) int {
	if strings.Contains(a, "=") {
		return 1
	}
	if takesValue, ok := arity[flagName(a)]; ok && takesValue && len(next) > 0 {
		return 2
	}
	return 1
}

// flagArity maps every name and alias of flags to whether the flag takes a
// value, plus urfave/cli's own -h/--help when help applies.
func flagArity(flags []ucli.Flag, help bool) map[string]bool {
	m := map[string]bool{}
	if help {
		m["h"], m["help"] = false, false
	}
	for _, f := range flags {
		takes := true
		if df, ok := f.(ucli.DocGenerationFlag); ok {
			takes = df.TakesValue()
		}
		for _, n := range f.Names() {
			m[n] = takes
		}
	}
	return m
}

func findCommand(cmds []*ucli.Command, name string) *ucli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}
