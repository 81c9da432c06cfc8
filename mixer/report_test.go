package mixer

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sidemix/sidemix/adapters/accesslog"
	promadapter "github.com/sidemix/sidemix/adapters/prometheus"
	"github.com/sidemix/sidemix/adapters/template"
	"github.com/sidemix/sidemix/attribute"
)

// reportConfig writes report.yaml pointing at the test's sink.
func reportConfig(t *testing.T, sinkName string) string {
	t.Helper()
	b, err := readTestdata("report.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return writeConfig(t, map[string]string{"report.yaml": strings.ReplaceAll(string(b), "SINK", sinkName)})
}

func requestBag(path string, code int64) *attribute.Bag {
	return attribute.NewBuilder(2).SetString(attribute.RequestPath, path).SetInt64(attribute.ResponseCode, code).Build()
}

func TestReportReachesHandler(t *testing.T) {
	name, sk := newSink(t)
	e := start(t, reportConfig(t, name), Config{})

	e.report(requestBag("/a", 200), requestBag("/b", 503), attribute.NewBuilder(0).Build())
	eventually(t, 5*time.Second, "3 instances at the handler", func() bool { return sk.count() == 3 })

	insts, _, _ := sk.snapshot()
	var got []string
	for _, inst := range insts {
		m, ok := inst.(*template.Metric)
		if !ok {
			t.Fatalf("instance %T", inst)
		}
		got = append(got, fmt.Sprintf("%s %v %v %v", m.Name, m.Value, m.Dimensions.Map()["path"], m.Dimensions.Map()["code"]))
	}
	want := []string{"requestcount 1 /a 200", "requestcount 1 /b 503", "requestcount 1 unknown 200"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("instances\n%v\nwant\n%v", got, want)
	}
	reg := e.srv.Registry()
	if got := metric(t, reg, "sidemix_mixer_report_requests_total"); got != 1 {
		t.Errorf("report_requests_total = %v", got)
	}
	if got := metric(t, reg, "sidemix_mixer_report_bags_total"); got != 3 {
		t.Errorf("report_bags_total = %v", got)
	}
	eventually(t, 5*time.Second, "dispatched counted", func() bool {
		return metric(t, reg, "sidemix_mixer_report_instances_dispatched_total", "handler", "rec") == 3
	})

	// A handler that could not be created loses its instances, counted.
	e.report(requestBag("/lost", 200))
	if got := metric(t, reg, "sidemix_mixer_report_instances_dropped_total", "handler", "gone", "reason", reasonHandlerError); got != 1 {
		t.Errorf("dropped{gone,handler_error} = %v, want 1", got)
	}
}

// Report decodes each request into a pooled message, the previous
// request's: nothing of one batch may show in the next (a bag without an
// attribute after one that had it; fewer bags after more).
func TestReportPooledRequests(t *testing.T) {
	name, sk := newSink(t)
	e := start(t, reportConfig(t, name), Config{})
	var want []string
	for i, n := range []int{5, 2, 7, 1, 3} {
		bags := make([]*attribute.Bag, n)
		for j := range bags {
			switch i % 2 {
			case 0:
				path, code := fmt.Sprintf("/r%d/%d", i, j), int64(500+j)
				bags[j] = requestBag(path, code)
				want = append(want, fmt.Sprintf("%s %d", path, code))
			default:
				bags[j] = attribute.NewBuilder(0).Build()
				want = append(want, "unknown 200")
			}
		}
		e.report(bags...)
	}
	eventually(t, 5*time.Second, "every instance at the handler", func() bool { return sk.count() == len(want) })
	insts, _, _ := sk.snapshot()
	var got []string
	for _, inst := range insts {
		m := inst.(*template.Metric)
		got = append(got, fmt.Sprintf("%v %v", m.Dimensions.Map()["path"], m.Dimensions.Map()["code"]))
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("instances\n%v\nwant\n%v", got, want)
	}
}

// A bag the manifest refuses is skipped and counted; the bags after it,
// checked and evaluated as deltas of it, are right.
func TestReportSkipsRejectedBag(t *testing.T) {
	name, sk := newSink(t)
	e := start(t, reportConfig(t, name), Config{})
	bad := attribute.NewBuilder(2).SetInt64(attribute.RequestPath, 7).SetInt64(attribute.ResponseCode, 200).Build()
	e.report(requestBag("/a", 200), bad, requestBag("/a", 200), bad, bad, requestBag("/c", 503), requestBag("/c", 503))
	eventually(t, 5*time.Second, "4 instances at the handler", func() bool { return sk.count() == 4 })
	insts, _, _ := sk.snapshot()
	var got []string
	for _, inst := range insts {
		m := inst.(*template.Metric)
		got = append(got, fmt.Sprintf("%v %v", m.Dimensions.Map()["path"], m.Dimensions.Map()["code"]))
	}
	if want := "/a 200|/a 200|/c 503|/c 503"; strings.Join(got, "|") != want {
		t.Errorf("instances %q, want %q", strings.Join(got, "|"), want)
	}
	if got := metric(t, e.srv.Registry(), "sidemix_mixer_report_bags_rejected_total"); got != 3 {
		t.Errorf("report_bags_rejected_total = %v, want 3", got)
	}
}

func TestReportQueueFullDrops(t *testing.T) {
	name, sk := newSink(t)
	sk.gate = make(chan struct{})
	const size = 5
	e := start(t, reportConfig(t, name), Config{ReportQueueSize: size, ReportBatchSize: 1})
	reg := e.srv.Registry()

	// The first instance occupies the worker, which blocks in Report.
	e.report(requestBag("/first", 200))
	select {
	case <-sk.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the handler was never called")
	}
	bags := make([]*attribute.Bag, 20)
	for i := range bags {
		bags[i] = requestBag(fmt.Sprintf("/%d", i), 200)
	}
	began := time.Now()
	e.report(bags...)
	if took := time.Since(began); took > 2*time.Second {
		t.Errorf("Report blocked for %v on a full queue", took)
	}
	if got := metric(t, reg, "sidemix_mixer_report_instances_dropped_total", "handler", "rec", "reason", reasonQueueFull); got != 20-size {
		t.Errorf("dropped{rec,queue_full} = %v, want %d", got, 20-size)
	}
	if got := metric(t, reg, "sidemix_mixer_report_queue_length", "handler", "rec"); got != size {
		t.Errorf("report_queue_length{rec} = %v, want %d", got, size)
	}
	if _, body := e.get("/metrics"); !strings.Contains(body, `sidemix_mixer_report_instances_dropped_total{handler="rec",reason="queue_full"} 15`) {
		t.Errorf("/metrics lacks the drops:\n%s", body)
	}

	close(sk.gate)
	eventually(t, 5*time.Second, "the queued instances delivered", func() bool { return sk.count() == 1+size })
}

func TestShutdownDrainsReports(t *testing.T) {
	name, sk := newSink(t)
	sk.gate = make(chan struct{})
	e := start(t, reportConfig(t, name), Config{ReportBatchSize: 10})

	if code, _ := e.get("/readyz"); code != 200 {
		t.Fatalf("/readyz %d before shutdown", code)
	}
	bags := make([]*attribute.Bag, 95)
	for i := range bags {
		bags[i] = requestBag(fmt.Sprintf("/%d", i), 200)
	}
	e.report(bags...)

	done := make(chan error, 1)
	go func() { done <- e.srv.Shutdown(context.Background()) }()
	// While the handler holds the drain, the mixer reports itself unready.
	eventually(t, 5*time.Second, "/readyz 503 during shutdown", func() bool {
		code, _ := e.get("/readyz")
		return code == 503
	})
	close(sk.gate)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return")
	}
	insts, closed, atClose := sk.snapshot()
	if len(insts) != len(bags) || closed != 1 || atClose != len(bags) {
		t.Errorf("handler got %d instances, closed %d times with %d delivered; want %d, once, %d",
			len(insts), closed, atClose, len(bags), len(bags))
	}
	if got := metric(t, e.srv.Registry(), "sidemix_mixer_report_instances_dropped_total"); got != 0 {
		t.Errorf("%v instances dropped", got)
	}
}

