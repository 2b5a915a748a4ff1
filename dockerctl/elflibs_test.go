package dockerctl

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

// elfTree is a root directory laid out like a Debian system with merged
// /usr, holding real ELF objects compiled for the test and the host's own
// libc and loader:
//
//	/lib -> usr/lib, /lib64 -> usr/lib64 (relative links)
//	/lib64/ld-linux-x86-64.so.2 -> /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 (absolute)
//	/usr/lib/x86_64-linux-gnu/{libc.so.6, ld-linux-x86-64.so.2}  (the host's)
//	/usr/bin/app       NEEDED libfoo.so.1, RUNPATH $ORIGIN/../lib
//	/usr/bin/app-rpath NEEDED libfoo.so.1, RPATH $ORIGIN/../lib (old dtags)
//	/usr/lib/libfoo.so.1 -> libfoo.so.1.0.0, NEEDED libbar.so.1
//	/usr/lib/libbar.so.1        a decoy: RUNPATH applies to direct needs only
//	/opt/bar/lib/libbar.so.1    found through /etc/ld.so.conf.d/bar.conf
//	/usr/local/lib/libbar.so.1  not ELF; /usr/local/lib64/libbar.so.1 another machine
type elfTree struct {
	root   string
	interp string // the host loader's PT_INTERP
	libc   string // the host's libc directory, as in the tree
}

