package mixerclient

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/sidemix/sidemix/attribute"
)

// The check cache keys an answer on exactly the attributes the mixer said it
// looked at. Answers for different requests can depend on different
// attributes, so the cache keeps every distinct set of references (a shape)
// it has seen; a lookup hashes the request once per shape and confirms a hit
// with attribute.EqualOn, so a hash collision can never return another
// request's decision.

// shape is one set of references, sorted.
type shape struct {
	key  string // attribute.Shape(refs)
	refs []attribute.Reference
	live int // entries under this shape; guarded by cache.mu
}

type cacheKey struct {
	s   *shape
	sig uint64
}

type cacheEntry struct {
	key        cacheKey
	proj       *attribute.Bag // the asking bag, reduced to the referenced attributes
	d          Decision
	expires    time.Time
	uses       int32
	quota      bool
	charges    []charge    // quotas a request of this entry draws on
	prev, next *cacheEntry // LRU list, most recent after the sentinel
}

type cache struct {
	max    int
	mu     sync.Mutex
	byKey  map[cacheKey]*cacheEntry
	shapes map[string]*shape
	// snap is the shapes as a slice, republished on every change, so that
	// lookups range over it without the lock.
	snap atomic.Pointer[[]*shape]
	lru  cacheEntry // sentinel
}

func newCache(max int) *cache {
	c := &cache{
		max:    max,
		byKey:  make(map[cacheKey]*cacheEntry),
		shapes: make(map[string]*shape),
	}
	c.lru.prev, c.lru.next = &c.lru, &c.lru
	return c
}

// lookup returns the decision of a live entry that agrees with bag on all its
// references, using it once, and the quota charges a request it allows
// must still pay.
func (c *cache) lookup(bag *attribute.Bag, now func() time.Time) (Decision, []charge, bool) {
	sp := c.snap.Load()
	if sp == nil || len(*sp) == 0 {
		return Decision{}, nil, false
	}
	t := now()
	for _, s := range *sp {
		sig := attribute.Signature(bag, s.refs)
		c.mu.Lock()
		e := c.byKey[cacheKey{s, sig}]
		if e == nil || !attribute.EqualOn(e.proj, bag, s.refs) {
			c.mu.Unlock()
			continue
		}
		if e.quota {
			// A quota applied to this request: the mixer must see it.
			c.mu.Unlock()
			return Decision{}, nil, false
		}
		if !t.Before(e.expires) || e.uses <= 0 {
			c.remove(e)
			c.mu.Unlock()
			continue
		}
		e.uses--
		d, charges := e.d, e.charges
		if e.uses == 0 {
			c.remove(e)
		} else {
			c.toFront(e)
		}
		c.mu.Unlock()
		d.Cached = true
		return d, charges, true
	}
	return Decision{}, nil, false
}

// forget drops the entry that answers for bag, if any.
func (c *cache) forget(bag *attribute.Bag) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if sp := c.snap.Load(); sp != nil {
		for _, s := range *sp {
			if e := c.byKey[cacheKey{s, attribute.Signature(bag, s.refs)}]; e != nil && attribute.EqualOn(e.proj, bag, s.refs) {
				c.remove(e)
			}
		}
	}
}

// store keeps a's answer for bag, replacing whatever entry answered for bag
// before under any shape.
func (c *cache) store(bag *attribute.Bag, a *answer) {
	key := attribute.Shape(a.refs)
	proj := project(bag, a.refs)
	c.mu.Lock()
	defer c.mu.Unlock()
	if sp := c.snap.Load(); sp != nil {
		for _, s := range *sp {
			if e := c.byKey[cacheKey{s, attribute.Signature(bag, s.refs)}]; e != nil && attribute.EqualOn(e.proj, bag, s.refs) {
				c.remove(e)
			}
		}
	}
	s := c.shapes[key]
	if s == nil {
		s = &shape{key: key, refs: a.refs}
		c.shapes[key] = s
		c.publish()
	}
	k := cacheKey{s, attribute.Signature(bag, s.refs)}
	if old := c.byKey[k]; old != nil { // a hash collision: the newer wins
		c.remove(old)
		if c.shapes[key] == nil { // remove dropped the emptied shape
			c.shapes[key] = s
			c.publish()
		}
	}
	e := &cacheEntry{key: k, proj: proj, d: a.d, expires: a.expires, uses: a.uses, quota: a.quota, charges: a.charges}
	c.byKey[k] = e
	s.live++
	e.prev, e.next = &c.lru, c.lru.next
	e.prev.next, e.next.prev = e, e
	for len(c.byKey) > c.max {
		c.remove(c.lru.prev)
	}
}

func (c *cache) toFront(e *cacheEntry) {
	if c.lru.next == e {
		return
	}
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = &c.lru, c.lru.next
	e.prev.next, e.next.prev = e, e
}

// remove drops e; the caller holds mu.
func (c *cache) remove(e *cacheEntry) {
	if c.byKey[e.key] != e {
		return
	}
	delete(c.byKey, e.key)
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
	s := e.key.s
	s.live--
	if s.live == 0 && c.shapes[s.key] == s {
		delete(c.shapes, s.key)
		c.publish()
	}
}

// publish republishes the shape list; the caller holds mu.
func (c *cache) publish() {
	list := make([]*shape, 0, len(c.shapes))
	for _, s := range c.shapes {
		list = append(list, s)
	}
	c.snap.Store(&list)
}

// len is the number of entries.
func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.byKey)
}

// project keeps of bag only what refs look at, so an entry does not pin the
// whole request (headers and all) in memory.
func project(bag *attribute.Bag, refs []attribute.Reference) *attribute.Bag {
	b := attribute.NewBuilder(len(refs))
	var maps map[string]map[string]string
	whole := ""
	for _, r := range refs {
		if !r.HasKey {
			if v, ok := bag.Get(r.Name); ok {
				b.Set(r.Name, v)
			}
			whole = r.Name // refs are sorted: a name's whole reference precedes its keys
			continue
		}
		if r.Name == whole {
			continue
		}
		v, ok := bag.MapValue(r.Name, r.MapKey)
		if !ok {
			continue
		}
		if maps == nil {
			maps = make(map[string]map[string]string)
		}
		m := maps[r.Name]
		if m == nil {
			m = make(map[string]string)
			maps[r.Name] = m
		}
		m[r.MapKey] = v
	}
	for name, m := range maps {
		b.SetStringMap(name, m)
	}
	return b.Build()
}
