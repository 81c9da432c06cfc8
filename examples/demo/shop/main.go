// Command shop is the demo's online shop: one small HTTP service that plays
// one of three roles, each run behind its own sidemix sidecar.
//
//	product       GET /products, GET /products/{id}, GET /checkout?item=ID
//	              (calls invoice), GET /admin/... (the policy denies it)
//	invoice       POST /invoices (calls notification)
//	notification  POST /notify
//
// A service calls the next one through its own sidecar's outbound listener
// (--outbound), naming the callee in the Host header, as an app in a mesh
// would; the sidecar routes by that name (its --upstreams). It forwards the
// trace headers of the request it serves (W3C traceparent/tracestate, B3,
// x-request-id) on the call it makes, the one change tracing asks of an
// app: the sidecars then put both hops in the same trace.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

type product struct {
	ID    string  `json:"id"`
	Name  string  `json:"name"`
	Price float64 `json:"price"`
}

var catalogue = []product{
	{"tea", "Green tea, 100g", 4.90},
	{"mug", "Stoneware mug", 12.00},
	{"pot", "Cast-iron teapot", 39.50},
}

func main() {
	role := flag.String("role", "", "product, invoice or notification")
	listen := flag.String("listen", "127.0.0.1:8080", "listen address")
	outbound := flag.String("outbound", "", "address of this service's sidecar outbound listener")
	flag.Parse()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("role", *role)

	s := &shop{outbound: *outbound, client: &http.Client{Timeout: 5 * time.Second}, logger: logger}
	mux := http.NewServeMux()
	switch *role {
	case "product":
		mux.HandleFunc("GET /products", s.products)
		mux.HandleFunc("GET /products/{id}", s.productByID)
		mux.HandleFunc("GET /checkout", s.checkout)
		mux.HandleFunc("/admin/", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintln(w, "admin panel: if you can read this, the policy did not stop you")
		})
	case "invoice":
		mux.HandleFunc("POST /invoices", s.invoice)
	case "notification":
		mux.HandleFunc("POST /notify", s.notify)
	default:
		fmt.Fprintf(os.Stderr, "shop: --role must be product, invoice or notification, not %q\n", *role)
		os.Exit(2)
	}
	if (*role == "product" || *role == "invoice") && *outbound == "" {
		fmt.Fprintf(os.Stderr, "shop: --role %s needs --outbound\n", *role)
		os.Exit(2)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })

	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	logger.Info("listening", "addr", *listen, "outbound", *outbound)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		logger.Error("serve", "err", err)
		os.Exit(1)
	}
}

type shop struct {
	outbound string
	client   *http.Client
	logger   *slog.Logger
	orders   atomic.Int64
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *shop) products(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, catalogue)
}

func (s *shop) productByID(w http.ResponseWriter, r *http.Request) {
	for _, p := range catalogue {
		if p.ID == r.PathValue("id") {
			writeJSON(w, http.StatusOK, p)
			return
		}
	}
	writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such product"})
}

// traceHeaders are the headers an app forwards so that the call it makes
// for a request joins that request's trace.
var traceHeaders = []string{
	"traceparent", "tracestate",
	"b3", "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags",
	"x-request-id",
}

// call sends a request to another service through the sidecar's outbound
// listener: the URL's host is the sidecar, the Host header names the callee.
// The trace headers of in, the request being served, go along.
func (s *shop) call(in *http.Request, service, method, path string, body any) (int, []byte, error) {
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(in.Context(), method, "http://"+s.outbound+path, strings.NewReader(string(b)))
	if err != nil {
		return 0, nil, err
	}
	req.Host = service
	req.Header.Set("Content-Type", "application/json")
	for _, h := range traceHeaders {
		if v := in.Header.Values(h); len(v) > 0 {
			req.Header[http.CanonicalHeaderKey(h)] = v
		}
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, out, err
}

// checkout orders one item: product asks invoice to bill it.
func (s *shop) checkout(w http.ResponseWriter, r *http.Request) {
	item := r.URL.Query().Get("item")
	if item == "" {
		item = "tea"
	}
	var p *product
	for i := range catalogue {
		if catalogue[i].ID == item {
			p = &catalogue[i]
		}
	}
	if p == nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such product"})
		return
	}
	code, body, err := s.call(r, "invoice", http.MethodPost, "/invoices", p)
	if err != nil {
		s.logger.Warn("invoice unreachable", "err", err)
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": "invoice unreachable: " + err.Error()})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(body)
}

// invoice bills an item and has notification tell the customer.
func (s *shop) invoice(w http.ResponseWriter, r *http.Request) {
	var p product
	if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	n := s.orders.Add(1)
	inv := map[string]any{"invoice": fmt.Sprintf("INV-%06d", n), "item": p.ID, "amount": p.Price}
	code, _, err := s.call(r, "notification", http.MethodPost, "/notify", inv)
	if err != nil || code != http.StatusOK {
		s.logger.Warn("notification failed", "code", code, "err", err)
		inv["notified"] = false
	} else {
		inv["notified"] = true
	}
	writeJSON(w, http.StatusCreated, inv)
}

func (s *shop) notify(w http.ResponseWriter, r *http.Request) {
	var msg map[string]any
	if err := json.NewDecoder(r.Body).Decode(&msg); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	s.logger.Debug("notified", "invoice", msg["invoice"])
	writeJSON(w, http.StatusOK, map[string]string{"status": "sent"})
}