func newELFTree(t *testing.T) elfTree {
	t.Helper()
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skipf("the fixture tree is laid out for linux/amd64, not %s/%s", runtime.GOOS, runtime.GOARCH)
	}
	gcc := lookGCC(t)
	src := t.TempDir()
	root := t.TempDir()
	write := func(p, data string) {
		t.Helper()
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	link := func(p, target string) {
		t.Helper()
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, full); err != nil {
			t.Fatal(err)
		}
	}
	cc := func(out string, args ...string) {
		t.Helper()
		full := filepath.Join(root, out)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(gcc, append(args, "-o", full)...)
		cmd.Dir = src
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("gcc %v: %v\n%s", args, err, b)
		}
	}
	for name, code := range map[string]string{
		"bar.c":  "int bar(void) { return 1; }\n",
		"foo.c":  "int bar(void);\nint foo(void) { return bar() + 1; }\n",
		"main.c": "int foo(void);\nint main(void) { return foo() - 2; }\n",
	} {
		if err := os.WriteFile(filepath.Join(src, name), []byte(code), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	link("lib", "usr/lib")
	link("lib64", "usr/lib64")
	cc("opt/bar/lib/libbar.so.1", "-shared", "-fPIC", "-Wl,-soname,libbar.so.1", "bar.c")
	cc("usr/lib/libbar.so.1", "-shared", "-fPIC", "-Wl,-soname,libbar.so.1", "bar.c")
	linkDir := t.TempDir() // what the linker sees; the loader never looks here
	if err := os.Symlink(filepath.Join(root, "opt/bar/lib/libbar.so.1"), filepath.Join(linkDir, "libbar.so")); err != nil {
		t.Fatal(err)
	}
	cc("usr/lib/libfoo.so.1.0.0", "-shared", "-fPIC", "-Wl,-soname,libfoo.so.1", "foo.c", "-L"+linkDir, "-lbar")
	link("usr/lib/libfoo.so.1", "libfoo.so.1.0.0")
	if err := os.Symlink(filepath.Join(root, "usr/lib/libfoo.so.1.0.0"), filepath.Join(linkDir, "libfoo.so")); err != nil {
		t.Fatal(err)
	}
	cc("usr/bin/app", "main.c", "-L"+linkDir, "-lfoo", "-Wl,-rpath-link,"+filepath.Join(root, "opt/bar/lib"), "-Wl,--enable-new-dtags,-rpath,$ORIGIN/../lib")
	cc("usr/bin/app-rpath", "main.c", "-L"+linkDir, "-lfoo", "-Wl,-rpath-link,"+filepath.Join(root, "opt/bar/lib"), "-Wl,--disable-new-dtags,-rpath,$ORIGIN/../lib")
	write("usr/local/lib/libbar.so.1", "not an ELF object\n")
	// The same library for another machine: ld.so passes over it.
	bar, err := os.ReadFile(filepath.Join(root, "opt/bar/lib/libbar.so.1"))
	if err != nil {
		t.Fatal(err)
	}
	bar[18], bar[19] = byte(elf.EM_AARCH64), 0 // e_machine, little-endian
	write("usr/local/lib64/libbar.so.1", string(bar))
	write("etc/ld.so.conf", "# comment\ninclude /etc/ld.so.conf.d/*.conf\n")
	write("etc/ld.so.conf.d/a-local.conf", "/usr/local/lib\n/usr/local/lib64\n")
	write("etc/ld.so.conf.d/bar.conf", "/opt/bar/lib # the bar package\n")

	// The host's libc and loader, as the tree's own.
	exe, err := elf.Open(filepath.Join(root, "usr/bin/app"))
	if err != nil {
		t.Fatal(err)
	}
	interp, err := interpreter(exe)
	exe.Close()
	if err != nil || interp != "/lib64/ld-linux-x86-64.so.2" {
		t.Fatalf("gcc's PT_INTERP = %q, %v; the fixture expects /lib64/ld-linux-x86-64.so.2", interp, err)
	}
	hostLoader, err := filepath.EvalSymlinks(interp)
	if err != nil {
		t.Fatal(err)
	}
	hostLibc, err := filepath.EvalSymlinks("/lib/x86_64-linux-gnu/libc.so.6")
	if err != nil {
		t.Fatalf("the host's libc: %v", err)
	}
	for from, to := range map[string]string{hostLoader: "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", hostLibc: "usr/lib/x86_64-linux-gnu/libc.so.6"} {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		write(to, string(b))
	}
	link("usr/lib64/ld-linux-x86-64.so.2", "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
	return elfTree{root: root, interp: interp, libc: "/lib/x86_64-linux-gnu"}
}

func (tr elfTree) host(p string) string { return filepath.Join(tr.root, p) }

func TestLibResolverFindsWhatTheLoaderLoads(t *testing.T) {
	tr := newELFTree(t)
	r := libResolver{root: tr.root}
	loader := elfFile{Path: "/lib64/ld-linux-x86-64.so.2", Src: tr.host("usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")}
	libc := elfFile{Path: "/lib/x86_64-linux-gnu/libc.so.6", Src: tr.host("usr/lib/x86_64-linux-gnu/libc.so.6")}
	foo := elfFile{Path: "/usr/lib/libfoo.so.1", Src: tr.host("usr/lib/libfoo.so.1.0.0")}
	for _, tt := range []struct {
		name, exe string
		want      elfDeps
	}{
		// DT_RUNPATH serves the program's own needs only: libfoo's libbar
		// comes from ld.so.conf, past a non-ELF file and another machine's
		// library in earlier directories. libc's need of the loader is the
		// loader itself. Breadth first: libc before libbar.
		{"runpath", "/usr/bin/app", elfDeps{Interp: loader, Libs: []elfFile{foo, libc,
			{Path: "/opt/bar/lib/libbar.so.1", Src: tr.host("opt/bar/lib/libbar.so.1")}}}},
		// DT_RPATH is inherited: libfoo's libbar comes from the program's.
		{"rpath", "/usr/bin/app-rpath", elfDeps{Interp: loader, Libs: []elfFile{foo, libc,
			{Path: "/usr/lib/libbar.so.1", Src: tr.host("usr/lib/libbar.so.1")}}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := r.resolve(tt.exe)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("resolve(%s)\n got %+v\nwant %+v", tt.exe, got, tt.want)
			}
		})
	}

	// LD_LIBRARY_PATH comes before ld.so.conf, as for the host's loader.
	got, err := libResolver{root: tr.root, libraryPath: []string{"/usr/lib"}}.resolve("/usr/bin/app")
	if err != nil {
		t.Fatal(err)
	}
	if last := got.Libs[len(got.Libs)-1]; last.Path != "/usr/lib/libbar.so.1" {
		t.Errorf("with LD_LIBRARY_PATH=/usr/lib libbar came from %s", last.Path)
	}

	// A library nowhere to be found is an error naming it and its user.
	for _, p := range []string{"opt/bar/lib/libbar.so.1", "usr/lib/libbar.so.1"} {
		if err := os.Remove(tr.host(p)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.resolve("/usr/bin/app"); err == nil || !strings.Contains(err.Error(), "libbar.so.1, needed by /usr/lib/libfoo.so.1, is not found") {
		t.Fatalf("resolve without libbar: %v, want libbar.so.1 not found", err)
	}
}

func TestLibResolverSymlinksStayInsideRoot(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "a"), 0o755); err != nil {
		t.Fatal(err)
	}
	// An absolute target is taken from root, never from the host's /.
	for p, target := range map[string]string{"a/passwd": "/etc/passwd", "a/loop": "/a/loop", "a/up": "../../../../etc/passwd"} {
		if err := os.Symlink(target, filepath.Join(root, p)); err != nil {
			t.Fatal(err)
		}
	}
	r := libResolver{root: root}
	for _, p := range []string{"/a/passwd", "/a/up"} {
		if _, _, err := r.hostPath(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("hostPath(%s) = %v, want not found inside root", p, err)
		}
	}
	if _, _, err := r.hostPath("/a/loop"); !errors.Is(err, errTooManyLinks) {
		t.Errorf("hostPath(/a/loop) = %v, want too many links", err)
	}
	// Positive control: a link inside root resolves.
	if err := os.WriteFile(filepath.Join(root, "a/file"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/a/file", filepath.Join(root, "a/ok")); err != nil {
		t.Fatal(err)
	}
	if h, in, err := r.hostPath("/a/ok"); err != nil || h != filepath.Join(root, "a/file") || in != "/a/file" {
		t.Errorf("hostPath(/a/ok) = %s, %s, %v", h, in, err)
	}
}

func TestSelfImageLayout(t *testing.T) {
	tr := newELFTree(t)
	r := libResolver{root: tr.root}
	img, err := selfImageFor("/usr/bin/app", r)
	if err != nil {
		t.Fatal(err)
	}
	files := tarFiles(t, img.rootfs)
	want := map[string]string{
		"baton":                          tr.host("usr/bin/app"),
		"lib64/ld-linux-x86-64.so.2":     tr.host("usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"),
		"lib/x86_64-linux-gnu/libc.so.6": tr.host("usr/lib/x86_64-linux-gnu/libc.so.6"),
		"usr/lib/libfoo.so.1":            tr.host("usr/lib/libfoo.so.1.0.0"),
		"opt/bar/lib/libbar.so.1":        tr.host("opt/bar/lib/libbar.so.1"),
	}
	if len(files) != len(want) {
		t.Errorf("image files %v, want %v", keys(files), keys(want))
	}
	for name, src := range want {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := files[name]; !ok || !bytes.Equal(got, data) {
			t.Errorf("image file %s: present %v, content of %s %v", name, ok, src, bytes.Equal(got, data))
		}
	}
	// The relay's state directory belongs to the user it runs as, so a new
	// volume there is the relay's own.
	if h := tarHeader(t, img.rootfs, "state/"); h == nil || h.Typeflag != tar.TypeDir || h.Uid != 65534 || h.Gid != 65534 || h.Mode != 0o700 {
		t.Errorf("state directory in the image: %+v, want a directory 0700 of 65534:65534 (RelayUser %s)", h, RelayUser)
	}
	wantChanges := []string{`ENTRYPOINT ["/baton"]`, "LABEL baton.managed=true", "ENV LD_LIBRARY_PATH=/usr/lib:/lib/x86_64-linux-gnu:/opt/bar/lib"}
	if !reflect.DeepEqual(img.changes, wantChanges) {
		t.Errorf("changes %q, want %q", img.changes, wantChanges)
	}

	// The tag follows the content: the same files make the same tag, a
	// changed library another.
	again, err := selfImageFor("/usr/bin/app", r)
	if err != nil {
		t.Fatal(err)
	}
	if again.ref() != img.ref() || !strings.HasPrefix(img.ref(), "baton:self-") {
		t.Fatalf("refs %s and %s of the same files", img.ref(), again.ref())
	}
	f, err := os.OpenFile(tr.host("opt/bar/lib/libbar.so.1"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte{0}); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	changed, err := selfImageFor("/usr/bin/app", r)
	if err != nil {
		t.Fatal(err)
	}
	if changed.ref() == img.ref() {
		t.Fatalf("a changed library kept the tag %s", img.ref())
	}
}

// TestSelfImageStatic: a static binary (what make build makes) is the whole
// image, with no loader and no library path.
func TestSelfImageStatic(t *testing.T) {
	gcc := lookGCC(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.c"), []byte("int main(void) { return 0; }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(gcc, "-static", "-o", "static", "main.c")
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gcc -static: %v\n%s", err, b)
	}
	img, err := selfImageFor(filepath.Join(dir, "static"), libResolver{root: "/"})
	if err != nil {
		t.Fatal(err)
	}
	if files := tarFiles(t, img.rootfs); len(files) != 1 || files["baton"] == nil {
		t.Errorf("static image files %v, want just baton", keys(files))
	}
	if want := []string{`ENTRYPOINT ["/baton"]`, "LABEL baton.managed=true"}; !reflect.DeepEqual(img.changes, want) {
		t.Errorf("changes %q, want %q", img.changes, want)
	}
}

// lookGCC returns the C compiler the ELF fixtures are compiled with. The
// full suite requires it (scripts/setup installs it; the cgo build of baton
// needs it too); the -short loop may run without one.
func lookGCC(t *testing.T) string {
	t.Helper()
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		if testing.Short() {
			t.Skipf("no gcc to compile the ELF fixtures with (-short): %v", err)
		}
		t.Fatalf("this test compiles its ELF fixtures with gcc (scripts/setup installs it): %v", err)
	}
	return gcc
}

func tarFiles(t *testing.T, b []byte) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(b))
	dirs := map[string]bool{"": true}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		if parent := filepath.Dir(strings.TrimSuffix(h.Name, "/")); parent != "." && !dirs[parent] {
			t.Errorf("tar entry %s comes before its directory", h.Name)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			dirs[strings.TrimSuffix(h.Name, "/")] = true
		case tar.TypeReg:
			if h.Mode != 0o755 {
				t.Errorf("tar entry %s mode %o", h.Name, h.Mode)
			}
			data, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			files[h.Name] = data
		default:
			t.Errorf("tar entry %s of type %c", h.Name, h.Typeflag)
		}
	}
}

// tarHeader returns the header of the entry called name, nil if none.
func tarHeader(t *testing.T, b []byte, name string) *tar.Header {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == name {
			return h
		}
	}
}

func keys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}
