package cli

import "strconv"

func boolString(b bool) string { return strconv.FormatBool(b) }
func itoa(n int) string        { return strconv.Itoa(n) }
