// Package procnet reads the kernel's TCP connection tables of a process's
// network namespace, /proc/PID/net/tcp and /proc/PID/net/tcp6: the one
// place baton parses them. Both tables are read because a dual-stack
// socket (Go's and nginx's listeners, Node's on "::") is in tcp6, its IPv4
// peers printed as mapped addresses; a count of tcp alone misses every
// connection such a server holds.
package procnet

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Conn is one TCP connection of the table, IPv4-mapped addresses unmapped.
type Conn struct {
	Local, Remote netip.AddrPort
}

// stEstablished is ESTABLISHED in the tables' st column.
const stEstablished = "01"

// CountEstablished counts the ESTABLISHED connections in the network
// namespace of process pid, read under proc (normally "/proc"), for which
// keep is true (nil keeps all). ok is false when neither table can be read
// (the process is gone, or baton is not root on its host).
func CountEstablished(proc string, pid int, keep func(Conn) bool) (n int, ok bool) {
	if pid <= 0 {
		return 0, false
	}
	for _, table := range []string{"tcp", "tcp6"} {
		m, err := countFile(filepath.Join(proc, strconv.Itoa(pid), "net", table), keep)
		if errors.Is(err, fs.ErrNotExist) {
			continue // no such table (a kernel without IPv6), or no such process
		}
		if err != nil {
			// Not a count: a table read in part would count too few.
			// A read that fails midway is most often the namespace
			// going with its process, which unreadable says.
			return 0, false
		}
		n += m
		ok = true
	}
	return n, ok
}

func countFile(path string, keep func(Conn) bool) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		line := sc.Text()
		if f := strings.Fields(line); len(f) < 4 || f[3] != stEstablished {
			continue // most lines of a busy table: TIME_WAIT and the like
		}
		c, _, err := ParseLine(line)
		if err != nil {
			continue
		}
		if keep == nil || keep(c) {
			n++
		}
	}
	return n, sc.Err()
}

// ParseLine reads one line of a table: the connection and its state (the
// st column, two hex digits).
func ParseLine(line string) (c Conn, state string, err error) {
	f := strings.Fields(line)
	if len(f) < 4 {
		return c, "", errors.New("procnet: short line")
	}
	if c.Local, err = parseAddrPort(f[1]); err != nil {
		return c, "", err
	}
	if c.Remote, err = parseAddrPort(f[2]); err != nil {
		return c, "", err
	}
	return c, f[3], nil
}

// parseAddrPort reads "0100007F:1F90": the address as 32-bit words, each
// printed in the machine's byte order, then the port in hex.
func parseAddrPort(s string) (netip.AddrPort, error) {
	a, p, found := strings.Cut(s, ":")
	if !found || (len(a) != 8 && len(a) != 32) {
		return netip.AddrPort{}, errors.New("procnet: bad address " + s)
	}
	raw, err := hex.DecodeString(a)
	if err != nil {
		return netip.AddrPort{}, errors.New("procnet: bad address " + s)
	}
	b := make([]byte, len(raw))
	for i := 0; i < len(raw); i += 4 {
		binary.NativeEndian.PutUint32(b[i:], binary.BigEndian.Uint32(raw[i:]))
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.AddrPort{}, errors.New("procnet: bad port " + s)
	}
	ip, _ := netip.AddrFromSlice(b)
	return netip.AddrPortFrom(ip.Unmap(), uint16(port)), nil
}
