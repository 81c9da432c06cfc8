package kafka

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/sidemix/sidemix/adapters/template"
)

// TestKeyMapEntryMatchesCEL: a key that is one entry of variables or
// spanTags is read from the map without CEL, with CEL's result (key and
// error or not) for every kind of value and for absent ones.
func TestKeyMapEntryMatchesCEL(t *testing.T) {
	values := []any{"web.shop.svc", "", int64(7), 1.5, true, []byte{10, 0, 0, 1}, time.Unix(5, 0).UTC(), 3 * time.Second, nil}
	var insts []template.Instance
	for _, v := range values {
		insts = append(insts,
			&template.LogEntry{Name: "a", Variables: template.FieldsOf(map[string]any{"host": v, "other": "x"})},
			&template.TraceSpan{Name: "s", SpanTags: []template.SpanTag{{Key: "host", Value: v}}})
	}
	insts = append(insts, &template.LogEntry{Name: "a"}, &template.TraceSpan{Name: "s"},
		&template.LogEntry{Name: "a", Variables: template.FieldsOf(map[string]any{"other": "x"})})
	for _, expr := range []string{`variables.host`, `variables["host"]`, `spanTags.host`, `spanTags["host"]`, `variables.other`} {
		fast, err := compileKey(expr)
		if err != nil {
			t.Fatal(err)
		}
		if fast.mapName == "" {
			t.Fatalf("%s: not read from the map", expr)
		}
		slow := *fast
		slow.mapName = ""
		var last lastKey // shared, as by a report's records
		for i, inst := range insts {
			got, gerr := fast.eval(inst, &last)
			want, werr := slow.eval(inst, nil)
			if !bytes.Equal(got, want) || (gerr == nil) != (werr == nil) {
				t.Errorf("%s on instance %d (%s): %q, %v; CEL: %q, %v", expr, i, fmt.Sprint(inst), got, gerr, want, werr)
			}
		}
	}
	for _, expr := range []string{`name`, `variables.host + "x"`, `has(variables.host)`, `variables[name]`} {
		p, err := compileKey(expr)
		if err != nil {
			t.Fatal(err)
		}
		if p.mapName != "" {
			t.Errorf("%s: read as the map entry %s[%q]", expr, p.mapName, p.mapKey)
		}
	}
}

// TestLastKeySharedWhileEqual: records of one key share its bytes; a
// different key gets its own.
func TestLastKeySharedWhileEqual(t *testing.T) {
	var last lastKey
	a := last.bytes("web")
	b := last.bytes(string([]byte("web")))
	if string(a) != "web" || &a[0] != &b[0] {
		t.Errorf("equal keys: %q at %p, %q at %p; want one slice", a, a, b, b)
	}
	c := last.bytes("shop")
	if string(c) != "shop" || string(a) != "web" {
		t.Errorf("after another key: %q, first still %q", c, a)
	}
	if e := last.bytes(""); e == nil || len(e) != 0 {
		t.Errorf("empty key: %#v, want empty non-nil", e)
	}
}
