package policy

import (
	"time"
	"unsafe"

	"github.com/sidemix/sidemix/attribute"
)

// eface is the layout of an interface value with no methods (runtime's
// eface, as adapters/internal/jsonline reads it too).
type eface struct{ typ, data unsafe.Pointer }

// typeOf is the type word of the interfaces holding x's type.
func typeOf(x any) unsafe.Pointer { return (*eface)(unsafe.Pointer(&x)).typ }

var (
	stringType   = typeOf("")
	int64Type    = typeOf(int64(0))
	float64Type  = typeOf(float64(0))
	durationType = typeOf(time.Duration(0))
)

// boxSlab is how many strings or numbers box takes room for at once.
const boxSlab = 64

// box is v.Interface(), with strings and numbers boxed in slabs the
// activation allocates now and then: converting one to an interface
// allocates its copy, and an instance's changing fields (ids, paths,
// sizes) are boxed for every request. The copy is never written again,
// as Go's own boxing, and the interface points at it.
func (a *activation) box(v *attribute.Value) any {
	var x any
	e := (*eface)(unsafe.Pointer(&x))
	switch v.Kind() {
	case attribute.KindString:
		if v.Str() == "" {
			return "" // no allocation
		}
		p := &cut(&a.strBoxes, 1, boxSlab)[0]
		*p = v.Str()
		e.typ, e.data = stringType, unsafe.Pointer(p)
	case attribute.KindInt64:
		if n := v.Int64(); n >= 0 && n < 256 {
			return n // Go's boxes of small numbers are static
		}
		p := &cut(&a.numBoxes, 1, boxSlab)[0]
		*p = uint64(v.Int64())
		e.typ, e.data = int64Type, unsafe.Pointer(p)
	case attribute.KindDuration:
		p := &cut(&a.numBoxes, 1, boxSlab)[0]
		*p = uint64(v.Duration())
		e.typ, e.data = durationType, unsafe.Pointer(p)
	case attribute.KindDouble:
		p := &cut(&a.numBoxes, 1, boxSlab)[0]
		*p = uint64(v.Int64()) // the float's bits
		e.typ, e.data = float64Type, unsafe.Pointer(p)
	default:
		return v.Interface()
	}
	return x
}
