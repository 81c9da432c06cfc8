package accesslog

import (
	"errors"
	"fmt"
)

// Where Config.Path may point besides a file.
const (
	Stdout = "stdout"
	Stderr = "stderr"
)

// FormatJSON is the only format.
const FormatJSON = "json"

// Config is the accesslog adapter's params.
type Config struct {
	// Path is stdout, stderr or a file to append to.
	Path string `yaml:"path"`
	// Format of each line; only json.
	Format string `yaml:"format"`
}

// NewConfig returns the defaults: JSON lines on stdout.
func NewConfig() *Config {
	return &Config{Path: Stdout, Format: FormatJSON}
}

// Validate reports every problem, each naming its key.
func (c *Config) Validate() error {
	var errs []error
	if c.Path == "" {
		errs = append(errs, errors.New("path: required (stdout, stderr or a file path)"))
	}
	if c.Format != FormatJSON {
		errs = append(errs, fmt.Errorf("format: unknown format %q (only %s is supported)", c.Format, FormatJSON))
	}
	return errors.Join(errs...)
}
