// Package configtest runs an adapter's testdata params files through the
// same strict decode and Validate the policy loader uses, and compares the
// outcome with the message a table expects.
package configtest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/sidemix/sidemix/adapters"
)

// Case names a file under testdata/ and the error it must produce; an empty
// Want means the file is valid.
type Case struct {
	File string
	Want string
}

// Decode strictly decodes YAML params into f.NewConfig(): unknown keys are
// errors and defaults survive for keys the document leaves out. An empty
// document yields the defaults.
func Decode(f adapters.Factory, data []byte) (adapters.Config, error) {
	cfg := f.NewConfig()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return cfg, nil
}

// Load decodes and validates the params file at path.
func Load(f adapters.Factory, path string) (adapters.Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	cfg, err := Decode(f, data)
	if err != nil {
		return nil, err
	}
	return cfg, cfg.Validate()
}

// Create decodes and validates params for f, creates the handler with set
// and closes it when the test ends; any failure fails the test.
func Create(t testing.TB, f adapters.Factory, set adapters.Settings, params []byte) adapters.Handler {
	t.Helper()
	cfg, err := Decode(f, params)
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		t.Fatalf("%s params: %v", f.Name, err)
	}
	h, err := f.Create(context.Background(), set, cfg)
	if err != nil {
		t.Fatalf("%s: create: %v", f.Name, err)
	}
	t.Cleanup(func() { h.Close(context.Background()) })
	return h
}

// Run checks every case and that every testdata/*.yaml file has a case, so
// a new example cannot be forgotten. Good files must not end in .bad.yaml
// and bad ones must.
func Run(t *testing.T, f adapters.Factory, cases []Case) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		t.Run(c.File, func(t *testing.T) {
			bad := filepath.Ext(trimExt(c.File)) == ".bad"
			if bad != (c.Want != "") {
				t.Fatalf("%s: a file must end in .bad.yaml exactly when it has an expected error", c.File)
			}
			_, err := Load(f, filepath.Join("testdata", c.File))
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != c.Want {
				t.Errorf("error\n got: %s\nwant: %s", got, c.Want)
			}
		})
		files = slices.DeleteFunc(files, func(p string) bool { return filepath.Base(p) == c.File })
	}
	for _, p := range files {
		t.Errorf("%s has no test case", p)
	}
}

func trimExt(name string) string { return name[:len(name)-len(filepath.Ext(name))] }