func TestShutdownDeadlineDropsRest(t *testing.T) {
	name, sk := newSink(t)
	sk.gate = make(chan struct{}) // never opened
	e := start(t, reportConfig(t, name), Config{ReportBatchSize: 1})

	bags := make([]*attribute.Bag, 10)
	for i := range bags {
		bags[i] = requestBag(fmt.Sprintf("/%d", i), 200)
	}
	e.report(bags...)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	began := time.Now()
	err := e.srv.Shutdown(ctx)
	if err == nil {
		t.Error("Shutdown past its deadline returned no error")
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("Shutdown took %v with a 300ms deadline", took)
	}
	eventually(t, 5*time.Second, "every instance counted as dropped", func() bool {
		return metric(t, e.srv.Registry(), "sidemix_mixer_report_instances_dropped_total", "handler", "rec", "reason", reasonShutdown) == 10
	})
	if _, closed, _ := sk.snapshot(); closed != 1 {
		t.Errorf("handler closed %d times, want once", closed)
	}
}

func TestReportReachesPrometheus(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	b, err := readTestdata("prometheus.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := writeConfig(t, map[string]string{"telemetry.yaml": strings.ReplaceAll(string(b), "ADDR", addr)})
	e := start(t, dir, Config{Adapters: testRegistry(t, promadapter.Factory())})

	e.report(requestBag("/a", 200), requestBag("/a", 200), requestBag("/b", 503))
	scrape := func() string {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return string(body)
	}
	want := []string{
		`sidemix_requests_total{path="/a",response_code="200"} 2`,
		`sidemix_requests_total{path="/b",response_code="503"} 1`,
	}
	eventually(t, 10*time.Second, "the counts scraped from the prometheus handler", func() bool {
		body := scrape()
		for _, w := range want {
			if !strings.Contains(body, w) {
				return false
			}
		}
		return true
	})
}

func TestReportReachesAccessLog(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "access.log")
	b, err := readTestdata("accesslog.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := writeConfig(t, map[string]string{"telemetry.yaml": strings.ReplaceAll(string(b), "LOGFILE", logFile)})
	e := start(t, dir, Config{Adapters: testRegistry(t, accesslog.Factory())})

	e.report(requestBag("/a", 200), requestBag("/b", 404))
	// Shutdown drains the queue and closes (flushes) the handler.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines:\n%s", len(lines), data)
	}
	for i, want := range []struct {
		path string
		code float64
	}{{"/a", 200}, {"/b", 404}} {
		var rec map[string]any
		if err := json.Unmarshal([]byte(lines[i]), &rec); err != nil {
			t.Fatalf("line %d: %v: %s", i, err, lines[i])
		}
		if rec["path"] != want.path || rec["code"] != want.code || rec["instance"] != "accesslog" {
			t.Errorf("line %d: %v", i, rec)
		}
	}
}
