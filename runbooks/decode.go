package runbooks

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Load reads the runbook file at path, decodes it strictly, applies the
// defaults and validates it. A file that cannot be read gives a wrapped
// *os.PathError; a file that is not a valid runbook gives an [ErrorList].
func Load(path string) (*Runbook, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read runbook: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes data as the runbook file name (used in positions and in
// [Runbook.File]), applies the defaults and validates the result. On any
// problem it returns a nil Runbook and an [ErrorList] with every problem
// found, sorted by position.
func Parse(name string, data []byte) (*Runbook, error) {
	rb, errs := parse(name, data)
	if len(errs) > 0 {
		return nil, errs
	}
	return rb, nil
}

// parse returns what could be decoded (never nil) and the problems found.
func parse(name string, data []byte) (*Runbook, ErrorList) {
	rb := &Runbook{File: name}
	d := &decoder{
		file:    name,
		values:  map[string]*yaml.Node{},
		keys:    map[string]*yaml.Node{},
		secrets: map[*yaml.Node]bool{},
		bad:     map[string]bool{},
	}
	root := d.document(data)
	if root == nil {
		d.errs.sort()
		return rb, d.errs
	}
	d.root = root
	d.scanSecrets(root)
	d.decodeValue("", root, reflect.ValueOf(rb).Elem())
	if root.Kind == yaml.MappingNode {
		v := validator{d: d, rb: rb}
		v.defaults()
		v.validate()
	}
	d.errs.sort()
	return rb, d.errs
}

// decoder walks a yaml.Node tree into a Runbook, recording the node of every
// path it fills ("data.disks[0].mount") so that validation can point at it.
type decoder struct {
	file   string
	errs   ErrorList
	root   *yaml.Node
	values map[string]*yaml.Node // path → value node, for keys present with a non-null value
	keys   map[string]*yaml.Node // path → key node, for keys present; a list item's own node
	// secrets are the nodes the secret scan reported: credential keys and
	// private-key values. They are skipped, not their enclosing section:
	// a block mapping starts where its first key does, so matching by
	// position would hide a whole section behind its first key.
	secrets map[*yaml.Node]bool
	bad     map[string]bool // paths whose value could not be decoded
}

var syntaxLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// document parses data and returns the root node of its only document, or
// nil after recording why there is none.
func (d *decoder) document(data []byte) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			d.add(1, 1, "empty runbook", "a runbook is a YAML mapping; see runbooks/README.md")
			return nil
		}
		d.syntax(err)
		return nil
	}
	if len(doc.Content) == 0 {
		d.add(1, 1, "empty runbook", "a runbook is a YAML mapping; see runbooks/README.md")
		return nil
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		d.syntax(err)
	default:
		n := &next
		if len(next.Content) > 0 {
			n = next.Content[0]
		}
		d.errAt(n, "a runbook file holds one YAML document; found another", "remove the \"---\" separator or split the file")
	}
	return doc.Content[0]
}

func (d *decoder) syntax(err error) {
	msg := err.Error()
	if m := syntaxLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		d.add(line, 0, "syntax error: "+m[2], "")
		return
	}
	d.add(0, 0, "syntax error: "+strings.TrimPrefix(msg, "yaml: "), "")
}

func (d *decoder) add(line, col int, msg, hint string) {
	d.errs = append(d.errs, &Error{File: d.file, Line: line, Column: col, Msg: msg, Hint: hint})
}

func (d *decoder) errAt(n *yaml.Node, msg, hint string) {
	line, col := nodePos(n)
	d.add(line, col, msg, hint)
}

func nodePos(n *yaml.Node) (line, col int) {
	return max(n.Line, 1), max(n.Column, 1)
}

// secretKeys are mapping keys that would hold credentials.
var secretKeys = map[string]bool{
	"password": true, "passwd": true, "secret": true, "application_secret": true,
	"application_key": true, "consumer_key": true, "client_secret": true, "access_token": true,
}

const secretHint = "credentials never go in a runbook; use ovh.conf or OVH_* variables"

// scanSecrets reports credential-looking keys and private-key material
// anywhere in the tree, including under unknown keys.
func (d *decoder) scanSecrets(n *yaml.Node) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			name := strings.ReplaceAll(strings.ToLower(k.Value), "-", "_")
			if k.Kind == yaml.ScalarNode && secretKeys[name] {
				d.secret(k, fmt.Sprintf("key %q: credentials never go in a runbook; use ovh.conf or OVH_* variables", k.Value), "")
				continue
			}
			d.scanSecrets(k)
			d.scanSecrets(n.Content[i+1])
		}
	case yaml.SequenceNode, yaml.DocumentNode:
		for _, c := range n.Content {
			d.scanSecrets(c)
		}
	case yaml.ScalarNode:
		if strings.Contains(n.Value, "-----BEGIN") {
			d.secret(n, "value looks like a private key: "+secretHint, "give the path of the key file instead")
		}
	}
}

