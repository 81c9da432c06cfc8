package mixer

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	mixerv1 "github.com/sidemix/sidemix/api/mixer/v1"
	"github.com/sidemix/sidemix/attribute"
)

func testdata(t *testing.T, names ...string) string {
	t.Helper()
	files := map[string]string{}
	for _, n := range names {
		b, err := readTestdata(n)
		if err != nil {
			t.Fatal(err)
		}
		files[n] = string(b)
	}
	return writeConfig(t, files)
}

func errorInfoOf(t *testing.T, p *mixerv1.CheckResponse_PreconditionResult) *errdetails.ErrorInfo {
	t.Helper()
	for _, d := range p.GetStatus().GetDetails() {
		var ei errdetails.ErrorInfo
		if d.UnmarshalTo(&ei) == nil {
			return &ei
		}
	}
	return nil
}

func TestCheckDenyRule(t *testing.T) {
	e := start(t, testdata(t, "deny.yaml"), Config{})

	resp := e.check(pathBag("/admin/users"))
	pre := resp.GetPrecondition()
	if got := codes.Code(pre.GetStatus().GetCode()); got != codes.PermissionDenied {
		t.Fatalf("/admin: code %v, want PermissionDenied", got)
	}
	if got := pre.GetStatus().GetMessage(); got != "admin is closed" {
		t.Errorf("/admin: message %q", got)
	}
	if !slices.Contains(refNames(pre.GetReferencedAttributes()), attribute.RequestPath) {
		t.Errorf("/admin: referenced %v, want %s among them", refNames(pre.GetReferencedAttributes()), attribute.RequestPath)
	}
	// The denier's defaults bound the reuse of its denial.
	if pre.GetValidDuration().AsDuration() != 5*time.Second || pre.GetValidUseCount() != 1000 {
		t.Errorf("/admin: valid for %v, %d uses; want the denier's 5s, 1000", pre.GetValidDuration().AsDuration(), pre.GetValidUseCount())
	}
	if ei := errorInfoOf(t, pre); ei == nil || ei.GetReason() != reasonPolicyDenied ||
		ei.GetMetadata()["rule"] != "no-admin" || ei.GetMetadata()["handler"] != "deny-admin" {
		t.Errorf("/admin: error info %v, want rule no-admin, handler deny-admin", ei)
	}

	resp = e.check(pathBag("/hello"))
	pre = resp.GetPrecondition()
	if got := codes.Code(pre.GetStatus().GetCode()); got != codes.OK {
		t.Fatalf("/hello: code %v (%s), want OK", got, pre.GetStatus().GetMessage())
	}
	if !slices.Contains(refNames(pre.GetReferencedAttributes()), attribute.RequestPath) {
		t.Errorf("/hello: referenced %v", refNames(pre.GetReferencedAttributes()))
	}
	if pre.GetValidDuration().AsDuration() != DefaultValidDuration || pre.GetValidUseCount() != DefaultValidUseCount {
		t.Errorf("/hello: valid for %v, %d uses; want the defaults", pre.GetValidDuration().AsDuration(), pre.GetValidUseCount())
	}
	rd := pre.GetRouteDirective()
	if len(rd.GetRequestHeaderOperations()) != 1 || rd.GetRequestHeaderOperations()[0].GetName() != "x-checked-by" ||
		rd.GetRequestHeaderOperations()[0].GetValue() != "sidemix" {
		t.Errorf("/hello: request header operations %v", rd.GetRequestHeaderOperations())
	}
	if ops := rd.GetResponseHeaderOperations(); len(ops) != 1 || ops[0].GetValue() != "/hello" ||
		ops[0].GetOperation() != mixerv1.HeaderOperation_APPEND {
		t.Errorf("/hello: response header operations %v", ops)
	}

	// The absence of request.path is referenced too: a cache must not
	// reuse the answer for a bag that has one.
	resp = e.check(attribute.NewBuilder(0).Build())
	if got := codes.Code(resp.GetPrecondition().GetStatus().GetCode()); got != codes.OK {
		t.Errorf("empty bag: code %v", got)
	}
	found := false
	for _, m := range resp.GetPrecondition().GetReferencedAttributes().GetAttributeMatches() {
		if m.GetName() == attribute.RequestPath && m.GetCondition() == mixerv1.ReferencedAttributes_ABSENCE {
			found = true
		}
	}
	if !found {
		t.Errorf("empty bag: referenced %v, want request.path ABSENCE", resp.GetPrecondition().GetReferencedAttributes())
	}

	reg := e.srv.Registry()
	if got := metric(t, reg, "sidemix_mixer_check_requests_total", "code", "PERMISSION_DENIED"); got != 1 {
		t.Errorf("check_requests_total{PERMISSION_DENIED} = %v, want 1", got)
	}
	if got := metric(t, reg, "sidemix_mixer_check_requests_total", "code", "OK"); got != 2 {
		t.Errorf("check_requests_total{OK} = %v, want 2", got)
	}
}

