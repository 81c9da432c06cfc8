package mixer

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	mixerv1 "github.com/sidemix/sidemix/api/mixer/v1"
	"github.com/sidemix/sidemix/attribute"
)

// The parts of a Check answer that repeat from request to request (the
// referenced attributes of a rule set, the valid durations) are built once
// and shared by every answer that carries them: fewer allocations per Check
// means less garbage to collect. Shared messages are never changed after
// they are cached, and protobuf messages may be marshalled concurrently.

// maxRefsShapes bounds the cache of referenced-attribute lists: one entry
// per distinct list, which the config bounds (its expressions name the
// attributes and map keys), so the bound only guards against a config
// whose map keys come from the requests.
const maxRefsShapes = 1024

// refsCache maps a list of references, in the order an evaluation recorded
// them, to its wire form. It belongs to one state: a new config starts it
// afresh.
type refsCache struct {
	entries sync.Map // uint64 hash → *refsEntry
	n       atomic.Int32
}

type refsEntry struct {
	refs  []attribute.Reference // as recorded, to confirm a hash hit
	proto *mixerv1.ReferencedAttributes
}

var refsSeed = maphash.MakeSeed()

func hashRefs(refs []attribute.Reference) uint64 {
	var h maphash.Hash
	h.SetSeed(refsSeed)
	for i := range refs {
		r := &refs[i]
		h.WriteString(r.Name)
		var flags byte
		if r.HasKey {
			flags |= 1
		}
		if r.Present {
			flags |= 2
		}
		h.WriteByte(0)
		h.WriteByte(flags)
		if r.HasKey {
			h.WriteString(r.MapKey)
			h.WriteByte(0)
		}
	}
	return h.Sum64()
}

func sameRefs(a, b []attribute.Reference) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// proto returns the wire form of refs (sorted by name and key), shared with
// every other answer that referenced the same attributes.
func (c *refsCache) proto(refs *attribute.Referenced) *mixerv1.ReferencedAttributes {
	rec := refs.Recorded()
	key := hashRefs(rec)
	if v, ok := c.entries.Load(key); ok {
		if e := v.(*refsEntry); sameRefs(e.refs, rec) {
			return e.proto
		}
		return attribute.ToProto(refs.List()) // a hash collision: not cached
	}
	p := attribute.ToProto(refs.List())
	if c.n.Load() < maxRefsShapes {
		if _, loaded := c.entries.LoadOrStore(key, &refsEntry{refs: append([]attribute.Reference(nil), rec...), proto: p}); !loaded {
			c.n.Add(1)
		}
	}
	return p
}

// durationCache holds the wire form of the few durations answers carry (the
// default valid duration, the handlers' windows), direct-mapped: a slot
// holds the last duration hashed to it.
type durationCache struct {
	slots [64]atomic.Pointer[durationEntry]
}

type durationEntry struct {
	d time.Duration
	p *durationpb.Duration
}

func (c *durationCache) get(d time.Duration) *durationpb.Duration {
	slot := &c.slots[uint64(d)*0x9E3779B97F4A7C15>>58]
	if e := slot.Load(); e != nil && e.d == d {
		return e.p
	}
	e := &durationEntry{d: d, p: durationpb.New(d)}
	slot.Store(e)
	return e.p
}
