package runbooks

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// errorMark is the expected-error annotation of testdata/invalid files: a
// trailing "# ERROR: <substring>" on the line the error must point at. The
// substring is matched against the message and its hint.
var errorMark = regexp.MustCompile(`#\s*ERROR:\s*(.+?)\s*$`)

type mark struct {
	line int
	text string
}

func expectedErrors(t *testing.T, data []byte) []mark {
	t.Helper()
	var ms []mark
	for i, l := range strings.Split(string(data), "\n") {
		if m := errorMark.FindStringSubmatch(l); m != nil {
			ms = append(ms, mark{i + 1, m[1]})
		}
	}
	return ms
}

func testdataFiles(t testing.TB, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no files in testdata/%s", dir)
	}
	return files
}

func TestValidTestdata(t *testing.T) {
	for _, f := range testdataFiles(t, "valid") {
		t.Run(filepath.Base(f), func(t *testing.T) {
			rb, err := Load(f)
			if err != nil {
				t.Fatalf("want no error, got:\n%v", err)
			}
			if rb.File != f {
				t.Errorf("File = %q, want %q", rb.File, f)
			}
		})
	}
}

func TestInvalidTestdata(t *testing.T) {
	files := testdataFiles(t, "invalid")
	if len(files) < 30 {
		t.Errorf("only %d invalid cases, want at least 30", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			want := expectedErrors(t, data)
			if len(want) == 0 {
				t.Fatal("no # ERROR: annotation")
			}
			_, err = Parse(f, data)
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("want an ErrorList, got %T %v", err, err)
			}
			// Every error must be expected at its line, and every
			// expectation met by an error at its line.
			met := make([]bool, len(want))
			for _, e := range list {
				text := e.Msg + " (hint: " + e.Hint + ")"
				ok := false
				for i, w := range want {
					if w.line == e.Line && strings.Contains(text, w.text) {
						met[i], ok = true, true
					}
				}
				if !ok {
					t.Errorf("unexpected error: %v", e)
				}
				if e.File != f {
					t.Errorf("error names file %q, want %q", e.File, f)
				}
			}
			for i, w := range want {
				if !met[i] {
					t.Errorf("line %d: missing error containing %q; got:\n%v", w.line, w.text, err)
				}
			}
			if !slices.IsSortedFunc(list, func(a, b *Error) int {
				return cmpPos(a, b)
			}) {
				t.Errorf("errors not sorted by position:\n%v", err)
			}
		})
	}
}

func cmpPos(a, b *Error) int {
	if a.Line != b.Line {
		return a.Line - b.Line
	}
	return a.Column - b.Column
}

// TestExamples checks the runbooks shipped as documentation.
func TestExamples(t *testing.T) {
	files, err := filepath.Glob("examples/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "lab.yaml")
	if len(files) < 4 {
		t.Fatalf("found only %v", files)
	}
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			if _, err := Load(f); err != nil {
				t.Fatalf("want a valid runbook, got:\n%v", err)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	for _, dir := range []string{"valid", "invalid"} {
		for _, file := range testdataFiles(f, dir) {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rb, err := Parse("fuzz.yaml", data)
		if err == nil {
			if rb == nil {
				t.Fatal("nil runbook without error")
			}
			return
		}
		if rb != nil {
			t.Fatal("runbook returned with an error")
		}
		var list ErrorList
		if !errors.As(err, &list) || len(list) == 0 {
			t.Fatalf("want a non-empty ErrorList, got %T %v", err, err)
		}
		for _, e := range list {
			if e.File != "fuzz.yaml" || e.Msg == "" {
				t.Fatalf("malformed error %#v", e)
			}
			syntax := strings.HasPrefix(e.Msg, "syntax error: ")
			if !syntax && (e.Line < 1 || e.Column < 1) {
				t.Fatalf("error without a position: %v", e)
			}
			if syntax && (e.Line < 0 || e.Column != 0) {
				t.Fatalf("syntax error with a column: %v", e)
			}
			if want := fmt.Sprintf("fuzz.yaml:%d", e.Line); e.Line > 0 && !strings.HasPrefix(e.Error(), want) {
				t.Fatalf("Error() = %q, want prefix %q", e.Error(), want)
			}
		}
	})
}