func TestCheckCombinesResults(t *testing.T) {
	e := start(t, testdata(t, "combine.yaml"), Config{})

	pre := e.check(pathBag("/")).GetPrecondition()
	if got := codes.Code(pre.GetStatus().GetCode()); got != codes.OK {
		t.Fatalf("code %v (%s), want OK", got, pre.GetStatus().GetMessage())
	}
	if d, n := pre.GetValidDuration().AsDuration(), pre.GetValidUseCount(); d != 3*time.Second || n != 50 {
		t.Errorf("valid for %v, %d uses; want the least of the handlers: 3s, 50", d, n)
	}

	// First denial in rule order wins however the handlers race.
	for range 5 {
		pre := e.check(pathBag("/both")).GetPrecondition()
		if got := codes.Code(pre.GetStatus().GetCode()); got != codes.PermissionDenied ||
			pre.GetStatus().GetMessage() != "first rule says no" {
			t.Fatalf("/both: %v %q, want PermissionDenied \"first rule says no\"", got, pre.GetStatus().GetMessage())
		}
		if d := pre.GetValidDuration().AsDuration(); d != 2*time.Second {
			t.Errorf("/both: valid for %v, want 2s", d)
		}
	}
}

func TestCheckFailsClosed(t *testing.T) {
	const timeout = 300 * time.Millisecond
	e := start(t, testdata(t, "failing.yaml"), Config{CheckTimeout: timeout})
	reg := e.srv.Registry()

	cases := []struct {
		path, handler, reason, message string
	}{
		{"/slow", "sleepy", reasonTimeout, `handler "sleepy" did not answer in time`},
		{"/error", "erring", reasonHandlerError, `handler "erring" failed: backend refused`},
		{"/broken", "broken", reasonUnavailable, `handler "broken" unavailable: backend is down`},
	}
	for _, c := range cases {
		t.Run(strings.TrimPrefix(c.path, "/"), func(t *testing.T) {
			began := time.Now()
			pre := e.check(pathBag(c.path)).GetPrecondition()
			took := time.Since(began)
			if got := codes.Code(pre.GetStatus().GetCode()); got != codes.Unavailable {
				t.Fatalf("code %v (%s), want Unavailable", got, pre.GetStatus().GetMessage())
			}
			if !strings.Contains(pre.GetStatus().GetMessage(), c.message) {
				t.Errorf("message %q, want it to contain %q", pre.GetStatus().GetMessage(), c.message)
			}
			if took > timeout+700*time.Millisecond {
				t.Errorf("took %v with a check timeout of %v", took, timeout)
			}
			if d, n := pre.GetValidDuration().AsDuration(), pre.GetValidUseCount(); d > time.Second || n != 1 {
				t.Errorf("a failure may be reused for %v, %d times; want ≤1s, once", d, n)
			}
			if ei := errorInfoOf(t, pre); ei == nil || ei.GetReason() != reasonHandlerFailed || ei.GetMetadata()["handler"] != c.handler {
				t.Errorf("error info %v", ei)
			}
			if got := metric(t, reg, "sidemix_mixer_dispatch_errors_total", "handler", c.handler, "reason", c.reason); got != 1 {
				t.Errorf("dispatch_errors_total{%s,%s} = %v, want 1", c.handler, c.reason, got)
			}
		})
	}
	if got := metric(t, reg, "sidemix_mixer_handler_create_failures_total", "handler", "broken"); got != 1 {
		t.Errorf("handler_create_failures_total{broken} = %v, want 1", got)
	}
	if !strings.Contains(e.logs.String(), "backend is down") {
		t.Errorf("the create failure was not logged:\n%s", e.logs)
	}
	// The caller's deadline counts too.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	began := time.Now()
	resp, err := e.client.Check(ctx, e.checkReq(pathBag("/slow")))
	took := time.Since(began)
	// The mixer answers UNAVAILABLE at the caller's deadline; whether that
	// answer or the client's own DeadlineExceeded arrives first is a race.
	switch {
	case took > time.Second:
		t.Errorf("short caller deadline: answered after %v", took)
	case err != nil && status.Code(err) != codes.DeadlineExceeded:
		t.Errorf("short caller deadline: %v", err)
	case err == nil && codes.Code(resp.GetPrecondition().GetStatus().GetCode()) != codes.Unavailable:
		t.Errorf("short caller deadline: %v", resp.GetPrecondition().GetStatus())
	}
}

