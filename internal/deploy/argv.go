package deploy

import (
	"errors"
	"fmt"
	"strings"
)

// SplitCommand splits a command line into an argument vector the way a
// POSIX shell splits words, without any expansion: quotes and backslashes
// group, nothing else is interpreted. baton runs the result directly, not
// through a shell; an operator who wants a shell writes sh -c '...'.
// Unquoted shell operators ($, `, |, &, ;, <, >, parentheses) are refused
// rather than passed to the program as arguments it would not expect.
func SplitCommand(line string) ([]string, error) {
	var (
		args    []string
		cur     strings.Builder
		inWord  bool
		quote   rune // 0, '\'' or '"'
		escaped bool
	)
	for _, r := range line {
		switch {
		case escaped:
			escaped = false
			if quote == '"' && !strings.ContainsRune("\"\\$`\n", r) {
				cur.WriteRune('\\')
			}
			if r != '\n' {
				cur.WriteRune(r)
			}
			inWord = true
		case quote == '\'':
			if r == '\'' {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case quote == '"':
			switch r {
			case '"':
				quote = 0
			case '\\':
				escaped = true
			default:
				cur.WriteRune(r)
			}
		case r == '\\':
			escaped, inWord = true, true
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ' || r == '\t' || r == '\n':
			if inWord {
				args = append(args, cur.String())
				cur.Reset()
				inWord = false
			}
		case strings.ContainsRune("$`|&;<>()", r):
			return nil, fmt.Errorf("unquoted %q: baton runs the command without a shell; quote it, or write sh -c '...' to use a shell", r)
		case r == 0:
			return nil, errors.New("contains a NUL character")
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if escaped || quote != 0 {
		return nil, errors.New("unterminated quote or trailing backslash")
	}
	if inWord {
		args = append(args, cur.String())
	}
	if len(args) == 0 {
		return nil, errors.New("empty command")
	}
	return args, nil
}
