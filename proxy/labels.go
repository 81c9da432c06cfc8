package proxy

import (
	"net/url"
	"sync"
)

// encodeLabels is the value of the labels identity and peer headers:
// the labels URL-query encoded, sorted by key (url.Values.Encode).
func encodeLabels(labels map[string]string) string {
	if len(labels) == 0 {
		return ""
	}
	v := make(url.Values, len(labels))
	for k, l := range labels {
		v.Set(k, l)
	}
	return v.Encode()
}

// maxLabelSets bounds labelCache: a mesh has a few workload versions per
// peer, and a header no peer proxy sent is parsed without being kept.
const maxLabelSets = 256

// labelCache parses the labels headers of peers once per distinct value,
// so that a request's report shares its peer's map instead of parsing it.
type labelCache struct {
	mu   sync.RWMutex
	sets map[string]map[string]string
}

// get returns the labels in header, nil when it is empty or malformed.
// The map returned is shared: callers must not change it.
func (c *labelCache) get(header string) map[string]string {
	if header == "" {
		return nil
	}
	c.mu.RLock()
	l, ok := c.sets[header]
	c.mu.RUnlock()
	if ok {
		return l
	}
	q, err := url.ParseQuery(header)
	if err != nil {
		return nil
	}
	l = make(map[string]string, len(q))
	for k, vs := range q {
		if k != "" && len(vs) > 0 {
			l[k] = vs[0]
		}
	}
	c.mu.Lock()
	if c.sets == nil {
		c.sets = map[string]map[string]string{}
	}
	if len(c.sets) < maxLabelSets {
		c.sets[header] = l
	}
	c.mu.Unlock()
	return l
}
