package lockfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"go.yaml.in/yaml/v3"
)

// The parser walks yaml.Node trees instead of decoding into structs with
// yaml.Decoder.KnownFields: walking gives the full path of an unknown or
// malformed field (`images[1].digest`), catches duplicate keys at every level
// and lets apiVersion and kind be checked before anything else, so a
// BundleLock handed to ParseImagesLock says "wrong kind" rather than
// "unknown field bundle".

// ParseImagesLock parses an ImagesLock. file names the input in errors.
// A missing or empty images list gives an empty lock. Errors are *FieldError
// values matching ErrInvalid.
func ParseImagesLock(file string, data []byte) (*ImagesLock, error) {
	p := parser{file: file}
	root, err := p.lockDocument(data, KindImagesLock)
	if err != nil {
		return nil, err
	}
	lock := &ImagesLock{}
	err = p.mapping("", root, []string{"apiVersion", "kind", "images"}, func(key, path string, v *yaml.Node) error {
		if key != "images" {
			return nil // checked by lockDocument
		}
		return p.sequence(path, v, func(i int, path string, item *yaml.Node) error {
			var ref ImageRef
			err := p.mapping(path, item, []string{"image", "annotations"}, func(key, path string, v *yaml.Node) error {
				var err error
				switch key {
				case "image":
					ref.Image, err = p.digestRef(path, v)
				case "annotations":
					ref.Annotations, err = p.stringMap(path, v)
				}
				return err
			})
			if err != nil {
				return err
			}
			if !hasKey(item, "image") {
				return p.errorf(path+".image", "missing; %s", digestHint)
			}
			lock.Images = append(lock.Images, ref)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return lock, nil
}

// ParseBundleLock parses a BundleLock. file names the input in errors.
// bundle.image is required, bundle.tag is optional. Errors are *FieldError
// values matching ErrInvalid.
func ParseBundleLock(file string, data []byte) (*BundleLock, error) {
	p := parser{file: file}
	root, err := p.lockDocument(data, KindBundleLock)
	if err != nil {
		return nil, err
	}
	lock := &BundleLock{}
	err = p.mapping("", root, []string{"apiVersion", "kind", "bundle"}, func(key, path string, v *yaml.Node) error {
		if key != "bundle" {
			return nil
		}
		return p.mapping(path, v, []string{"image", "tag"}, func(key, path string, v *yaml.Node) error {
			var err error
			switch key {
			case "image":
				lock.Bundle.Image, err = p.digestRef(path, v)
			case "tag":
				lock.Bundle.Tag, err = p.str(path, v)
				if err == nil && lock.Bundle.Tag != "" && !validTag(lock.Bundle.Tag) {
					err = p.errorf(path, "%q is not a valid tag (up to 128 of A-Z a-z 0-9 _ . -, not starting with . or -)", lock.Bundle.Tag)
				}
			}
			return err
		})
	})
	if err != nil {
		return nil, err
	}
	if lock.Bundle.Image == "" {
		return nil, p.errorf("bundle.image", "missing; %s", digestHint)
	}
	return lock, nil
}

// ParseImageLocations parses an ImageLocations file. file names the input in
// errors. The order of images is kept as read. Errors are *FieldError values
// matching ErrInvalid.
func ParseImageLocations(file string, data []byte) (*ImageLocations, error) {
	p := parser{file: file}
	root, err := p.lockDocument(data, KindImageLocations)
	if err != nil {
		return nil, err
	}
	locs := &ImageLocations{}
	err = p.mapping("", root, []string{"apiVersion", "kind", "images"}, func(key, path string, v *yaml.Node) error {
		if key != "images" {
			return nil
		}
		return p.sequence(path, v, func(i int, path string, item *yaml.Node) error {
			var loc ImageLocation
			err := p.mapping(path, item, []string{"image", "isBundle"}, func(key, path string, v *yaml.Node) error {
				var err error
				switch key {
				case "image":
					loc.Image, err = p.digestRef(path, v)
				case "isBundle":
					loc.IsBundle, err = p.boolean(path, v)
				}
				return err
			})
			if err != nil {
				return err
			}
			if !hasKey(item, "image") {
				return p.errorf(path+".image", "missing; %s", digestHint)
			}
			locs.Images = append(locs.Images, loc)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return locs, nil
}

// Kind returns the kind of the lock file in data (KindImagesLock,
// KindBundleLock or KindImageLocations) after checking apiVersion. Only
// apiVersion and kind are read; the rest of the document is not validated,
// so parse it with the matching Parse* function. Use it to accept either a
// BundleLock or an ImagesLock, as `copy --lock` does. Errors are *FieldError
// values matching ErrInvalid.
func Kind(file string, data []byte) (string, error) {
	p := parser{file: file}
	root, err := p.document(data, KindImagesLock+", "+KindBundleLock+" or "+KindImageLocations)
	if err != nil {
		return "", err
	}
	if err := p.apiVersion(root); err != nil {
		return "", err
	}
	kind, err := p.topString(root, "kind")
	if err != nil {
		return "", err
	}
	switch kind {
	case KindImagesLock, KindBundleLock, KindImageLocations:
		return kind, nil
	case "":
		return "", p.errorf("kind", "missing (want %s, %s or %s)", KindImagesLock, KindBundleLock, KindImageLocations)
	default:
		return "", p.errorf("kind", "%q is not a lock file kind (want %s, %s or %s)", kind, KindImagesLock, KindBundleLock, KindImageLocations)
	}
}

type parser struct {
	file string
	// visits counts mapping pairs and list items walked. Without aliases it
	// stays below the input size; maxVisits stops documents that reuse large
	// anchored nodes many times (`images: [*a, *a, ...]`) from costing far
	// more than their size.
	visits, maxVisits int
}

func (p *parser) visit(path string) error {
	p.visits++
	if p.visits > p.maxVisits {
		return p.errorf(path, "document uses aliases excessively (more than %d nodes after expanding aliases)", p.maxVisits)
	}
	return nil
}

func (p *parser) errorf(field, format string, args ...any) error {
	return &FieldError{File: p.file, Field: field, Err: invalidf(format, args...)}
}

// lockDocument returns the root mapping of the single document in data after
// checking apiVersion and kind.
func (p *parser) lockDocument(data []byte, kind string) (*yaml.Node, error) {
	root, err := p.document(data, kind)
	if err != nil {
		return nil, err
	}
	if err := p.apiVersion(root); err != nil {
		return nil, err
	}
	got, err := p.topString(root, "kind")
	if err != nil {
		return nil, err
	}
	switch got {
	case kind:
		return root, nil
	case "":
		return nil, p.errorf("kind", "missing (want %q)", kind)
	default:
		return nil, p.errorf("kind", "got %q, want %q", got, kind)
	}
}

func (p *parser) apiVersion(root *yaml.Node) error {
	got, err := p.topString(root, "apiVersion")
	switch {
	case err != nil:
		return err
	case got == "":
		return p.errorf("apiVersion", "missing (want %q)", APIVersion)
	case got != APIVersion:
		return p.errorf("apiVersion", "got %q, want %q", got, APIVersion)
	}
	return nil
}

// topString returns the string value of key in the root mapping, "" when absent.
func (p *parser) topString(root *yaml.Node, key string) (string, error) {
	for i := 0; i+1 < len(root.Content); i += 2 {
		if k := resolve(root.Content[i]); k.Kind == yaml.ScalarNode && k.Value == key {
			return p.str(key, root.Content[i+1])
		}
	}
	return "", nil
}

// document returns the root mapping of the first non-empty YAML document in
// data; a second non-empty document is an error. wantKind names the expected
// kind(s) for the messages.
func (p *parser) document(data []byte, wantKind string) (*yaml.Node, error) {
	if len(data) > MaxFileSize {
		return nil, tooLarge(p.file, int64(len(data)))
	}
	p.maxVisits = 4*len(data) + 10000
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var root *yaml.Node
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, p.errorf("", "invalid YAML: %s", strings.TrimPrefix(err.Error(), "yaml: "))
		}
		n := &doc
		if n.Kind == yaml.DocumentNode {
			if len(n.Content) == 0 {
				continue
			}
			n = n.Content[0]
		}
		n = resolve(n)
		if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
			continue // empty document, e.g. a leading "---"
		}
		if root != nil {
			return nil, p.errorf("", "second YAML document at line %d; a lock file holds exactly one document", n.Line)
		}
		root = n
	}
	if root == nil {
		return nil, p.errorf("", "no YAML document (want apiVersion %s, kind %s)", APIVersion, wantKind)
	}
	if root.Kind != yaml.MappingNode {
		return nil, p.errorf("", "document is %s; want a mapping with apiVersion and kind", describe(root))
	}
	return root, nil
}

// mapping checks that n is a mapping (null counts as empty) whose keys are
// unique and among known, then calls set for each pair in order.
func (p *parser) mapping(path string, n *yaml.Node, known []string, set func(key, path string, v *yaml.Node) error) error {
	n = resolve(n)
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return p.errorf(path, "must be a mapping with %s, got %s", strings.Join(known, ", "), describe(n))
	}
	seen := make(map[string]bool, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, err := p.key(path, n.Content[i])
		if err != nil {
			return err
		}
		field := join(path, key)
		if err := p.visit(field); err != nil {
			return err
		}
		if seen[key] {
			return p.errorf(field, "appears twice")
		}
		seen[key] = true
		if !contains(known, key) {
			return p.errorf(field, "unknown field (known fields: %s)", strings.Join(known, ", "))
		}
		if err := set(key, field, n.Content[i+1]); err != nil {
			return err
		}
	}
	return nil
}

// sequence checks that n is a list (null counts as empty) and calls item for each element.
func (p *parser) sequence(path string, n *yaml.Node, item func(i int, path string, v *yaml.Node) error) error {
	n = resolve(n)
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		return p.errorf(path, "must be a list, got %s", describe(n))
	}
	for i, v := range n.Content {
		if err := p.visit(path); err != nil {
			return err
		}
		if err := item(i, fmt.Sprintf("%s[%d]", path, i), v); err != nil {
			return err
		}
	}
	return nil
}

// stringMap reads a mapping of strings to strings; empty gives nil.
func (p *parser) stringMap(path string, n *yaml.Node) (map[string]string, error) {
	n = resolve(n)
	if isNull(n) {
		return nil, nil
	}
	if n.Kind != yaml.MappingNode {
		return nil, p.errorf(path, "must be a mapping of strings, got %s", describe(n))
	}
	if len(n.Content) == 0 {
		return nil, nil
	}
	m := make(map[string]string, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, err := p.key(path, n.Content[i])
		if err != nil {
			return nil, err
		}
		field := join(path, key)
		if err := p.visit(field); err != nil {
			return nil, err
		}
		if _, dup := m[key]; dup {
			return nil, p.errorf(field, "appears twice")
		}
		if m[key], err = p.str(field, n.Content[i+1]); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (p *parser) key(path string, n *yaml.Node) (string, error) {
	n = resolve(n)
	if n.Kind != yaml.ScalarNode {
		return "", p.errorf(path, "mapping key must be a string, got %s", describe(n))
	}
	if n.ShortTag() == "!!str" {
		return n.Value, nil
	}
	var s string
	if err := n.Decode(&s); err != nil {
		return "", p.errorf(path, "mapping key at line %d must be a string", n.Line)
	}
	return s, nil
}

// str reads a scalar as a string; null gives "". Scalars of other YAML types
// (1.0, true) give their literal text.
func (p *parser) str(path string, n *yaml.Node) (string, error) {
	n = resolve(n)
	if n.Kind != yaml.ScalarNode {
		return "", p.errorf(path, "must be a string, got %s", describe(n))
	}
	switch n.ShortTag() {
	case "!!null":
		return "", nil
	case "!!str":
		return n.Value, nil
	}
	var s string // other scalars (1.0, true, !!binary) decode to text
	if err := n.Decode(&s); err != nil {
		return "", p.errorf(path, "must be a string, got %s %q", n.ShortTag(), n.Value)
	}
	return s, nil
}

func (p *parser) boolean(path string, n *yaml.Node) (bool, error) {
	n = resolve(n)
	if n.Kind != yaml.ScalarNode {
		return false, p.errorf(path, "must be true or false, got %s", describe(n))
	}
	if isNull(n) {
		return false, nil
	}
	var b bool
	if err := n.Decode(&b); err != nil {
		return false, p.errorf(path, "must be true or false, got %q", n.Value)
	}
	return b, nil
}

func (p *parser) digestRef(path string, n *yaml.Node) (string, error) {
	s, err := p.str(path, n)
	if err != nil {
		return "", err
	}
	if _, _, err := SplitDigestRef(s); err != nil {
		return "", &FieldError{File: p.file, Field: path, Err: err}
	}
	return s, nil
}

// resolve follows aliases to the anchored node.
func resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func hasKey(n *yaml.Node, key string) bool {
	n = resolve(n)
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := resolve(n.Content[i]); k.Kind == yaml.ScalarNode && k.Value == key {
			return true
		}
	}
	return false
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if isNull(n) {
			return "null"
		}
		return fmt.Sprintf("%s %q", strings.TrimPrefix(n.ShortTag(), "!!"), n.Value)
	default:
		return "an unexpected YAML node"
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func sizeString(n int64) string {
	const mib = 1 << 20
	if n%mib == 0 {
		return fmt.Sprintf("%d MiB", n/mib)
	}
	return fmt.Sprintf("%d bytes (%.1f MiB)", n, float64(n)/mib)
}
