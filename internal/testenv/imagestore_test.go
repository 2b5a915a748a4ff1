package testenv

import (
	"strings"
	"testing"
)

// TestCheckImageStore: a run started for one image store fails on an
// engine that has the other, and takes either when it names none.
func TestCheckImageStore(t *testing.T) {
	for _, tc := range []struct {
		got, want string
		errHas    string // "" for no error
	}{
		{"containerd", "", ""},
		{"overlay2", "", ""},
		{"containerd", "containerd", ""},
		{"fuse-overlayfs", "graphdriver", ""},
		{"overlay2", "containerd", "uses the overlay2 image store, but this run was started for the containerd store"},
		{"containerd", "graphdriver", "uses the containerd image store, but this run was started for the graphdriver store"},
		{"containerd", "snapshotter", `BATON_TEST_IMAGE_STORE="snapshotter": want containerd or graphdriver`},
	} {
		err := checkImageStore(tc.got, tc.want)
		switch {
		case tc.errHas == "" && err != nil:
			t.Errorf("engine %s, run for %q: %v, want no error", tc.got, tc.want, err)
		case tc.errHas != "" && (err == nil || !strings.Contains(err.Error(), tc.errHas)):
			t.Errorf("engine %s, run for %q: %v, want an error containing %q", tc.got, tc.want, err, tc.errHas)
		}
	}
}
