package main

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// The WebSocket endpoint (/ws) stands for the long-lived connections a
// deploy must drain: it greets each client with its version and holds the
// connection until the client closes it. On the drain signal (SIGUSR1,
// which baton sends with --drain-signal SIGUSR1 when traffic moves) it
// sends every client a close frame (1001, going away), so they reconnect,
// now to the new container, and logs when the last one is gone; it keeps
// serving HTTP until it is stopped. Standard library only: RFC 6455's
// handshake and the few frames it needs.

const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

const (
	opText  = 0x1
	opClose = 0x8
	opPing  = 0x9
	opPong  = 0xA
)

type wsHub struct {
	version string
	mu      sync.Mutex
	conns   map[net.Conn]bool // value: a close frame was sent
	gone    chan struct{}     // closed when conns empties after a drain
	drained bool
}

func newWSHub(version string) *wsHub {
	return &wsHub{version: version, conns: map[net.Conn]bool{}}
}

func (h *wsHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") || r.Header.Get("Sec-WebSocket-Key") == "" {
		http.Error(w, "WebSocket upgrade expected", http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	drained := h.drained
	h.mu.Unlock()
	if drained {
		http.Error(w, "going away", http.StatusServiceUnavailable)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "cannot hijack", http.StatusInternalServerError)
		return
	}
	sum := sha1.Sum([]byte(r.Header.Get("Sec-WebSocket-Key") + wsGUID))
	conn, rw, err := hj.Hijack()
	if err != nil {
		return
	}
	_, _ = rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
		base64.StdEncoding.EncodeToString(sum[:]) + "\r\n\r\n")
	if err := rw.Flush(); err != nil {
		conn.Close()
		return
	}
	h.mu.Lock()
	h.conns[conn] = false
	h.mu.Unlock()
	defer h.remove(conn)
	if err := writeFrame(conn, opText, []byte("hello "+h.version)); err != nil {
		return
	}
	h.readUntilClose(conn, rw.Reader)
}

// readUntilClose answers pings and a close frame; it returns when the
// client closed or the connection broke.
func (h *wsHub) readUntilClose(conn net.Conn, br *bufio.Reader) {
	for {
		op, payload, err := readFrame(br)
		if err != nil {
			return
		}
		switch op {
		case opPing:
			_ = writeFrame(conn, opPong, payload)
		case opClose:
			h.mu.Lock()
			sent := h.conns[conn]
			h.conns[conn] = true
			h.mu.Unlock()
			if !sent {
				_ = writeFrame(conn, opClose, payload)
			}
			return
		}
	}
}

func (h *wsHub) remove(conn net.Conn) {
	conn.Close()
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.conns, conn)
	if h.drained && len(h.conns) == 0 && h.gone != nil {
		close(h.gone)
		h.gone = nil
		log.Printf("demoapp %s: all WebSocket clients are gone", h.version)
	}
}

// drain sends every client a close frame and refuses new ones.
func (h *wsHub) drain() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.drained = true
	h.gone = make(chan struct{})
	log.Printf("demoapp %s: drain signal: closing %d WebSocket connection(s)", h.version, len(h.conns))
	if len(h.conns) == 0 {
		close(h.gone)
		h.gone = nil
		return
	}
	for c, sent := range h.conns {
		if !sent {
			h.conns[c] = true
			_ = c.SetWriteDeadline(time.Now().Add(time.Second))
			_ = writeFrame(c, opClose, closePayload(1001, "going away"))
		}
	}
}

func closePayload(code uint16, reason string) []byte {
	b := make([]byte, 2, 2+len(reason))
	binary.BigEndian.PutUint16(b, code)
	return append(b, reason...)
}

// writeFrame writes one unmasked (server) frame.
func writeFrame(w io.Writer, op byte, payload []byte) error {
	hdr := []byte{0x80 | op}
	switch n := len(payload); {
	case n < 126:
		hdr = append(hdr, byte(n))
	case n < 1<<16:
		hdr = append(hdr, 126, byte(n>>8), byte(n))
	default:
		return errors.New("frame too large")
	}
	_, err := w.Write(append(hdr, payload...))
	return err
}

// readFrame reads one frame, unmasking a client's payload; control frames
// and small messages only (up to 64 KiB).
func readFrame(r io.Reader) (op byte, payload []byte, err error) {
	var h [2]byte
	if _, err = io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	op = h[0] & 0x0f
	masked := h[1]&0x80 != 0
	n := int(h[1] & 0x7f)
	switch n {
	case 126:
		var ext [2]byte
		if _, err = io.ReadFull(r, ext[:]); err != nil {
			return 0, nil, err
		}
		n = int(binary.BigEndian.Uint16(ext[:]))
	case 127:
		return 0, nil, errors.New("frame too large")
	}
	var mask [4]byte
	if masked {
		if _, err = io.ReadFull(r, mask[:]); err != nil {
			return 0, nil, err
		}
	}
	payload = make([]byte, n)
	if _, err = io.ReadFull(r, payload); err != nil {
		return 0, nil, err
	}
	if masked {
		for i := range payload {
			payload[i] ^= mask[i%4]
		}
	}
	return op, payload, nil
}
