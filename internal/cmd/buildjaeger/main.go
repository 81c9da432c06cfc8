// Command buildjaeger builds the Jaeger v2 all-in-one binary that the
// Jaeger tests run (testenv.StartJaeger) into the user's cache directory,
// unless it is there already, and prints its path. CI runs it once before
// the tests: go run ./internal/cmd/buildjaeger
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"

	"github.com/sidemix/sidemix/internal/testenv"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	bin, err := testenv.BuildJaeger(ctx, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "buildjaeger:", err)
		os.Exit(1)
	}
	fmt.Println(bin)
}
