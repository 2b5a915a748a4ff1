// Package relay is baton's L4 TCP relay for one service. nginx proxies to the
// relay, and the relay splices every accepted connection to the service's
// current app container. A deploy switches the target: new connections go to
// the new container while connections already open to the old one run to
// their end (drain), and baton stops the old container once its count of
// open connections reaches zero.
//
// The relay never reads from a client before its backend connection is
// established, so a failed dial can always be retried, even for a POST:
// the target's other addrs, then draining targets not forgotten, then the
// (re-read) current target again with backoff until DialDeadline. That is
// what makes a switch free of failed requests.
//
// What users of the relay must know:
//
//   - A deploy should run: set(new), wait-drained(old), forget(old), stop the
//     old container. Until forget, a draining target is a dial fallback, so
//     a connection may land on it after wait-drained reported it drained if
//     the new target refuses one; forget before stopping closes that window.
//   - A connection stays with the container it was dialed to for its whole
//     life. nginx must not keep upstream connections to the relay alive
//     without bound (a bare "keepalive" in the upstream block): a kept-alive
//     connection would carry new requests to the old container and keep it
//     from draining. Bounded by keepalive_time and keepalive_timeout (1s),
//     every such connection ends within a second of a switch, which spares
//     the relay a connection per request.
//   - The relay has no idle timeout: a client that never closes keeps its
//     target draining; wait-drained then times out rather than hanging.
//   - Only the current target is saved in the state file; draining targets
//     and counts start from zero when the relay restarts, and a restart
//     drops the connections open at that moment (after ShutdownGrace).
//   - Switching back to a target still draining (same Name and Addrs) makes
//     it current again with its counts.
//   - A corrupt state file is logged and ignored: the relay starts with no
//     target (connections wait up to DialDeadline) and the next set
//     rewrites it. A set whose state cannot be saved fails and changes
//     nothing.
package relay
