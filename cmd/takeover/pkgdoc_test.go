package main

import (
	"go/build/constraint"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestPackageDocs enforces house-style rule 1 over the whole module: every
// Go package has exactly one doc.go, and its package comment is the only
// one in the package and opens with "Package NAME " ("Command NAME " for a
// command). The module has no root package, so the walk starts at ../..
// from here.
func TestPackageDocs(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root %s: %v", root, err)
	}
	pkgs := map[string][]string{} // dir -> non-test .go files
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && (name == "testdata" || name == "vendor" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(name, ".go") && !strings.HasSuffix(name, "_test.go") && !ignored(t, path) {
			pkgs[filepath.Dir(path)] = append(pkgs[filepath.Dir(path)], path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(pkgs) < 10 {
		t.Fatalf("found %d packages under %s; the walk is broken", len(pkgs), root)
	}
	dirs := make([]string, 0, len(pkgs))
	for d := range pkgs {
		dirs = append(dirs, d)
	}
	slices.Sort(dirs)
	for _, dir := range dirs {
		rel, _ := filepath.Rel(root, dir)
		t.Run(filepath.ToSlash(rel), func(t *testing.T) {
			checkPackageDoc(t, dir, pkgs[dir])
		})
	}
}

// ignored reports whether a file is excluded from every build
// (//go:build ignore and the like).
func ignored(t *testing.T, path string) bool {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.PackageClauseOnly|parser.ParseComments)
	if err != nil {
		t.Errorf("parse %s: %v", path, err)
		return true
	}
	for _, g := range f.Comments {
		if g.Pos() >= f.Package {
			break
		}
		for _, c := range g.List {
			if constraint.IsGoBuild(c.Text) {
				if expr, err := constraint.Parse(c.Text); err == nil && !expr.Eval(func(tag string) bool { return tag == "linux" || tag == "unix" || tag == "amd64" || tag == "arm64" }) {
					return true
				}
			}
		}
	}
	return false
}

func checkPackageDoc(t *testing.T, dir string, files []string) {
	t.Helper()
	var docs []string // files with a package comment
	var docText, pkgName string
	hasDocGo := false
	for _, path := range files {
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.PackageClauseOnly|parser.ParseComments)
		if err != nil {
			t.Fatalf("parse %s: %v", path, err)
		}
		pkgName = f.Name.Name
		base := filepath.Base(path)
		if base == "doc.go" {
			hasDocGo = true
		}
		if f.Doc != nil {
			docs = append(docs, base)
			if base == "doc.go" {
				docText = f.Doc.Text()
			}
		}
	}
	if !hasDocGo {
		t.Fatalf("no doc.go (package comments in: %v)", docs)
	}
	if !slices.Equal(docs, []string{"doc.go"}) {
		t.Errorf("package comments in %v; want exactly one, in doc.go", docs)
	}
	want := "Package " + pkgName + " "
	if pkgName == "main" {
		want = "Command " + filepath.Base(dir) + " "
	}
	if !strings.HasPrefix(docText, want) {
		first, _, _ := strings.Cut(docText, "\n")
		t.Errorf("doc.go's package comment starts %q; want it to start %q", first, want)
	}
}
