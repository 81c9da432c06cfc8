package denier_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/denier"
	"github.com/sidemix/sidemix/adapters/internal/configtest"
	"github.com/sidemix/sidemix/adapters/internal/metrictest"
	"github.com/sidemix/sidemix/adapters/template"
)

func TestConfig(t *testing.T) {
	configtest.Run(t, denier.Factory(), []configtest.Case{
		{File: "default.yaml"},
		{File: "full.yaml"},
		{File: "ok-status.bad.yaml", Want: `status: "OK" would allow, not deny`},
		{File: "camel-status.bad.yaml", Want: `status: unknown gRPC code "PermissionDenied"`},
		{File: "unknown-status.bad.yaml", Want: `status: unknown gRPC code "FOO"` + "\n" +
			`validDuration: -1s is negative` + "\n" +
			`validUseCount: -3 is negative`},
		{File: "unknown-key.bad.yaml", Want: "yaml: unmarshal errors:\n  line 1: field code not found in type denier.Config"},
		{File: "int-duration.bad.yaml", Want: "yaml: unmarshal errors:\n  line 1: cannot unmarshal !!int `5` into time.Duration"},
	})
}

func create(t *testing.T, set adapters.Settings, file string) adapters.Checker {
	t.Helper()
	params, err := os.ReadFile("testdata/" + file)
	if err != nil {
		t.Fatal(err)
	}
	return configtest.Create(t, denier.Factory(), set, params).(adapters.Checker)
}

func TestCheckDenies(t *testing.T) {
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	h := create(t, adapters.Settings{Name: "deny-admin", Registerer: reg}, "default.yaml")

	for _, inst := range []template.Instance{
		&template.CheckNothing{Name: "always"},
		&template.ListEntry{Name: "src", Value: "10.0.0.1"},
	} {
		got, err := h.Check(ctx, inst)
		if err != nil {
			t.Fatal(err)
		}
		want := adapters.CheckResult{
			Code:          codes.PermissionDenied,
			Message:       "denied by handler deny-admin",
			ValidDuration: 5 * time.Second,
			ValidUseCount: 1000,
		}
		if got != want {
			t.Errorf("Check(%T) = %+v, want %+v", inst, got, want)
		}
	}

	// A reload creates the handler again on the same registry; the counter
	// carries on instead of failing to register.
	h2 := create(t, adapters.Settings{Name: "deny-admin", Registerer: reg}, "full.yaml")
	got, err := h2.Check(ctx, &template.CheckNothing{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Code != codes.Unauthenticated || got.Message != "log in first" || got.ValidDuration != time.Minute || got.ValidUseCount != 10 {
		t.Errorf("Check = %+v", got)
	}
	if n := metrictest.Value(t, reg, "sidemix_denier_denials_total", map[string]string{"handler": "deny-admin"}); n != 3 {
		t.Errorf("sidemix_denier_denials_total = %v, want 3", n)
	}
}

func TestCheckRejectsOtherTemplates(t *testing.T) {
	h := create(t, adapters.Settings{Name: "d"}, "default.yaml")
	if _, err := h.Check(context.Background(), &template.Metric{Name: "m"}); err == nil {
		t.Error("Check(metric) succeeded")
	}
}

func TestCreateRejectsInvalidParams(t *testing.T) {
	f := denier.Factory()
	cfg := denier.NewConfig()
	cfg.Status = "OK"
	if _, err := f.Create(context.Background(), adapters.Settings{}, cfg); err == nil {
		t.Error("Create accepted status OK")
	}
}

func ExampleFactory() {
	f := denier.Factory()
	cfg, _ := configtest.Decode(f, []byte("status: PERMISSION_DENIED\nmessage: admin is closed\n"))
	h, err := f.Create(context.Background(), adapters.Settings{Name: "deny-admin"}, cfg)
	if err != nil {
		panic(err)
	}
	defer h.Close(context.Background())
	res, _ := h.(adapters.Checker).Check(context.Background(), &template.CheckNothing{Name: "always"})
	fmt.Println(res.Code, res.Message, res.ValidDuration)
	// Output: PermissionDenied admin is closed 5s
}
