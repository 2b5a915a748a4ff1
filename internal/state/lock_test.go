package state

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// When BATON_TEST_HOLD_LOCK is set, the test binary is a helper process that
// takes the lock and holds it until killed.
func TestMain(m *testing.M) {
	if spec := os.Getenv("BATON_TEST_HOLD_LOCK"); spec != "" {
		dir, key, _ := strings.Cut(spec, "|")
		d, err := Open(dir)
		if err != nil {
			os.Exit(3)
		}
		if _, err := d.Lock(context.Background(), key, nil); err != nil {
			os.Exit(4)
		}
		os.Stdout.WriteString("locked\n")
		time.Sleep(time.Hour) // until killed
	}
	os.Exit(m.Run())
}

func holdLockInChild(t *testing.T, dir, key string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "BATON_TEST_HOLD_LOCK="+dir+"|"+key)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "locked\n" {
		t.Fatalf("helper did not take the lock: %q %v", line, err)
	}
	return cmd
}

// A lock held by another process excludes us, and a SIGKILL of that process
// frees it at once: a killed baton never leaves a stuck lock.
func TestLockAcrossProcessesAndKill(t *testing.T) {
	dir := t.TempDir()
	d, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	child := holdLockInChild(t, dir, "web")
	if _, ok, err := d.TryLock("web"); err != nil || ok {
		t.Fatalf("TryLock while another process holds it: ok=%v err=%v", ok, err)
	}
	if unlock, ok, err := d.TryLock("api"); err != nil || !ok {
		t.Fatalf("another service's lock: ok=%v err=%v", ok, err)
	} else {
		unlock()
	}
	waited := false
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	_, err = d.Lock(ctx, "web", func() { waited = true })
	cancel()
	if err == nil || !waited {
		t.Fatalf("Lock should wait, report it, and give up at the deadline: err=%v waited=%v", err, waited)
	}
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()
	unlock, ok, err := d.TryLock("web")
	if err != nil || !ok {
		t.Fatalf("lock still held after its holder was killed: ok=%v err=%v", ok, err)
	}
	unlock()
}

func TestRecordRoundTrip(t *testing.T) {
	d, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	type rec struct{ Phase string }
	var got rec
	if found, err := d.ReadRecord("shop/web", &got); err != nil || found {
		t.Fatalf("empty dir: found=%v err=%v", found, err)
	}
	if err := d.WriteRecord("shop/web", rec{Phase: "drain"}); err != nil {
		t.Fatal(err)
	}
	if found, err := d.ReadRecord("shop/web", &got); err != nil || !found || got.Phase != "drain" {
		t.Fatalf("read back %+v found=%v err=%v", got, found, err)
	}
	if err := d.RemoveRecord("shop/web"); err != nil {
		t.Fatal(err)
	}
	if found, _ := d.ReadRecord("shop/web", &got); found {
		t.Fatal("record still there")
	}
}
