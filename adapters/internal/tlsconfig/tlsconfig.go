// Package tlsconfig is the client TLS block that adapters talking to a
// backend (jaeger, kafka, otlp) share: its YAML keys, its validation and
// the crypto/tls config it builds.
package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// Client is an adapter's `tls:` params.
type Client struct {
	// Enabled turns TLS on; the other fields need it.
	Enabled bool `yaml:"enabled"`
	// CAFile is a PEM bundle of the CAs to trust instead of the system's.
	CAFile string `yaml:"caFile"`
	// CertFile and KeyFile are the client certificate and key (PEM), for
	// mutual TLS; both or neither.
	CertFile string `yaml:"certFile"`
	KeyFile  string `yaml:"keyFile"`
	// InsecureSkipVerify accepts any server certificate. For tests only.
	InsecureSkipVerify bool `yaml:"insecureSkipVerify"`
	// ServerName overrides the name the server certificate must carry
	// (default: the host the adapter dials).
	ServerName string `yaml:"serverName"`
}

// Validate checks the options, reading the files, with errors under the
// key "tls". on says whether TLS is on by other means (an https endpoint)
// when Enabled is false; offHint says how TLS is turned on, for the error
// about options set while it is off.
func (t *Client) Validate(on bool, offHint string) error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if !t.Enabled && !on {
		if t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.InsecureSkipVerify || t.ServerName != "" {
			add("tls: options are set but TLS is off (%s)", offHint)
		}
		return errors.Join(errs...)
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		add("tls: certFile and keyFile go together (one is missing)")
	}
	if len(errs) == 0 {
		if _, err := t.Config(); err != nil {
			add("tls: %v", err)
		}
	}
	return errors.Join(errs...)
}

// Config builds the client TLS config, reading the files.
func (t *Client) Config() (*tls.Config, error) {
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         t.ServerName,
		InsecureSkipVerify: t.InsecureSkipVerify, //nolint:gosec // an explicit, documented option
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("caFile: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("caFile: %s holds no PEM certificate", t.CAFile)
		}
		cfg.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("certFile/keyFile: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
