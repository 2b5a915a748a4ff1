package cli

import (
	"os"
	"os/user"
)

// cliUser names the person running a CLI deploy, for the journal: the OS
// user, and who ran sudo when it was sudo.
func cliUser() string {
	name := "uid " + itoa(os.Getuid())
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	if s := os.Getenv("SUDO_USER"); s != "" && s != name {
		name += " (sudo by " + s + ")"
	}
	return name
}

// hostname is this host's name, or "localhost" when it has none.
func hostname() string {
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "localhost"
}
