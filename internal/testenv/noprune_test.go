package testenv

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestNothingPrunesSharedImages: the Docker packages run side by side, so
// removing an image's parents, or pruning images or the build cache, can
// take a layer from under another package's build or run (issue 9: a
// fresh `make test` failed so). Test images are imported with no parent
// and removed without their parents (removeImage); the one classic build
// (e2e's TestBatonImage) uses NoCache, so the parents it prunes are its
// own. Any other use of these calls fails here before it can fail a run by
// chance.
func TestNothingPrunesSharedImages(t *testing.T) {
	allowed := map[string]string{
		filepath.Join("internal", "e2e", "image_test.go"): "PruneChildren: true", // its own NoCache build's steps
	}
	risky := []string{"PruneChildren: true", "ImagesPrune(", "BuildCachePrune(", "ContainersPrune(", "image prune", "builder prune", "system prune"}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root %s: %v", root, err)
	}
	self := filepath.Join("internal", "testenv", "noprune_test.go")
	scanned := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			if strings.HasPrefix(d.Name(), ".") && rel != "." || d.Name() == "bin" {
				return filepath.SkipDir
			}
			return nil
		}
		ext := filepath.Ext(path)
		if rel == self || (ext != ".go" && ext != ".sh" && d.Name() != "Makefile" && filepath.Dir(rel) != "scripts") {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		scanned++
		for i, line := range strings.Split(string(data), "\n") {
			for _, r := range risky {
				if strings.Contains(line, r) && allowed[rel] != r {
					t.Errorf("%s:%d: %q can remove images other packages build or run on; remove only what the test made, without its parents (see removeImage)", rel, i+1, r)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The walk must have seen the code, or it proves nothing.
	if scanned < 100 {
		t.Fatalf("scanned %d files under %s, want the whole module", scanned, root)
	}
}