func TestQuotaExactUnderConcurrency(t *testing.T) {
	const limit, callers = 7, 50
	e := start(t, testdata(t, "quota.yaml"), Config{CheckTimeout: 5 * time.Second})

	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, exhausted := 0, 0
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp := e.check(pathBag("/limited"))
			pre := resp.GetPrecondition()
			q := resp.GetQuotas()["requestcount"]
			mu.Lock()
			defer mu.Unlock()
			switch codes.Code(pre.GetStatus().GetCode()) {
			case codes.OK:
				ok++
				if q.GetGrantedAmount() != 1 {
					t.Errorf("allowed with %d granted", q.GetGrantedAmount())
				}
			case codes.ResourceExhausted:
				exhausted++
				if pre.GetStatus().GetMessage() != `quota "requestcount" exhausted` {
					t.Errorf("message %q", pre.GetStatus().GetMessage())
				}
				if q.GetGrantedAmount() != 0 || q.GetValidDuration().AsDuration() <= 0 {
					t.Errorf("exhausted quota result %v", q)
				}
			default:
				t.Errorf("code %v: %s", pre.GetStatus().GetCode(), pre.GetStatus().GetMessage())
			}
			// The client learns what it was charged and may reuse an
			// allowing precondition (asking for the quota by name); an
			// exhausted one is never reusable.
			exhaustedNow := codes.Code(pre.GetStatus().GetCode()) == codes.ResourceExhausted
			if reusable := pre.GetValidUseCount() > 1 && pre.GetValidDuration().AsDuration() > 0; reusable == exhaustedNow {
				t.Errorf("exhausted %v, precondition reusable for %v, %d uses", exhaustedNow, pre.GetValidDuration().AsDuration(), pre.GetValidUseCount())
			}
			if ch := resp.GetQuotaCharges(); len(ch) != 1 || ch[0].GetQuota() != "requestcount" || ch[0].GetCharge() != 1 {
				t.Errorf("quota charges %v, want requestcount: 1", ch)
			}
			if !slices.Contains(refNames(pre.GetReferencedAttributes()), attribute.RequestPath) {
				t.Errorf("precondition referenced %v, want the quota rule's match among them", refNames(pre.GetReferencedAttributes()))
			}
			if !slices.Contains(refNames(q.GetReferencedAttributes()), attribute.RequestPath) {
				t.Errorf("quota referenced %v", refNames(q.GetReferencedAttributes()))
			}
		}()
	}
	wg.Wait()
	if ok != limit || exhausted != callers-limit {
		t.Fatalf("%d allowed, %d exhausted; want %d, %d", ok, exhausted, limit, callers-limit)
	}
	// Paths outside the rule draw on nothing, and say what they looked at
	// to know: a cached answer for /free must not serve /limited.
	resp := e.check(pathBag("/free"))
	if resp.GetPrecondition().GetStatus().GetCode() != 0 || len(resp.GetQuotas()) != 0 || len(resp.GetQuotaCharges()) != 0 {
		t.Errorf("/free: %v", resp)
	}
	if !slices.Contains(refNames(resp.GetPrecondition().GetReferencedAttributes()), attribute.RequestPath) {
		t.Errorf("/free: precondition referenced %v", refNames(resp.GetPrecondition().GetReferencedAttributes()))
	}
}