func (d *decoder) secret(n *yaml.Node, msg, hint string) {
	d.secrets[n] = true
	d.errAt(n, msg, hint)
}

// markBad marks path as reported: validation says nothing more about it or
// anything below it.
func (d *decoder) markBad(path string) { d.bad[path] = true }

func (d *decoder) isBad(path string) bool {
	for p := path; ; p = parentPath(p) {
		if d.bad[p] {
			return true
		}
		if p == "" {
			return false
		}
	}
}

// fail reports a decoding problem with the value at path.
func (d *decoder) fail(path string, n *yaml.Node, hint, format string, args ...any) {
	d.markBad(path)
	msg := fmt.Sprintf(format, args...)
	if path != "" {
		msg = path + ": " + msg
	}
	d.errAt(n, msg, hint)
}

var (
	durationType = reflect.TypeFor[Duration]()
	addrType     = reflect.TypeFor[netip.Addr]()
	ipBlockType  = reflect.TypeFor[IPBlock]()
)

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	switch n.ShortTag() {
	case "!!int", "!!float":
		return "a number"
	case "!!bool":
		return "true/false"
	case "!!null":
		return "null"
	case "!!str":
		return "a string"
	}
	return "a " + n.ShortTag() + " value"
}

func (d *decoder) decodeValue(path string, n *yaml.Node, v reflect.Value) {
	if n.Kind == yaml.AliasNode {
		d.fail(path, n, "write the value out", "YAML aliases are not supported in runbooks")
		return
	}
	if d.secrets[n] {
		d.markBad(path)
		return
	}
	if tag := n.ShortTag(); !strings.HasPrefix(tag, "!!") {
		d.fail(path, n, "", "unsupported YAML tag %q", n.Tag)
		return
	}
	if isNull(n) {
		return // absent: the default applies
	}
	d.values[path] = n
	t := v.Type()
	switch t {
	case durationType:
		s, ok := d.scalar(path, n, "a duration such as 90s or 5m")
		if !ok {
			return
		}
		dur, err := time.ParseDuration(s)
		if err != nil {
			hint := "use a number with a unit: ms, s, m or h (90s, 5m, 1h30m)"
			if _, e := strconv.ParseFloat(s, 64); e == nil {
				hint = fmt.Sprintf("add a unit: %ss", s)
			}
			d.fail(path, n, hint, "invalid duration %q", s)
			return
		}
		v.Set(reflect.ValueOf(Duration{dur}))
		return
	case addrType:
		s, ok := d.scalar(path, n, "an IP address")
		if !ok {
			return
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			hint := ""
			if p, e := netip.ParsePrefix(s); e == nil {
				hint = fmt.Sprintf("an address, not a prefix: %s", p.Addr())
			}
			d.fail(path, n, hint, "invalid IP address %q", s)
			return
		}
		if a.Zone() != "" {
			d.fail(path, n, "", "IP address %q: zones are not allowed", s)
			return
		}
		v.Set(reflect.ValueOf(a))
		return
	case ipBlockType:
		s, ok := d.scalar(path, n, "an IP block such as 203.0.113.7/32")
		if !ok {
			return
		}
		b, err := ParseIPBlock(s)
		if err != nil {
			d.fail(path, n, "write an address or a prefix such as 203.0.113.7/32", "invalid IP block %q", s)
			return
		}
		v.Set(reflect.ValueOf(b))
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(t.Elem()))
		}
		d.decodeValue(path, n, v.Elem())
	case reflect.Struct:
		d.decodeStruct(path, n, v)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.fail(path, n, "", "expected a list, got %s", describe(n))
			return
		}
		s := reflect.MakeSlice(t, len(n.Content), len(n.Content))
		for i, c := range n.Content {
			item := fmt.Sprintf("%s[%d]", path, i)
			d.keys[item] = c // an item has no key: its own node anchors positions, even when null
			d.decodeValue(item, c, s.Index(i))
		}
		v.Set(s)
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.fail(path, n, "", "expected a string, got %s", describe(n))
			return
		}
		switch n.ShortTag() {
		case "!!str", "!!int", "!!float":
			v.SetString(n.Value)
		default:
			d.fail(path, n, fmt.Sprintf("quote it: %q", n.Value), "expected a string, got %s", describe(n))
		}
	case reflect.Int:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
			d.fail(path, n, "", "expected an integer, got %s", describe(n))
			return
		}
		i, err := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, 32)
		if err != nil {
			d.fail(path, n, "", "integer %s out of range", n.Value)
			return
		}
		v.SetInt(i)
	case reflect.Bool:
		if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!bool" {
			if b, err := strconv.ParseBool(strings.ToLower(n.Value)); err == nil {
				v.SetBool(b)
				return
			}
		}
		hint := ""
		if n.Kind == yaml.ScalarNode {
			switch strings.ToLower(n.Value) {
			case "yes", "y", "on":
				hint = "write true"
			case "no", "n", "off":
				hint = "write false"
			}
		}
		d.fail(path, n, hint, "expected true or false, got %s", describe(n))
	default:
		panic(fmt.Sprintf("runbooks: no decoder for %s", t)) // a schema change without a decoder
	}
}

