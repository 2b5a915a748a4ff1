package dockerctl

import (
	"net"
)

// HostPortFree reports whether this process could bind ip:port now, which is
// the case once Docker has released a stopped container's published port.
// Only meaningful when baton runs in the host's network namespace.
func HostPortFree(ip, port, proto string) bool {
	if ip == "" {
		ip = "0.0.0.0"
	}
	addr := net.JoinHostPort(ip, port)
	if proto == "udp" {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return false
		}
		_ = pc.Close()
		return true
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	_ = ln.Close()
	return true
}
