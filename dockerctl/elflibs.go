package dockerctl

import (
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// elfFile is one file a dynamically linked program needs at run time.
type elfFile struct {
	Path string // the absolute path the loader asks for: where it goes in the image
	Src  string // the host file holding it, symlinks resolved
}

// elfDeps is what a program needs besides itself: its ELF interpreter
// (PT_INTERP; empty for a static binary) and the shared libraries it loads,
// in the loader's breadth-first order.
type elfDeps struct {
	Interp elfFile
	Libs   []elfFile
}

// Static reports whether the program needs nothing besides itself.
func (d elfDeps) Static() bool { return d.Interp.Path == "" && len(d.Libs) == 0 }

// LibDirs returns the directories holding the libraries, in first-use
// order: the library path of an image that holds no ld.so.cache.
func (d elfDeps) LibDirs() []string {
	var dirs []string
	for _, l := range d.Libs {
		if dir := path.Dir(l.Path); !slices.Contains(dirs, dir) {
			dirs = append(dirs, dir)
		}
	}
	return dirs
}

// libResolver finds shared libraries the way glibc's ld.so does, without
// running it (or ldd): DT_RPATH of the object and its loaders (unless the
// object has DT_RUNPATH), LD_LIBRARY_PATH, the object's DT_RUNPATH, the
// directories of /etc/ld.so.conf (which ldconfig turns into the cache), then
// the default directories, multiarch first. Every path is read below root,
// with symlinks resolved inside it, so tests can point it at a tree of their
// own.
type libResolver struct {
	root        string   // "/" on the host
	libraryPath []string // LD_LIBRARY_PATH of this process
}

// elfObject is a loaded object as the search needs it.
type elfObject struct {
	path    string // as requested, for $ORIGIN and messages
	needed  []string
	runpath []string // with $ORIGIN expanded
	rpath   []string // empty when the object has DT_RUNPATH: ld.so ignores it then
	loader  *elfObject
}

// resolve returns what the program at exe (a path below root) needs.
func (r libResolver) resolve(exe string) (elfDeps, error) {
	host, _, err := r.hostPath(exe)
	if err != nil {
		return elfDeps{}, fmt.Errorf("program %s: %w", exe, err)
	}
	f, err := elf.Open(host)
	if err != nil {
		return elfDeps{}, fmt.Errorf("program %s: %w", exe, err)
	}
	defer f.Close()
	interp, err := interpreter(f)
	if err != nil {
		return elfDeps{}, fmt.Errorf("program %s: %w", exe, err)
	}
	if interp == "" {
		return elfDeps{}, nil // static: the kernel runs it as it is
	}
	var deps elfDeps
	src, _, err := r.hostPath(interp)
	if err != nil {
		return elfDeps{}, fmt.Errorf("program %s: its ELF interpreter %s: %w", exe, interp, err)
	}
	deps.Interp = elfFile{Path: interp, Src: src}
	// The loader is loaded already: a DT_NEEDED naming it (libc does) is
	// satisfied by it, not by a second copy.
	loaded := map[string]bool{path.Base(interp): true}
	if soname, err := r.soname(src); err != nil {
		return elfDeps{}, fmt.Errorf("program %s: its ELF interpreter %s: %w", exe, interp, err)
	} else if soname != "" {
		loaded[soname] = true
	}
	// $ORIGIN of the program is its real directory, as ld.so reads it from
	// /proc/self/exe.
	_, real, err := r.hostPath(exe)
	if err != nil {
		return elfDeps{}, err
	}
	main, err := newELFObject(f, real)
	if err != nil {
		return elfDeps{}, fmt.Errorf("program %s: %w", exe, err)
	}
	conf := r.confDirs()
	dflt := defaultLibDirs(f.Class, f.Machine)
	// Breadth first, as ld.so loads them: the order decides which object's
	// search path finds a name first.
	queue := []*elfObject{main}
	for len(queue) > 0 {
		obj := queue[0]
		queue = queue[1:]
		for _, name := range obj.needed {
			if loaded[name] {
				continue
			}
			found, lib, err := r.find(name, obj, conf, dflt, f.Class, f.Machine)
			if err != nil {
				return elfDeps{}, err
			}
			loaded[name] = true
			if found.Path != name {
				loaded[found.Path] = true
			}
			deps.Libs = append(deps.Libs, found)
			queue = append(queue, lib)
		}
	}
	return deps, nil
}

// find looks for the library name needed by obj.
func (r libResolver) find(name string, obj *elfObject, conf, dflt []string, class elf.Class, machine elf.Machine) (elfFile, *elfObject, error) {
	var cands []string
	if strings.Contains(name, "/") {
		if !path.IsAbs(name) {
			return elfFile{}, nil, fmt.Errorf("library %s (needed by %s): a relative path the loader would look up from the current directory; link with a name or an absolute path", name, obj.path)
		}
		cands = []string{name}
	} else {
		var dirs []string
		if len(obj.runpath) == 0 {
			for l := obj; l != nil; l = l.loader {
				dirs = append(dirs, l.rpath...)
			}
		}
		dirs = append(dirs, r.libraryPath...)
		dirs = append(dirs, obj.runpath...)
		dirs = append(dirs, conf...)
		dirs = append(dirs, dflt...)
		for _, d := range dirs {
			if path.IsAbs(d) {
				cands = append(cands, path.Join(d, name))
			}
		}
	}
	for _, c := range cands {
		src, _, err := r.hostPath(c)
		if err != nil {
			continue // not there: the next directory
		}
		f, err := elf.Open(src)
		if err != nil {
			continue // not an ELF object: ld.so skips it too
		}
		// ld.so skips an object of another class or machine (32-bit
		// libraries in /usr/lib, say) and goes on searching.
		if f.Class != class || f.Machine != machine {
			f.Close()
			continue
		}
		lib, err := newELFObject(f, c)
		f.Close()
		if err != nil {
			return elfFile{}, nil, fmt.Errorf("library %s: %w", c, err)
		}
		lib.loader = obj
		return elfFile{Path: c, Src: src}, lib, nil
	}
	return elfFile{}, nil, fmt.Errorf("library %s, needed by %s, is not found (searched the RPATH/RUNPATH, LD_LIBRARY_PATH, /etc/ld.so.conf and default directories)", name, obj.path)
}

func newELFObject(f *elf.File, objPath string) (*elfObject, error) {
	needed, err := f.DynString(elf.DT_NEEDED)
	if err != nil {
		return nil, fmt.Errorf("reading DT_NEEDED: %w", err)
	}
	runpath, err := f.DynString(elf.DT_RUNPATH)
	if err != nil {
		return nil, fmt.Errorf("reading DT_RUNPATH: %w", err)
	}
	rpath, err := f.DynString(elf.DT_RPATH)
	if err != nil {
		return nil, fmt.Errorf("reading DT_RPATH: %w", err)
	}
	origin := path.Dir(objPath)
	o := &elfObject{path: objPath, needed: needed, runpath: searchDirs(runpath, origin)}
	if len(runpath) == 0 {
		o.rpath = searchDirs(rpath, origin)
	}
	return o, nil
}

// searchDirs splits DT_RUNPATH/DT_RPATH strings into directories, expanding
// $ORIGIN. Directories with another token ($LIB, $PLATFORM) are left out:
// their value is the loader's to choose.
func searchDirs(vals []string, origin string) []string {
	var dirs []string
	for _, v := range vals {
		for d := range strings.SplitSeq(v, ":") {
			d = strings.ReplaceAll(strings.ReplaceAll(d, "${ORIGIN}", origin), "$ORIGIN", origin)
			if d == "" || strings.Contains(d, "$") {
				continue
			}
			dirs = append(dirs, path.Clean(d))
		}
	}
	return dirs
}

// interpreter returns the program's PT_INTERP, "" for a static binary.
func interpreter(f *elf.File) (string, error) {
	for _, p := range f.Progs {
		if p.Type != elf.PT_INTERP {
			continue
		}
		b, err := io.ReadAll(p.Open())
		if err != nil {
			return "", fmt.Errorf("reading PT_INTERP: %w", err)
		}
		interp := strings.TrimRight(string(b), "\x00")
		if !path.IsAbs(interp) {
			return "", fmt.Errorf("ELF interpreter %q is not an absolute path", interp)
		}
		return interp, nil
	}
	return "", nil
}

func (r libResolver) soname(host string) (string, error) {
	f, err := elf.Open(host)
	if err != nil {
		return "", err
	}
	defer f.Close()
	names, err := f.DynString(elf.DT_SONAME)
	if err != nil || len(names) == 0 {
		return "", err
	}
	return names[0], nil
}

// confDirs returns the directories of /etc/ld.so.conf and the files it
// includes, in order; a missing file yields none.
func (r libResolver) confDirs() []string {
	var dirs []string
	seen := map[string]bool{}
	var read func(file string, depth int)
	read = func(file string, depth int) {
		if depth > 10 || seen[file] {
			return
		}
		seen[file] = true
		host, _, err := r.hostPath(file)
		if err != nil {
			return
		}
		data, err := os.ReadFile(host)
		if err != nil {
			return
		}
		for line := range strings.SplitSeq(string(data), "\n") {
			line, _, _ = strings.Cut(line, "#")
			fields := strings.FieldsFunc(line, func(r rune) bool { return r == ' ' || r == '\t' || r == ':' || r == ',' || r == '=' })
			if len(fields) == 0 {
				continue
			}
			switch fields[0] {
			case "include":
				for _, pat := range fields[1:] {
					if !path.IsAbs(pat) {
						pat = path.Join(path.Dir(file), pat)
					}
					matches, err := filepath.Glob(filepath.Join(r.root, pat))
					if err != nil {
						continue
					}
					slices.Sort(matches)
					for _, m := range matches {
						rel, err := filepath.Rel(r.root, m)
						if err == nil {
							read("/"+filepath.ToSlash(rel), depth+1)
						}
					}
				}
			case "hwcap":
			default:
				for _, d := range fields {
					if path.IsAbs(d) && !slices.Contains(dirs, path.Clean(d)) {
						dirs = append(dirs, path.Clean(d))
					}
				}
			}
		}
	}
	read("/etc/ld.so.conf", 0)
	return dirs
}

// multiarchTriplets names Debian's multiarch library directories by machine.
var multiarchTriplets = map[elf.Machine][]string{
	elf.EM_X86_64:  {"x86_64-linux-gnu"},
	elf.EM_AARCH64: {"aarch64-linux-gnu"},
	elf.EM_386:     {"i386-linux-gnu"},
	elf.EM_ARM:     {"arm-linux-gnueabihf", "arm-linux-gnueabi"},
	elf.EM_RISCV:   {"riscv64-linux-gnu"},
	elf.EM_PPC64:   {"powerpc64le-linux-gnu"},
	elf.EM_S390:    {"s390x-linux-gnu"},
}

// defaultLibDirs returns the loader's built-in directories: Debian's
// multiarch ones, the lib64 ones of 64-bit distributions, then /lib and
// /usr/lib (musl's too).
func defaultLibDirs(class elf.Class, machine elf.Machine) []string {
	var dirs []string
	for _, t := range multiarchTriplets[machine] {
		dirs = append(dirs, "/lib/"+t, "/usr/lib/"+t)
	}
	if class == elf.ELFCLASS64 {
		dirs = append(dirs, "/lib64", "/usr/lib64")
	}
	return append(dirs, "/lib", "/usr/lib", "/usr/local/lib")
}

// errTooManyLinks is ELOOP: a symlink cycle below root.
var errTooManyLinks = errors.New("too many levels of symbolic links")

// hostPath resolves p (absolute, as seen from inside root) to the host path
// of the file it names, following symlinks the way the kernel would with
// root as its root directory, so an absolute link target stays inside root.
// It also returns the resolved path as seen from inside root.
func (r libResolver) hostPath(p string) (host, inRoot string, err error) {
	root := r.root
	if root == "" {
		root = "/"
	}
	resolved := "/"
	rest := strings.Split(p, "/")
	links := 0
	for len(rest) > 0 {
		c := rest[0]
		rest = rest[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			resolved = path.Dir(resolved)
			continue
		}
		next := path.Join(resolved, c)
		h := filepath.Join(root, filepath.FromSlash(next))
		fi, err := os.Lstat(h)
		if err != nil {
			return "", "", err
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			if len(rest) > 0 && !fi.IsDir() {
				return "", "", fmt.Errorf("%s: not a directory", next)
			}
			resolved = next
			continue
		}
		if links++; links > 40 {
			return "", "", fmt.Errorf("%s: %w", p, errTooManyLinks)
		}
		target, err := os.Readlink(h)
		if err != nil {
			return "", "", err
		}
		if path.IsAbs(target) {
			resolved = "/"
		}
		rest = append(strings.Split(target, "/"), rest...)
	}
	h := filepath.Join(root, filepath.FromSlash(resolved))
	fi, err := os.Stat(h)
	if err != nil {
		return "", "", err
	}
	if !fi.Mode().IsRegular() {
		return "", "", fmt.Errorf("%s: not a regular file", p)
	}
	return h, resolved, nil
}