// scalar returns the text of a string scalar.
func (d *decoder) scalar(path string, n *yaml.Node, want string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() == "!!bool" {
		d.fail(path, n, "", "expected %s, got %s", want, describe(n))
		return "", false
	}
	return n.Value, true
}

// field is a YAML key of a struct.
type field struct {
	name  string
	index int
}

func fields(t reflect.Type) []field {
	var fs []field
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		fs = append(fs, field{name, i})
	}
	return fs
}

func (d *decoder) decodeStruct(path string, n *yaml.Node, v reflect.Value) {
	if n.Kind != yaml.MappingNode {
		d.fail(path, n, "", "expected a mapping, got %s", describe(n))
		return
	}
	fs := fields(v.Type())
	names := make([]string, len(fs))
	for i, f := range fs {
		names[i] = f.name
	}
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if d.secrets[k] {
			continue // a credential key, already reported
		}
		if k.Kind != yaml.ScalarNode {
			d.errAt(k, prefix(path)+"mapping keys must be strings, got "+describe(k), "")
			continue
		}
		if k.ShortTag() == "!!merge" {
			d.errAt(k, prefix(path)+"merge keys (<<) are not supported in runbooks", "write the keys out")
			continue
		}
		name := k.Value
		if first, dup := seen[name]; dup {
			d.errAt(k, fmt.Sprintf("%sduplicate key %q (first at line %d)", prefix(path), name, first.Line), "remove one of them")
			continue
		}
		seen[name] = k
		idx := -1
		for _, f := range fs {
			if f.name == name {
				idx = f.index
			}
		}
		if idx < 0 {
			hint := "valid keys here: " + strings.Join(names, ", ")
			if s := suggest(name, names); s != "" {
				hint = fmt.Sprintf("did you mean %q?", s)
				// The intended key is most likely absent because of this
				// typo: do not also report it as missing.
				if !hasKey(n, s) {
					d.markBad(joinPath(path, s))
				}
			}
			if v.Type() == reflect.TypeFor[SSH]() && (name == "port" || name == "host") {
				hint = "write address: host:port"
			}
			d.errAt(k, fmt.Sprintf("%sunknown key %q", prefix(path), name), hint)
			continue
		}
		child := joinPath(path, name)
		d.keys[child] = k
		d.decodeValue(child, val, v.Field(idx))
	}
}

func hasKey(m *yaml.Node, name string) bool {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Kind == yaml.ScalarNode && m.Content[i].Value == name {
			return true
		}
	}
	return false
}

func prefix(path string) string {
	if path == "" {
		return ""
	}
	return path + ": "
}

func joinPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// parentPath returns the path one level up: "a.b[2].c" → "a.b[2]" → "a.b"
// → "a" → "".
func parentPath(p string) string {
	if strings.HasSuffix(p, "]") {
		if i := strings.LastIndexByte(p, '['); i >= 0 {
			return p[:i]
		}
	}
	if i := strings.LastIndexByte(p, '.'); i >= 0 {
		return p[:i]
	}
	return ""
}

// suggest returns the candidate closest to s by edit distance, if it is
// close enough to be a likely typo.
func suggest(s string, candidates []string) string {
	best, bestD := "", -1
	ls := strings.ToLower(s)
	for _, c := range candidates {
		dist := editDistance(ls, c)
		if bestD < 0 || dist < bestD {
			best, bestD = c, dist
		}
	}
	if bestD >= 0 && (bestD <= 2 || bestD*3 <= len(s)) && bestD < len(s) {
		return best
	}
	return ""
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
