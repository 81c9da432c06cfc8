package yamlload

import (
	"slices"
	"testing"
	"time"
)

type spec struct {
	Name    string        `yaml:"name"`
	Timeout time.Duration `yaml:"timeout"`
	Items   []struct {
		Port int `yaml:"port"`
	} `yaml:"items"`
}

func TestDecodeStrict(t *testing.T) {
	docs, bad := Documents("a.yaml", []byte("name: x\nnmae: y\nitems:\n- port: 1\n- port: two\n  extra: 1\n---\nname: second\n"))
	if bad != nil || len(docs) != 2 {
		t.Fatalf("documents %d, issue %v", len(docs), bad)
	}
	var s spec
	issues, ok := DecodeStrict(Resolve(docs[0]), &s, "spec")
	if ok {
		t.Error("a type error decoded")
	}
	var got []string
	for _, is := range issues {
		got = append(got, Issue{File: "a.yaml", Line: is.Line, Field: is.Field, Message: is.Message}.String())
	}
	want := []string{
		"a.yaml:2: spec.nmae: unknown field",
		"a.yaml:6: spec.items[1].extra: unknown field",
		`a.yaml:5: spec.items[1].port: cannot decode a string ("two") into int`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("issues\n%q\nwant\n%q", got, want)
	}
	if issues, ok := DecodeStrict(Resolve(docs[1]), &s, ""); !ok || len(issues) != 0 || s.Name != "second" {
		t.Errorf("second document: %v %v %+v", issues, ok, s)
	}
}

func TestDocumentsSyntaxError(t *testing.T) {
	docs, bad := Documents("b.yaml", []byte("a: 1\n---\nb: [1, 2\nc: 3\n"))
	if len(docs) != 1 || bad == nil || bad.Line == 0 || bad.File != "b.yaml" {
		t.Fatalf("docs %d, issue %+v", len(docs), bad)
	}
}
