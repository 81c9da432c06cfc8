package testenv_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sidemix/sidemix/internal/testenv"
)

func TestPrometheusScrapesAndAnswers(t *testing.T) {
	var scrapes atomic.Int64
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		n := scrapes.Add(1)
		fmt.Fprintf(w, "# TYPE demo_total counter\ndemo_total{edge=\"a\"} %d\ndemo_total{edge=\"b\"} 7\n", n)
	}))
	defer target.Close()

	p := testenv.StartPrometheus(t, strings.TrimPrefix(target.URL, "http://"))
	p.WaitTargetsUp(t, 20*time.Second)
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		v, err := p.TryQuery(`demo_total{edge="b"}`)
		if err != nil {
			return false, err.Error()
		}
		return len(v) == 1 && v[0].Value == 7 && v[0].Metric["job"] == "sidemix", fmt.Sprint(v)
	})
	up := p.Query(t, `up`)
	if len(up) != 1 || up[0].Value != 1 {
		t.Errorf("up = %v, want one target at 1", up)
	}
	// A scrape every second: a few seconds in, rate() over the counter
	// is about 1/s.
	testenv.Eventually(t, 15*time.Second, func() (bool, string) {
		v, err := p.TryQuery(`sum by (edge) (rate(demo_total[1m])) > 0`)
		if err != nil {
			return false, err.Error()
		}
		return len(v) == 1 && v[0].Metric["edge"] == "a", fmt.Sprint(v)
	})
	if _, err := p.TryQuery(`sum(`); err == nil {
		t.Error("a malformed query succeeded")
	}
}
