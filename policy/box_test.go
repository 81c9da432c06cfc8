package policy

import (
	"math"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/sidemix/sidemix/attribute"
)

// TestBox: box is Interface, whatever the kind, for many values (more
// than a slab holds).
func TestBox(t *testing.T) {
	a := new(activation)
	var vals []attribute.Value
	for i := range 3 * boxSlab {
		vals = append(vals, attribute.StringValue("s"+string(rune('a'+i%26))), attribute.Int64Value(int64(i*97-3000)),
			attribute.DurationValue(time.Duration(i)*time.Millisecond), attribute.DoubleValue(float64(i)/3))
	}
	vals = append(vals, attribute.StringValue(""), attribute.Int64Value(math.MinInt64), attribute.DoubleValue(math.Inf(-1)),
		attribute.BoolValue(true), attribute.TimeValue(time.Unix(5, 6)), attribute.BytesValue([]byte{1, 2}),
		attribute.IPValue(netip.MustParseAddr("10.0.0.1")), attribute.StringMapValue(map[string]string{"a": "b"}), attribute.Value{})
	boxes := make([]any, len(vals))
	for i := range vals {
		boxes[i] = a.box(&vals[i])
	}
	for i, v := range vals {
		if want := v.Interface(); reflect.TypeOf(boxes[i]) != reflect.TypeOf(want) || !reflect.DeepEqual(boxes[i], want) {
			t.Errorf("box(%v) = %#v, want %#v", v, boxes[i], want)
		}
	}
}
