package runbooks

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Error is one problem in a runbook file, at the position of the offending
// key or value. Line and Column count from 1. The YAML parser reports syntax
// errors with a line only, so a syntax error has Column 0, and Line 0 when
// the parser gave no line either (invalid UTF-8, for example); every other
// error has both.
type Error struct {
	File   string
	Line   int
	Column int
	Msg    string
	Hint   string // may be empty
}

// Error formats the problem as "file:line:col: msg (hint: ...)", leaving out
// the parts that are unknown.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
		if e.Column > 0 {
			fmt.Fprintf(&b, ":%d", e.Column)
		}
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	if e.Hint != "" {
		b.WriteString(" (hint: ")
		b.WriteString(e.Hint)
		b.WriteString(")")
	}
	return b.String()
}

// ErrorList is every problem found in one runbook file, sorted by position.
// [Load] and [Parse] return an ErrorList (never an empty one) when the file
// is not a valid runbook.
type ErrorList []*Error

// Error joins the problems, one per line.
func (l ErrorList) Error() string {
	s := make([]string, len(l))
	for i, e := range l {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// Unwrap makes each *Error reachable through errors.As.
func (l ErrorList) Unwrap() []error {
	errs := make([]error, len(l))
	for i, e := range l {
		errs[i] = e
	}
	return errs
}

func (l ErrorList) sort() {
	slices.SortStableFunc(l, func(a, b *Error) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column), strings.Compare(a.Msg, b.Msg))
	})
}
