package list

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/internal/handlerkit"
)

// maxBody bounds a provider's answer, so a wrong URL cannot fill memory.
const maxBody = 16 << 20

// remote keeps a list fetched from a provider in out, refreshing it every
// refresh interval from one goroutine. Only that goroutine (and Create,
// before it starts) writes the fields below the line.
type remote struct {
	url, shown  string // shown is redacted, for logs and errors
	entryType   string
	overrides   []string
	refresh     time.Duration
	ttl         time.Duration
	timeout     time.Duration
	client      *http.Client
	ownClient   bool // created here: Close closes its idle connections
	now         func() time.Time
	log         *slog.Logger
	out         *atomic.Pointer[list]
	fetchErrors prometheus.Counter
	entries     prometheus.Gauge
	lastFetch   prometheus.Gauge

	kick      chan chan struct{} // a fetch now, acknowledged when done
	cancel    context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once

	// ---- refresher's own
	etag, lastModified string
	failures           int    // consecutive
	lastErr            string // last logged
	expiredLogged      bool
}

func newRemote(set adapters.Settings, c *Config, client *http.Client, out *atomic.Pointer[list]) (*remote, error) {
	if _, err := url.Parse(c.ProviderURL); err != nil {
		return nil, fmt.Errorf("providerUrl: %s", urlReason(err))
	}
	// The overrides must be valid on their own: they are part of every
	// list the provider will send.
	if _, err := newMatcher(c.EntryType, c.Overrides); err != nil {
		return nil, err
	}
	errs, err := handlerkit.Register(set.Registerer, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sidemix_list_fetch_errors_total",
		Help: "Failed fetches of list handlers' providers: unreachable, an error status, or a body that is not a valid list.",
	}, []string{"handler"}))
	if err != nil {
		return nil, err
	}
	entries, err := handlerkit.Register(set.Registerer, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "sidemix_list_entries",
		Help: "Entries of the last list fetched by list handlers, overrides included.",
	}, []string{"handler"}))
	if err != nil {
		return nil, err
	}
	last, err := handlerkit.Register(set.Registerer, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "sidemix_list_last_fetch_timestamp_seconds",
		Help: "When list handlers' providers last answered, in Unix seconds; a list older than its ttl fails checks.",
	}, []string{"handler"}))
	if err != nil {
		return nil, err
	}
	r := &remote{
		url:         c.ProviderURL,
		shown:       redactURL(c.ProviderURL),
		entryType:   c.EntryType,
		overrides:   c.Overrides,
		refresh:     c.RefreshInterval,
		ttl:         c.TTL,
		timeout:     c.FetchTimeout,
		client:      client,
		now:         set.Now,
		log:         set.Logger,
		out:         out,
		fetchErrors: errs.WithLabelValues(set.Name),
		entries:     entries.WithLabelValues(set.Name),
		lastFetch:   last.WithLabelValues(set.Name),
		kick:        make(chan chan struct{}),
		done:        make(chan struct{}),
	}
	if r.client == nil {
		r.client = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
		r.ownClient = true
	}
	out.Store(&list{})
	return r, nil
}

// start fetches the list once, within the fetch timeout and ctx, then keeps
// refreshing it in the background. A failed first fetch is not fatal: checks
// fail until a fetch succeeds.
func (r *remote) start(ctx context.Context) {
	r.fetchOnce(ctx)
	loop, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go r.loop(loop)
}

func (r *remote) loop(ctx context.Context) {
	defer close(r.done)
	t := time.NewTicker(r.refresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.fetchOnce(ctx)
		case ack := <-r.kick:
			r.fetchOnce(ctx)
			close(ack)
		}
	}
}

// fetchNow makes the refresher fetch at once and waits until it has; it
// returns at once when the refresher has stopped.
func (r *remote) fetchNow() {
	ack := make(chan struct{})
	select {
	case r.kick <- ack:
		<-ack
	case <-r.done:
	}
}

func (r *remote) stop() {
	r.closeOnce.Do(func() {
		r.cancel()
		<-r.done
		if r.ownClient {
			r.client.CloseIdleConnections()
		}
	})
}

// usable says why l may not answer checks: nothing fetched yet, or the
// last fetch is older than the ttl.
func (r *remote) usable(l *list) error {
	if l.fetched.IsZero() {
		return errors.New("list unavailable: its provider has not answered yet")
	}
	if age := r.now().Sub(l.fetched); age > r.ttl {
		return fmt.Errorf("list unavailable: its provider has not answered for %v (ttl %v)", age.Round(time.Second), r.ttl)
	}
	return nil
}

// fetchOnce fetches and installs the list, or counts and logs the failure
// and keeps the list it has.
func (r *remote) fetchOnce(parent context.Context) {
	ctx, cancel := context.WithTimeout(parent, r.timeout)
	defer cancel()
	cur := r.out.Load()
	fetched, notModified, err := r.fetch(ctx, cur.match != nil)
	next := &list{match: cur.match, entries: cur.entries}
	if err == nil && !notModified {
		next.match, err = r.build(fetched)
		next.entries = len(fetched.values)
	}
	if err != nil {
		if parent.Err() != nil {
			return // closing
		}
		r.failed(cur, err)
		return
	}
	if !notModified {
		r.etag, r.lastModified = fetched.etag, fetched.lastModified
	}
	next.fetched = r.now()
	r.out.Store(next)
	r.entries.Set(float64(len(r.overrides) + next.entries))
	r.lastFetch.Set(float64(next.fetched.UnixNano()) / 1e9)
	switch {
	case r.failures > 0:
		r.log.Info("list provider answers again", "url", r.shown, "entries", next.entries, "failedFetches", r.failures)
	case cur.fetched.IsZero():
		r.log.Info("list fetched", "url", r.shown, "entries", next.entries)
	default:
		r.log.Debug("list refreshed", "url", r.shown, "entries", next.entries, "notModified", notModified)
	}
	r.failures, r.lastErr, r.expiredLogged = 0, "", false
}

