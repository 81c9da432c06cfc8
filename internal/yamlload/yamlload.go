// Package yamlload holds what every sidemix loader of Kubernetes-style YAML
// shares: reading *.yaml/*.yml files from files and folders, splitting a
// file into documents with the line of a syntax error, strict decoding of a
// node into a Go type that reports every unknown key and type error with
// its line and YAML path ([DecodeStrict]), and small node helpers. The
// policy language (policy/) and the proxy's routes (proxy/routing) use it,
// so both name problems the same way: file:line: kind/name: field: message.
package yamlload

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Issue is one problem found by a load, or a warning.
type Issue struct {
	File    string
	Line    int
	Kind    string // document kind, such as "VirtualService"; empty when unknown
	Name    string // metadata.name; empty when unknown
	Field   string // YAML path inside the document, such as "spec.http[0].route"
	Message string
}

// String renders the issue as file:line: kind/name: field: message, leaving
// out the parts that are unknown.
func (i Issue) String() string {
	var sb strings.Builder
	sb.WriteString(i.File)
	if i.Line > 0 {
		sb.WriteByte(':')
		sb.WriteString(strconv.Itoa(i.Line))
	}
	sb.WriteString(": ")
	if i.Kind != "" || i.Name != "" {
		sb.WriteString(i.Kind)
		sb.WriteByte('/')
		sb.WriteString(i.Name)
		sb.WriteString(": ")
	}
	if i.Field != "" {
		sb.WriteString(i.Field)
		sb.WriteString(": ")
	}
	sb.WriteString(i.Message)
	return sb.String()
}

// LoadError lists every issue of a failed load, one per line.
type LoadError struct {
	Issues []Issue
}

func (e *LoadError) Error() string {
	lines := make([]string, len(e.Issues))
	for i, is := range e.Issues {
		lines[i] = is.String()
	}
	return strings.Join(lines, "\n")
}

// SortIssues orders issues by file, then line, keeping the order of equals.
func SortIssues(is []Issue) {
	sort.SliceStable(is, func(i, j int) bool {
		if is[i].File != is[j].File {
			return is[i].File < is[j].File
		}
		return is[i].Line < is[j].Line
	})
}

// IsYAML reports whether path names a YAML file by its extension.
func IsYAML(path string) bool {
	ext := strings.ToLower(filepath.Ext(path))
	return ext == ".yaml" || ext == ".yml"
}

// ReadFiles reads the given files and folders (*.yaml, *.yml; folders
// recursively), returning name → content and an issue per path that could
// not be read.
func ReadFiles(paths []string) (map[string][]byte, []Issue) {
	files := map[string][]byte{}
	var issues []Issue
	for _, p := range paths {
		p = filepath.Clean(p)
		st, err := os.Stat(p)
		if err != nil {
			issues = append(issues, Issue{File: p, Message: err.Error()})
			continue
		}
		if !st.IsDir() {
			data, err := os.ReadFile(p)
			if err != nil {
				issues = append(issues, Issue{File: p, Message: err.Error()})
				continue
			}
			files[p] = data
			continue
		}
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				issues = append(issues, Issue{File: path, Message: err.Error()})
				return nil
			}
			if d.IsDir() || !IsYAML(path) {
				return nil
			}
			data, err := os.ReadFile(path)
			if err != nil {
				issues = append(issues, Issue{File: path, Message: err.Error()})
				return nil
			}
			files[path] = data
			return nil
		})
		if err != nil {
			issues = append(issues, Issue{File: p, Message: err.Error()})
		}
	}
	return files, issues
}

var yamlSyntaxLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// Documents splits a file into its YAML documents. A syntax error ends the
// file (the decoder cannot continue past one) and comes back as an issue
// with its line; the documents before it are returned too.
func Documents(name string, data []byte) (docs []*yaml.Node, bad *Issue) {
	defer func() {
		// yaml.v3 has panicked on hostile input before; a bad file must
		// never take the process down.
		if r := recover(); r != nil {
			bad = &Issue{File: name, Message: fmt.Sprintf("cannot parse: %v", r)}
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var root yaml.Node
		err := dec.Decode(&root)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			is := &Issue{File: name, Message: err.Error()}
			if m := yamlSyntaxLineRE.FindStringSubmatch(err.Error()); m != nil {
				is.Line, _ = strconv.Atoi(m[1])
				is.Message = m[2]
			} else {
				is.Message = strings.TrimPrefix(is.Message, "yaml: ")
			}
			return docs, is
		}
		docs = append(docs, &root)
	}
}

// ValueNode returns the value of key in mapping n, or nil.
func ValueNode(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// KeyNode returns the key node of key in mapping n, or nil.
func KeyNode(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i]
		}
	}
	return nil
}

// LineOf is n's line, or def when n is nil or has none.
func LineOf(n *yaml.Node, def int) int {
	if n == nil || n.Line == 0 {
		return def
	}
	return n.Line
}
