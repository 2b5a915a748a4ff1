package relay

import (
	"os"
	"path/filepath"
	"testing"
)

// TestStatePersists: a relay restarted with the same state file serves the
// target that was set before, on a new listener and the same control
// socket path.
func TestStatePersists(t *testing.T) {
	a := startHTTPBackend(t, "a")
	dir := filepath.Join(t.TempDir(), "state") // created by the relay
	stateFile := filepath.Join(dir, "relay.json")

	r1 := startRelay(t, Config{StateFile: stateFile})
	r1.set(t, "a", "127.0.0.1:1", a.addr)
	r1.stop(t)

	saved, found, err := loadState(stateFile)
	if err != nil || !found || saved.Generation != 1 || !saved.Target.Equal(Target{Name: "a", Addrs: []string{"127.0.0.1:1", a.addr}}) {
		t.Fatalf("state file after set: %+v, found %v, %v", saved, found, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Fatalf("state dir holds %d entries, want only relay.json (temp files left behind?)", len(entries))
	}

	r2 := startRelay(t, Config{StateFile: stateFile, ControlSocket: r1.cfg.ControlSocket})
	body, err := get(t.Context(), newHTTPClient(), r2.url("/"))
	if err != nil || body != "a" {
		t.Fatalf("restarted relay: %q, %v; want the saved target a to serve", body, err)
	}
	st := r2.status(t)
	if st.Generation != 1 || st.Current == nil || st.Current.Name != "a" || st.Current.Since.IsZero() {
		t.Fatalf("restarted relay status: %+v", st)
	}
}

// TestUnreadableStateFile: a corrupt state file does not keep the relay
// from starting (nobody could repair it otherwise); it starts without a
// target and the next set rewrites the file.
func TestUnreadableStateFile(t *testing.T) {
	stateFile := filepath.Join(t.TempDir(), "relay.json")
	if err := os.WriteFile(stateFile, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := startRelay(t, Config{StateFile: stateFile})
	if st := r.status(t); st.Current != nil || st.Generation != 0 {
		t.Fatalf("status with a corrupt state file: %+v", st)
	}
	if r.warns.Load() != 1 {
		t.Fatalf("relay logged %d warnings/errors for a corrupt state file; want 1", r.warns.Load())
	}
	r.set(t, "a", "127.0.0.1:1")
	if saved, found, err := loadState(stateFile); err != nil || !found || saved.Target.Name != "a" {
		t.Fatalf("state file after set: %+v, %v, %v", saved, found, err)
	}
}

// TestSetFailsWhenStateCannotBeSaved: a switch that cannot be saved does
// not happen, so memory and the state file never disagree.
func TestSetFailsWhenStateCannotBeSaved(t *testing.T) {
	stateFile := filepath.Join(t.TempDir(), "relay.json")
	if err := os.Mkdir(stateFile, 0o755); err != nil { // rename onto a directory fails
		t.Fatal(err)
	}
	r := startRelay(t, Config{StateFile: stateFile})
	_, err := r.ctl.Set(t.Context(), Target{Name: "a", Addrs: []string{"127.0.0.1:1"}})
	if err == nil {
		t.Fatal("set succeeded though the state file cannot be written")
	}
	t.Logf("set error: %v", err)
	if st := r.status(t); st.Current != nil || st.Generation != 0 {
		t.Fatalf("status after a failed set: %+v; want unchanged", st)
	}
}
