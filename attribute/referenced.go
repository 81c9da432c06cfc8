package attribute

import (
	"encoding/binary"
	"hash/maphash"
	"sort"
	"strings"

	mixerv1 "github.com/sidemix/sidemix/api/mixer/v1"
)

// Reference is one attribute a decision looked at.
type Reference struct {
	Name string
	// MapKey is the key looked up in a map attribute; empty when the whole
	// attribute (or the whole map) mattered. HasKey tells the two apart, as
	// "" is a valid map key.
	MapKey string
	HasKey bool
	// Present records whether the attribute (or key) was there.
	Present bool
}

func (r Reference) less(o Reference) bool {
	if r.Name != o.Name {
		return r.Name < o.Name
	}
	if r.HasKey != o.HasKey {
		return !r.HasKey
	}
	return r.MapKey < o.MapKey
}

// Referenced collects the attributes an evaluation looked at. The zero value
// is ready; it is not safe for concurrent use.
type Referenced struct {
	refs []Reference
}

// Add records a whole attribute.
func (r *Referenced) Add(name string, present bool) {
	r.add(Reference{Name: name, Present: present})
}

// AddMapKey records one key of a map attribute.
func (r *Referenced) AddMapKey(name, key string, present bool) {
	r.add(Reference{Name: name, MapKey: key, HasKey: true, Present: present})
}

func (r *Referenced) add(ref Reference) {
	for _, x := range r.refs {
		if x.Name == ref.Name && x.HasKey == ref.HasKey && x.MapKey == ref.MapKey {
			return
		}
	}
	r.refs = append(r.refs, ref)
}

// Merge adds every reference of o.
func (r *Referenced) Merge(o *Referenced) {
	if o == nil {
		return
	}
	for _, x := range o.refs {
		r.add(x)
	}
}

// Recorded returns the references in the order they were first recorded,
// without copying: the caller must not change them nor keep them past the
// next Add, Merge or Reset. List is the sorted copy.
func (r *Referenced) Recorded() []Reference { return r.refs }

// Len is the number of references.
func (r *Referenced) Len() int { return len(r.refs) }

// Reset forgets every reference, keeping the memory.
func (r *Referenced) Reset() { r.refs = r.refs[:0] }

// List returns the references sorted by name and key.
func (r *Referenced) List() []Reference {
	out := append([]Reference(nil), r.refs...)
	sort.Slice(out, func(i, j int) bool { return out[i].less(out[j]) })
	return out
}

// Shape identifies a set of references regardless of what was found: the
// names and keys, sorted, in one string. A check cache keeps one table per
// shape it has seen.
func Shape(refs []Reference) string {
	var sb strings.Builder
	for _, r := range refs {
		sb.WriteString(r.Name)
		if r.HasKey {
			sb.WriteByte('[')
			sb.WriteString(r.MapKey)
			sb.WriteByte(']')
		}
		sb.WriteByte(0)
	}
	return sb.String()
}

var sigSeed = maphash.MakeSeed()

// Signature hashes what bag holds for each reference: presence and value.
// Two bags with the same signature for the same references get the same
// decision from a rule set that looked only at those references. It does not
// allocate.
func Signature(bag *Bag, refs []Reference) uint64 {
	var h maphash.Hash
	h.SetSeed(sigSeed)
	for i := range refs {
		r := &refs[i]
		if r.HasKey {
			s, ok := bag.MapValue(r.Name, r.MapKey)
			if !ok {
				h.WriteByte(0)
				continue
			}
			h.WriteByte(1)
			writeString(&h, s)
			continue
		}
		v, ok := bag.Get(r.Name)
		if !ok {
			h.WriteByte(0)
			continue
		}
		h.WriteByte(byte(v.kind))
		hashValue(&h, v)
	}
	return h.Sum64()
}

// Matches reports whether bag agrees with the presence each reference
// recorded (a quick guard against hash collisions of absence).
func Matches(bag *Bag, refs []Reference) bool {
	for _, r := range refs {
		var ok bool
		if r.HasKey {
			_, ok = bag.MapValue(r.Name, r.MapKey)
		} else {
			_, ok = bag.Get(r.Name)
		}
		if ok != r.Present {
			return false
		}
	}
	return true
}

func writeString(h *maphash.Hash, s string) {
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(s)))
	h.Write(n[:])
	h.WriteString(s)
}

func hashValue(h *maphash.Hash, v Value) {
	var n [8]byte
	switch v.kind {
	case KindString, KindBytes:
		writeString(h, v.s)
	case KindStringMap:
		// Order-independent: sum of per-entry hashes.
		var sum uint64
		for k, x := range v.m {
			var eh maphash.Hash
			eh.SetSeed(sigSeed)
			writeString(&eh, k)
			writeString(&eh, x)
			sum += eh.Sum64()
		}
		binary.LittleEndian.PutUint64(n[:], sum)
		h.Write(n[:])
	default:
		binary.LittleEndian.PutUint64(n[:], uint64(v.n))
		h.Write(n[:])
	}
}

// EqualOn reports whether a and b hold the same thing for every reference.
// A cache that finds an entry by Signature confirms the hit with it.
func EqualOn(a, b *Bag, refs []Reference) bool {
	for _, r := range refs {
		if r.HasKey {
			x, okx := a.MapValue(r.Name, r.MapKey)
			y, oky := b.MapValue(r.Name, r.MapKey)
			if okx != oky || x != y {
				return false
			}
			continue
		}
		x, okx := a.Get(r.Name)
		y, oky := b.Get(r.Name)
		if okx != oky || (okx && !x.Equal(y)) {
			return false
		}
	}
	return true
}

// ToProto converts references to their wire form.
func ToProto(refs []Reference) *mixerv1.ReferencedAttributes {
	out := &mixerv1.ReferencedAttributes{AttributeMatches: make([]*mixerv1.ReferencedAttributes_AttributeMatch, len(refs))}
	for i, r := range refs {
		cond := mixerv1.ReferencedAttributes_EXACT
		if !r.Present {
			cond = mixerv1.ReferencedAttributes_ABSENCE
		}
		out.AttributeMatches[i] = &mixerv1.ReferencedAttributes_AttributeMatch{Name: r.Name, Condition: cond, MapKey: r.MapKey, HasMapKey: r.HasKey}
	}
	return out
}

// FromProto converts references from their wire form, sorted. REGEX
// conditions count as EXACT: the cache then keys on the whole value, which
// is stricter and still correct.
func FromProto(p *mixerv1.ReferencedAttributes) []Reference {
	var r Referenced
	for _, m := range p.GetAttributeMatches() {
		present := m.GetCondition() != mixerv1.ReferencedAttributes_ABSENCE
		if m.GetHasMapKey() {
			r.AddMapKey(m.GetName(), m.GetMapKey(), present)
		} else {
			r.Add(m.GetName(), present)
		}
	}
	return r.List()
}
