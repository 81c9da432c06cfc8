package handlerkit_test

import (
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/internal/handlerkit"
)

func newVec(labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: "x_total", Help: "x"}, labels)
}

func TestRegisterReusesTheExistingCollector(t *testing.T) {
	reg := prometheus.NewRegistry()
	first, err := handlerkit.Register(reg, newVec("handler"))
	if err != nil {
		t.Fatal(err)
	}
	again, err := handlerkit.Register(reg, newVec("handler"))
	if err != nil {
		t.Fatal(err)
	}
	if again != first {
		t.Error("Register returned a new collector instead of the registered one")
	}
	if _, err := handlerkit.Register(reg, newVec("other")); err == nil {
		t.Error("Register accepted a collector with other labels")
	}
}

type params struct{ bad bool }

func (p *params) Validate() error {
	if p.bad {
		return errBad
	}
	return nil
}

var errBad = errors.New("bad")

func TestParams(t *testing.T) {
	if _, err := handlerkit.Params[params]("x", &params{}); err != nil {
		t.Error(err)
	}
	if _, err := handlerkit.Params[params]("x", &params{bad: true}); err == nil {
		t.Error("invalid params accepted")
	}
	var none adapters.Config
	if _, err := handlerkit.Params[params]("x", none); err == nil {
		t.Error("nil params accepted")
	}
	if set := handlerkit.Defaults(adapters.Settings{}); set.Logger == nil || set.Now == nil || set.Registerer == nil {
		t.Errorf("Defaults left fields nil: %+v", set)
	}
}