// failed counts a failed fetch and logs it when its error is new, so that a
// provider that stays down logs once, not every refresh; it also logs once
// when the kept list expires.
func (r *remote) failed(cur *list, err error) {
	r.fetchErrors.Inc()
	r.failures++
	if msg := err.Error(); msg != r.lastErr {
		r.lastErr = msg
		if cur.fetched.IsZero() {
			r.log.Warn("list fetch failed; checks fail until it succeeds", "url", r.shown, "error", msg, "failedFetches", r.failures)
		} else {
			r.log.Warn("list fetch failed; keeping the last list until its ttl passes", "url", r.shown, "error", msg,
				"failedFetches", r.failures, "fetchedAt", cur.fetched, "ttl", r.ttl)
		}
	}
	if !cur.fetched.IsZero() && !r.expiredLogged && r.now().Sub(cur.fetched) > r.ttl {
		r.expiredLogged = true
		r.log.Error("list expired: checks fail until its provider answers", "url", r.shown, "fetchedAt", cur.fetched, "ttl", r.ttl)
	}
}

// body is a provider's list: its values and, for error messages, where each
// came from.
type body struct {
	values             []string
	where              func(i int) string
	etag, lastModified string
}

// fetch GETs the provider's list. With conditional set, it asks with the
// validators of the last list and reports notModified on a 304.
func (r *remote) fetch(ctx context.Context, conditional bool) (b body, notModified bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.url, nil)
	if err != nil {
		return body{}, false, fmt.Errorf("GET %s: %s", r.shown, urlReason(err))
	}
	req.Header.Set("Accept", "text/plain, application/json;q=0.9, */*;q=0.1")
	req.Header.Set("User-Agent", "sidemix-list")
	if conditional && r.etag != "" {
		req.Header.Set("If-None-Match", r.etag)
	}
	if conditional && r.lastModified != "" {
		req.Header.Set("If-Modified-Since", r.lastModified)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return body{}, false, fmt.Errorf("GET %s: %s", r.shown, urlReason(err))
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotModified && conditional:
		return body{}, true, nil
	case resp.StatusCode != http.StatusOK:
		return body{}, false, fmt.Errorf("GET %s: %s", r.shown, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return body{}, false, fmt.Errorf("GET %s: reading the body: %s", r.shown, urlReason(err))
	}
	if len(data) > maxBody {
		return body{}, false, fmt.Errorf("GET %s: body exceeds %d MiB", r.shown, maxBody>>20)
	}
	b, err = parseBody(resp.Header.Get("Content-Type"), data)
	if err != nil {
		return body{}, false, fmt.Errorf("GET %s: %w", r.shown, err)
	}
	b.etag, b.lastModified = resp.Header.Get("ETag"), resp.Header.Get("Last-Modified")
	return b, false, nil
}

// parseBody reads a JSON array of strings when the content type says json,
// else one entry per line, blank lines and '#' comments ignored.
func parseBody(contentType string, data []byte) (body, error) {
	mt, _, _ := mime.ParseMediaType(contentType)
	if mt == "application/json" || strings.HasSuffix(mt, "+json") {
		var values []string
		if err := json.Unmarshal(data, &values); err != nil {
			return body{}, fmt.Errorf("body is not a JSON array of strings: %v", err)
		}
		return body{values: values, where: func(i int) string { return fmt.Sprintf("entry [%d]", i) }}, nil
	}
	data = bytes.TrimPrefix(data, []byte("\uFEFF"))
	var values []string
	var lines []int
	for n, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		values = append(values, line)
		lines = append(lines, n+1)
	}
	return body{values: values, where: func(i int) string { return fmt.Sprintf("line %d", lines[i]) }}, nil
}

// build checks every fetched entry, naming the first bad one, and returns
// the matcher of the overrides and the entries together.
func (r *remote) build(b body) (matcher, error) {
	bad := 0
	var first error
	for i, v := range b.values {
		var err error
		switch r.entryType {
		case Regex:
			if _, e := regexp.Compile(v); e != nil {
				err = fmt.Errorf("invalid regex %q: %s", v, regexReason(e))
			}
		case IPAddresses:
			if _, e := parsePrefix(v); e != nil {
				err = fmt.Errorf("%q is neither an IP address nor a CIDR prefix", v)
			}
		}
		if err != nil {
			if bad == 0 {
				first = fmt.Errorf("%s: %w", b.where(i), err)
			}
			bad++
		}
	}
	switch {
	case bad == 1:
		return nil, first
	case bad > 1:
		return nil, fmt.Errorf("%w (and %d more bad entries)", first, bad-1)
	}
	all := make([]string, 0, len(r.overrides)+len(b.values))
	all = append(append(all, r.overrides...), b.values...)
	return newMatcher(r.entryType, all)
}
