package mixer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"gopkg.in/yaml.v3"
)

// adminHandler serves the operator's endpoints.
func (s *Server) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprint(w, "sidemix mixer\n\n/healthz\n/readyz\n/metrics\n/debug/config  (?format=yaml)\n")
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprint(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !s.ready.Load() || s.active.Load() == nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, "not ready\n")
			return
		}
		fmt.Fprint(w, "ready\n")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{Registry: s.reg}))
	mux.HandleFunc("GET /debug/config", s.serveConfig)
	return mux
}

// configPage is the /debug/config document.
type configPage struct {
	Digest     string          `json:"digest"`
	LoadedAt   time.Time       `json:"loadedAt"`
	Paths      []string        `json:"paths"`
	Counts     configCounts    `json:"counts"`
	Handlers   []handlerStatus `json:"handlers"`
	LastReload *reloadStatus   `json:"lastReload,omitempty"`
	Config     any             `json:"config"`
}

type configCounts struct {
	Handlers  int `json:"handlers"`
	Instances int `json:"instances"`
	Rules     int `json:"rules"`
}

type handlerStatus struct {
	Name        string `json:"name"`
	Adapter     string `json:"adapter"`
	Error       string `json:"error,omitempty"`
	QueueLength *int   `json:"queueLength,omitempty"`
}

func (s *Server) configPage() configPage {
	st := s.active.Load()
	h, i, r := st.snap.Counts()
	page := configPage{
		Digest:     st.snap.Digest(),
		LoadedAt:   st.loadedAt,
		Paths:      s.cfg.ConfigPaths,
		Counts:     configCounts{Handlers: h, Instances: i, Rules: r},
		LastReload: redactReload(s.lastReload.Load()),
		Config:     redactView(st.snap.View(), st.snap.Handlers()),
	}
	for _, h := range st.order {
		hs := handlerStatus{Name: h.name, Adapter: h.adapter}
		if h.err != nil {
			// A backend's error may quote the URL it could not reach.
			hs.Error = redactURLs(h.err.Error())
		}
		if h.queue != nil {
			n := h.queue.len()
			hs.QueueLength = &n
		}
		page.Handlers = append(page.Handlers, hs)
	}
	return page
}

// redactReload hides URL passwords in the load errors, which may quote a
// handler's params.
func redactReload(r *reloadStatus) *reloadStatus {
	if r == nil || len(r.Errors) == 0 {
		return r
	}
	out := *r
	out.Errors = make([]string, len(r.Errors))
	for i, e := range r.Errors {
		out.Errors[i] = redactURLs(e)
	}
	return &out
}

func wantsYAML(r *http.Request) bool {
	switch r.URL.Query().Get("format") {
	case "yaml", "yml":
		return true
	case "json":
		return false
	}
	accept := r.Header.Get("Accept")
	return strings.Contains(accept, "application/yaml") || strings.Contains(accept, "application/x-yaml") ||
		strings.Contains(accept, "text/yaml")
}

func (s *Server) serveConfig(w http.ResponseWriter, r *http.Request) {
	js, err := json.MarshalIndent(s.configPage(), "", "  ")
	if err != nil {
		http.Error(w, "rendering the config: "+err.Error(), http.StatusInternalServerError)
		return
	}
	if !wantsYAML(r) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(append(js, '\n'))
		return
	}
	y, err := jsonToYAML(js)
	if err != nil {
		http.Error(w, "rendering the config: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/yaml")
	w.Write(y)
}

// jsonToYAML re-renders a JSON document as block-style YAML, keeping the key
// order and names of the JSON form so both formats read the same.
func jsonToYAML(js []byte) ([]byte, error) {
	var n yaml.Node
	if err := yaml.Unmarshal(js, &n); err != nil {
		return nil, err
	}
	var unflow func(*yaml.Node)
	unflow = func(n *yaml.Node) {
		n.Style &^= yaml.FlowStyle | yaml.DoubleQuotedStyle
		for _, c := range n.Content {
			unflow(c)
		}
	}
	unflow(&n)
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&n); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
