package mixer

import (
	"context"
	"fmt"
	"strings"
	"unicode/utf8"
	"unsafe"

	"google.golang.org/grpc"

	mixerv1 "github.com/sidemix/sidemix/api/mixer/v1"
)

// reportHandler is the Report method's gRPC handler: the generated one
// with the request taken from the vtprotobuf pool and given back once
// Report has returned. A request of 1000 bags decoded into a fresh
// message allocated each bag's message and each of its fields' slices
// (some 13,000 allocations per batch); a pooled one decodes into the
// previous request's, and allocates only the strings it copies (see
// reportBody). Report keeps nothing of the request: the bags it decodes
// hold its strings, and instances hold those.
func (g *service) reportHandler(_ any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	in := mixerv1.ReportRequestFromVTPool()
	defer in.ReturnToVTPool()
	body := &reportBody{ReportRequest: in}
	if err := dec(body); err != nil {
		return nil, err
	}
	// The request is the pool's: Report may reset each bag's message once
	// it is done with it, and has the words' UTF-8 checked already.
	opts := reportOptions{owned: true, utf8Checked: true, utf8Err: body.utf8Err}
	if interceptor == nil {
		return g.report(ctx, in, opts)
	}
	info := &grpc.UnaryServerInfo{Server: g, FullMethod: mixerv1.Mixer_Report_FullMethodName}
	return interceptor(ctx, in, info, func(ctx context.Context, req any) (any, error) {
		r := req.(*mixerv1.ReportRequest)
		if r != in { // an interceptor replaced it
			return g.Report(ctx, r)
		}
		return g.report(ctx, r, opts)
	})
}

// reportBody is a ReportRequest as the codec (internal/vtcodec) decodes
// it for reportHandler: its words and bytes pointing into the request's
// body first (UnmarshalVTUnsafe), then copied, many to an array, into
// arrays of reportArena bytes. A batch's words, some 4,500 strings of a
// few dozen bytes for 1000 bags, are then some 35 allocations instead of
// one each, and a word kept long (a metric's label value) keeps at most
// its array alive, not the batch's body. Each word is checked for UTF-8
// as it is copied, while it is in the CPU's cache, instead of in a pass
// of its own (reportRequestUTF8).
type reportBody struct {
	*mixerv1.ReportRequest
	// utf8Err names the first word that is not valid UTF-8, as
	// reportRequestUTF8 would; nil when all are.
	utf8Err error
}

// reportArena is the size of the arrays reportBody copies words into;
// longer words get their own.
const reportArena = 4 << 10

// UnmarshalVT decodes b, which the caller reuses once it returns, into
// the request. The generated unsafe decoder makes DefaultWords, each
// bag's Words and BytesValues point into b; nothing else does.
func (r *reportBody) UnmarshalVT(b []byte) error {
	r.utf8Err = nil
	if err := r.ReportRequest.UnmarshalVTUnsafe(b); err != nil {
		return err
	}
	var a wordArena
	for i, w := range r.DefaultWords {
		if r.utf8Err == nil && !utf8.ValidString(w) {
			r.utf8Err = fmt.Errorf("default_words[%d] is not valid UTF-8: %q", i, w)
		}
		r.DefaultWords[i] = a.copy(w)
	}
	for b, m := range r.Attributes {
		for i, w := range m.Words {
			if r.utf8Err == nil && !utf8.ValidString(w) {
				r.utf8Err = fmt.Errorf("attributes[%d].words[%d] is not valid UTF-8: %q", b, i, w)
			}
			m.Words[i] = a.copy(w)
		}
		for i, v := range m.BytesValues {
			m.BytesValues[i] = unsafe.Slice(unsafe.StringData(a.copy(unsafe.String(unsafe.SliceData(v), len(v)))), len(v))
		}
	}
	return nil
}

// wordArena copies strings into shared arrays: the arrays of
// strings.Builders, which, unlike a []byte of the same size, are not
// cleared first (each byte is written once, by the copy).
type wordArena struct{ b strings.Builder }

func (a *wordArena) copy(s string) string {
	switch {
	case len(s) == 0:
		return ""
	case len(s) > reportArena/8:
		return strings.Clone(s)
	}
	if a.b.Cap()-a.b.Len() < len(s) {
		a.b = strings.Builder{}
		a.b.Grow(reportArena)
	}
	start := a.b.Len()
	a.b.WriteString(s) // within the capacity: the array does not move
	return a.b.String()[start:]
}
