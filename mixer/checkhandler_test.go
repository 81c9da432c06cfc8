package mixer

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	mixerv1 "github.com/sidemix/sidemix/api/mixer/v1"
	"github.com/sidemix/sidemix/attribute"
	"github.com/sidemix/sidemix/internal/rawproto"
)

// Check requests are decoded into pooled messages whose strings point into
// each request's body: concurrent Checks of different sizes each get the
// answer to their own bag, down to the path echoed in a response header
// after the request went back to the pool.
func TestPooledCheckRequestsKeepTheirOwnAnswers(t *testing.T) {
	e := start(t, testdata(t, "deny.yaml"), Config{})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Go(func() {
			for i := range 100 {
				path := fmt.Sprintf("/p/%d/%d", w, i)
				if i%3 == 0 {
					path = fmt.Sprintf("/admin/%d/%d", w, i)
				}
				b := attribute.NewBuilder(8).SetString(attribute.RequestPath, path)
				// Bags of varying sizes: the pooled lists grow and shrink.
				for k := range (w + i) % 5 {
					b.SetString(attribute.SourceName, strings.Repeat("s", k+1)).
						SetInt64(attribute.ResponseCode, int64(200+k))
				}
				req := e.checkReq(b.Build())
				req.DeduplicationId = path
				resp, err := e.client.Check(context.Background(), req)
				if err != nil {
					errs <- err
					return
				}
				code := codes.Code(resp.GetPrecondition().GetStatus().GetCode())
				if want := codes.OK; strings.HasPrefix(path, "/admin") {
					if code != codes.PermissionDenied {
						errs <- fmt.Errorf("%s: %v, want PermissionDenied", path, code)
						return
					}
					continue
				} else if code != want {
					errs <- fmt.Errorf("%s: %v", path, code)
					return
				}
				ops := resp.GetPrecondition().GetRouteDirective().GetResponseHeaderOperations()
				if len(ops) != 1 || ops[0].GetValue() != path {
					errs <- fmt.Errorf("%s: response header operations %v", path, ops)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// The generated decoder does not refuse strings that are not UTF-8, as
// protobuf-go's does; the mixer does, with InvalidArgument. The requests
// are encoded by the generated code (which does not check either) and sent
// as they are.
func TestCheckRejectsInvalidUTF8(t *testing.T) {
	e := start(t, testdata(t, "deny.yaml"), Config{})
	conn, err := grpc.NewClient(e.srv.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawproto.NewCodec())))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	call := func(method string, msg interface{ MarshalVT() ([]byte, error) }) error {
		body, err := msg.MarshalVT()
		if err != nil {
			t.Fatal(err)
		}
		var out rawproto.Message
		return conn.Invoke(context.Background(), method, rawproto.Message(body), &out)
	}
	const bad = "/a\xff"
	attrs, n := e.encode(pathBag("/ok"))
	// The Encoder sends only UTF-8 (attribute's doc): a client that does
	// not is made by changing the word on the wire.
	badAttrs, _ := e.encode(pathBag("/ok"))
	if i := slices.Index(badAttrs.Words, "/ok"); i >= 0 {
		badAttrs.Words[i] = bad
	} else {
		t.Fatalf("no message word /ok in %v", badAttrs.Words)
	}
	checks := map[string]*mixerv1.CheckRequest{
		"word":             {Attributes: badAttrs, GlobalWordCount: n},
		"deduplication id": {Attributes: attrs, GlobalWordCount: n, DeduplicationId: "id\xc3"},
		"quota name":       {Attributes: attrs, GlobalWordCount: n, Quotas: map[string]*mixerv1.CheckRequest_QuotaParams{"q\xfe": {Amount: 1}}},
	}
	for name, req := range checks {
		err := call(mixerv1.Mixer_Check_FullMethodName, req)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "UTF-8") {
			t.Errorf("check, %s not UTF-8: %v, want InvalidArgument naming UTF-8", name, err)
		}
	}
	if err := call(mixerv1.Mixer_Check_FullMethodName, &mixerv1.CheckRequest{Attributes: attrs, GlobalWordCount: n}); err != nil {
		t.Errorf("valid check through the same client: %v", err)
	}
	reports := map[string]*mixerv1.ReportRequest{
		"default word": {DefaultWords: []string{bad}, GlobalWordCount: n, Attributes: []*mixerv1.CompressedAttributes{{}}},
		"bag word":     {GlobalWordCount: n, Attributes: []*mixerv1.CompressedAttributes{attrs, badAttrs}},
	}
	for name, req := range reports {
		err := call(mixerv1.Mixer_Report_FullMethodName, req)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "UTF-8") {
			t.Errorf("report, %s not UTF-8: %v, want InvalidArgument naming UTF-8", name, err)
		}
	}
}

// The first quota's result comes with the answer's allocation, the others
// with their own: with two limited quotas each result keeps its own
// window, and an implicit charge list names both.
func TestTwoQuotasKeepTheirOwnWindows(t *testing.T) {
	dir := writeConfig(t, map[string]string{"q.yaml": `apiVersion: sidemix.dev/v1
kind: Handler
metadata: {name: limits}
spec:
  adapter: memquota
  params:
    quotas:
    - {name: hourly, maxAmount: 7, validDuration: 1h}
    - {name: minutely, maxAmount: 5, validDuration: 1m}
---
apiVersion: sidemix.dev/v1
kind: Instance
metadata: {name: hourly}
spec:
  template: quota
---
apiVersion: sidemix.dev/v1
kind: Instance
metadata: {name: minutely}
spec:
  template: quota
---
apiVersion: sidemix.dev/v1
kind: Rule
metadata: {name: both}
spec:
  actions:
  - handler: limits
    instances: [hourly, minutely]
`})
	e := start(t, dir, Config{})
	for n := 1; n <= 2; n++ {
		resp := e.check(pathBag("/x"))
		if c := codes.Code(resp.GetPrecondition().GetStatus().GetCode()); c != codes.OK {
			t.Fatalf("check %d: %v", n, resp.GetPrecondition().GetStatus())
		}
		// A rolling window's usage frees at a bucket boundary: the reset
		// is about the window, give or take a bucket.
		for name, want := range map[string]struct {
			limit      int64
			resetRange [2]time.Duration
		}{"hourly": {7, [2]time.Duration{50 * time.Minute, 70 * time.Minute}}, "minutely": {5, [2]time.Duration{50 * time.Second, 70 * time.Second}}} {
			q := resp.GetQuotas()[name]
			reset := q.GetReset_().AsDuration()
			if q.GetLimit() != want.limit || q.GetRemaining() != want.limit-int64(n) || reset < want.resetRange[0] || reset > want.resetRange[1] {
				t.Errorf("check %d, %s: limit %d remaining %d reset %v; want limit %d remaining %d, reset in %v",
					n, name, q.GetLimit(), q.GetRemaining(), reset, want.limit, want.limit-int64(n), want.resetRange)
			}
		}
		var charged []string
		for _, c := range resp.GetQuotaCharges() {
			if c.GetCharge() != 1 {
				t.Errorf("check %d: charge %v", n, c)
			}
			charged = append(charged, c.GetQuota())
		}
		if slices.Sort(charged); !slices.Equal(charged, []string{"hourly", "minutely"}) {
			t.Errorf("check %d: charges %v", n, resp.GetQuotaCharges())
		}
	}
}
