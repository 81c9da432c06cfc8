package denier

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"google.golang.org/grpc/codes"
)

// Config is the denier's params.
type Config struct {
	// Status is the gRPC code name of the denial, as in
	// google.rpc.Code: PERMISSION_DENIED, UNAUTHENTICATED, ...
	Status string `yaml:"status"`
	// Message explains the denial; empty means "denied by handler <name>".
	Message string `yaml:"message"`
	// ValidDuration and ValidUseCount bound how long and for how many
	// requests the proxy may reuse the denial.
	ValidDuration time.Duration `yaml:"validDuration"`
	ValidUseCount int32         `yaml:"validUseCount"`
}

// NewConfig returns the defaults.
func NewConfig() *Config {
	return &Config{
		Status:        "PERMISSION_DENIED",
		ValidDuration: 5 * time.Second,
		ValidUseCount: 1000,
	}
}

// Validate reports every problem, each naming its key.
func (c *Config) Validate() error {
	var errs []error
	if code, err := ParseCode(c.Status); err != nil {
		errs = append(errs, fmt.Errorf("status: %w", err))
	} else if code == codes.OK {
		errs = append(errs, errors.New(`status: "OK" would allow, not deny`))
	}
	if c.ValidDuration < 0 {
		errs = append(errs, fmt.Errorf("validDuration: %v is negative", c.ValidDuration))
	}
	if c.ValidUseCount < 0 {
		errs = append(errs, fmt.Errorf("validUseCount: %d is negative", c.ValidUseCount))
	}
	return errors.Join(errs...)
}

// ParseCode parses a gRPC code name such as "PERMISSION_DENIED", spelled as
// in google.rpc.Code and in grpc-go's JSON form.
func ParseCode(name string) (codes.Code, error) {
	var c codes.Code
	if err := c.UnmarshalJSON([]byte(strconv.Quote(name))); err != nil {
		return 0, fmt.Errorf("unknown gRPC code %q", name)
	}
	return c, nil
}