func TestQuotaNamedAndDeduplicated(t *testing.T) {
	e := start(t, testdata(t, "quota.yaml"), Config{})
	ask := func(dedup string, quotas map[string]*mixerv1.CheckRequest_QuotaParams) *mixerv1.CheckResponse {
		t.Helper()
		req := e.checkReq(pathBag("/limited/named"))
		req.DeduplicationId, req.Quotas = dedup, quotas
		resp, err := e.client.Check(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	five := map[string]*mixerv1.CheckRequest_QuotaParams{"requestcount": {Amount: 5}}
	resp := ask("a", five)
	if g := resp.GetQuotas()["requestcount"].GetGrantedAmount(); g != 5 {
		t.Fatalf("granted %d of 5", g)
	}
	// Named quotas: the client manages them, the precondition stays reusable.
	if resp.GetPrecondition().GetValidUseCount() != DefaultValidUseCount {
		t.Errorf("use count %d with named quotas", resp.GetPrecondition().GetValidUseCount())
	}
	// A retry with the same deduplication id is not charged again.
	if g := ask("a", five).GetQuotas()["requestcount"].GetGrantedAmount(); g != 5 {
		t.Fatalf("retry granted %d", g)
	}
	// 2 are left: all-or-nothing fails, best effort gets them.
	resp = ask("b", map[string]*mixerv1.CheckRequest_QuotaParams{"requestcount": {Amount: 3}})
	if g := resp.GetQuotas()["requestcount"].GetGrantedAmount(); g != 0 ||
		codes.Code(resp.GetPrecondition().GetStatus().GetCode()) != codes.ResourceExhausted {
		t.Fatalf("all-or-nothing 3 of 2: granted %d, %v", g, resp.GetPrecondition().GetStatus())
	}
	resp = ask("c", map[string]*mixerv1.CheckRequest_QuotaParams{"requestcount": {Amount: 3, BestEffort: true}})
	if g := resp.GetQuotas()["requestcount"].GetGrantedAmount(); g != 2 ||
		codes.Code(resp.GetPrecondition().GetStatus().GetCode()) != codes.OK {
		t.Fatalf("best effort 3 of 2: granted %d, %v", g, resp.GetPrecondition().GetStatus())
	}
	// A quota no rule limits is granted in full; unnamed ones are not drawn.
	resp = ask("d", map[string]*mixerv1.CheckRequest_QuotaParams{"unlimited": {Amount: 9}})
	if g := resp.GetQuotas()["unlimited"].GetGrantedAmount(); g != 9 || len(resp.GetQuotas()) != 1 {
		t.Fatalf("unlimited: %v", resp.GetQuotas())
	}
	// Many quotas in one request (more than are looked up by scanning):
	// each answered, the limited one limited.
	many := map[string]*mixerv1.CheckRequest_QuotaParams{"requestcount": {Amount: 1}}
	for i := range 3 * maxGrantScan {
		many[fmt.Sprintf("unlimited-%d", i)] = &mixerv1.CheckRequest_QuotaParams{Amount: int64(i + 1)}
	}
	resp = ask("e", many)
	if len(resp.GetQuotas()) != len(many) || codes.Code(resp.GetPrecondition().GetStatus().GetCode()) != codes.ResourceExhausted {
		t.Fatalf("%d quotas: %d results, %v", len(many), len(resp.GetQuotas()), resp.GetPrecondition().GetStatus())
	}
	for name, q := range resp.GetQuotas() {
		want := many[name].GetAmount()
		if name == "requestcount" {
			want = 0 // none left
		}
		if q.GetGrantedAmount() != want {
			t.Errorf("%s: granted %d, want %d", name, q.GetGrantedAmount(), want)
		}
	}
}

func TestCheckRejectsMalformedBags(t *testing.T) {
	e := start(t, testdata(t, "deny.yaml"), Config{})
	dictLen := uint32(attribute.DefaultDictionary().Len())
	pathIdx := int32(slices.Index(attribute.DefaultDictionary().Words(), attribute.RequestPath))
	if pathIdx < 0 {
		t.Fatal("request.path is not in the dictionary")
	}
	bad := map[string]*mixerv1.CheckRequest{
		"global word out of range": {GlobalWordCount: dictLen, Attributes: &mixerv1.CompressedAttributes{
			StringNames: []int32{int32(dictLen) + 5}, StringValues: []int32{0}}},
		"local word out of range": {GlobalWordCount: dictLen, Attributes: &mixerv1.CompressedAttributes{
			Words: []string{"x"}, StringNames: []int32{-3}, StringValues: []int32{-1}}},
		"names without values": {GlobalWordCount: dictLen, Attributes: &mixerv1.CompressedAttributes{
			StringNames: []int32{pathIdx, pathIdx}, StringValues: []int32{-1}, Words: []string{"/a"}}},
		"newer dictionary": {GlobalWordCount: dictLen + 100, Attributes: &mixerv1.CompressedAttributes{}},
		"wrong kind": {GlobalWordCount: dictLen, Attributes: &mixerv1.CompressedAttributes{
			Int64Names: []int32{pathIdx}, Int64Values: []int64{7}}},
		"map without values": {GlobalWordCount: dictLen, Attributes: &mixerv1.CompressedAttributes{
			StringMapNames: []int32{pathIdx}}},
		"nil map": {GlobalWordCount: dictLen, Attributes: &mixerv1.CompressedAttributes{
			StringMapNames: []int32{pathIdx}, StringMapValues: []*mixerv1.StringMap{nil}}},
	}
	for name, req := range bad {
		_, err := e.client.Check(context.Background(), req)
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v, want InvalidArgument", name, err)
		}
	}
	// A missing bag is an empty one.
	resp, err := e.client.Check(context.Background(), &mixerv1.CheckRequest{})
	if err != nil || resp.GetPrecondition().GetStatus().GetCode() != 0 {
		t.Errorf("no attributes: %v %v", resp, err)
	}
	_, err = e.client.Report(context.Background(), &mixerv1.ReportRequest{GlobalWordCount: dictLen,
		Attributes: []*mixerv1.CompressedAttributes{{StringNames: []int32{-9}, StringValues: []int32{0}}}})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("malformed report: %v, want InvalidArgument", err)
	}

	// Garbage of every shape: errors, never a crash.
	seed := uint64(1)
	next := func(n int) int {
		seed = seed*6364136223846793005 + 1442695040888963407
		return int(seed>>33) % n
	}
	idx := func() int32 { return int32(next(int(dictLen)+20) - 10) }
	for range 300 {
		m := &mixerv1.CompressedAttributes{}
		for range next(4) {
			m.Words = append(m.Words, "w")
		}
		for range next(4) {
			m.StringNames = append(m.StringNames, idx())
		}
		for range next(4) {
			m.StringValues = append(m.StringValues, idx())
		}
		for range next(3) {
			m.BoolNames = append(m.BoolNames, idx())
			m.BoolValues = append(m.BoolValues, true)
		}
		for range next(3) {
			m.StringMapNames = append(m.StringMapNames, idx())
			m.StringMapValues = append(m.StringMapValues, &mixerv1.StringMap{Keys: []int32{idx()}, Values: []int32{idx(), idx()}[:next(3)]})
		}
		for range next(2) {
			m.Deleted = append(m.Deleted, idx())
		}
		_, err := e.client.Check(context.Background(), &mixerv1.CheckRequest{Attributes: m, GlobalWordCount: uint32(next(int(dictLen) + 2))})
		if c := status.Code(err); c != codes.OK && c != codes.InvalidArgument {
			t.Fatalf("%v: %v", m, err)
		}
	}
	// Still serving.
	if got := codes.Code(e.check(pathBag("/admin")).GetPrecondition().GetStatus().GetCode()); got != codes.PermissionDenied {
		t.Errorf("after garbage: %v", got)
	}
	if got := metric(t, e.srv.Registry(), "sidemix_mixer_check_requests_total", "code", "INVALID_ARGUMENT"); got < float64(len(bad)) {
		t.Errorf("check_requests_total{INVALID_ARGUMENT} = %v", got)
	}
}
