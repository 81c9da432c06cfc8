package routing

import (
	"bytes"
	"context"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

const watchSE = `apiVersion: networking.sidemix.dev/v1
kind: ServiceEntry
metadata: {name: shop}
spec:
  hosts: [shop]
  ports: [{number: 80}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1, labels: {version: v1}}, {address: 127.0.0.2, labels: {version: v2}}]
---
apiVersion: networking.sidemix.dev/v1
kind: DestinationRule
metadata: {name: shop}
spec:
  host: shop
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
`

func vsTo(subset string) string {
	return `apiVersion: networking.sidemix.dev/v1
kind: VirtualService
metadata: {name: shop}
spec:
  hosts: [shop]
  http:
  - route:
    - destination: {host: shop, subset: ` + subset + `}
`
}

// TestWatcher: a valid change is picked up, an invalid one is logged with
// file:line and leaves the old table serving, a fix is picked up again.
func TestWatcher(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("se.yaml", watchSE)
	write("vs.yaml", vsTo("v1"))
	var logs syncBuffer
	reloads := make(chan *Table, 10)
	w, err := NewWatcher(WatchOptions{PollInterval: 50 * time.Millisecond, Debounce: 20 * time.Millisecond,
		Logger:   slog.New(slog.NewTextHandler(&logs, nil)),
		OnReload: func(t *Table) { reloads <- t }}, dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	subset := func(tb *Table) string {
		r := httptest.NewRequest("GET", "http://shop/", nil)
		m, _ := tb.Lookup(r)
		return m.Route.PickRandom().Cluster.Subset
	}
	if s := subset(w.Table()); s != "v1" {
		t.Fatalf("initial subset %s", s)
	}
	write("vs.yaml", vsTo("v2"))
	select {
	case tb := <-reloads:
		if s := subset(tb); s != "v2" {
			t.Fatalf("reloaded subset %s", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no reload after a valid change")
	}
	if s := subset(w.Table()); s != "v2" {
		t.Fatalf("current subset %s", s)
	}

	write("vs.yaml", vsTo("v7"))
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "routes reload rejected") {
		if time.Now().After(deadline) {
			t.Fatalf("no rejection logged:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if want := filepath.Join(dir, "vs.yaml") + `:8: VirtualService/shop: spec.http[0].route[0].destination.subset: unknown subset \"v7\"`; !strings.Contains(logs.String(), want) {
		t.Errorf("log lacks %s:\n%s", want, logs.String())
	}
	if s := subset(w.Table()); s != "v2" {
		t.Fatalf("after an invalid change the subset is %s, want the old v2", s)
	}
	select {
	case <-reloads:
		t.Fatal("an invalid config was handed on")
	default:
	}

	write("vs.yaml", vsTo("v1"))
	select {
	case tb := <-reloads:
		if s := subset(tb); s != "v1" {
			t.Fatalf("fixed subset %s", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no reload after the fix")
	}
}
