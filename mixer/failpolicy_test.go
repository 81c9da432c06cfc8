package mixer

import (
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"

	mixerv1 "github.com/sidemix/sidemix/api/mixer/v1"
)

// counter reads one metric series before and after an action.
type counter struct {
	t      *testing.T
	e      *env
	name   string
	labels []string
	before float64
}

func (e *env) counter(t *testing.T, name string, labels ...string) *counter {
	return &counter{t: t, e: e, name: name, labels: labels, before: metric(t, e.srv.Registry(), name, labels...)}
}

func (c *counter) delta() float64 {
	c.t.Helper()
	return metric(c.t, c.e.srv.Registry(), c.name, c.labels...) - c.before
}

func (c *counter) want(n float64) {
	c.t.Helper()
	if got := c.delta(); got != n {
		c.t.Errorf("%s%v rose by %v, want %v", c.name, c.labels, got, n)
	}
}

func TestFailPolicy(t *testing.T) {
	e := start(t, testdata(t, "failpolicy.yaml"), Config{CheckTimeout: 200 * time.Millisecond})

	cases := []struct {
		path, rule, handler string
		reason              string // of dispatch_errors_total
		open                bool
		quota               bool
	}{
		{"/open/slow", "open-slow", "sleepy", reasonTimeout, true, false},
		{"/open/error", "open-error", "erring", reasonHandlerError, true, false},
		{"/open/broken", "open-broken", "broken", reasonUnavailable, true, false},
		{"/closed/error", "closed-error", "erring", reasonHandlerError, false, false},
		{"/open/quota-slow", "open-quota-slow", "quota-sleepy", reasonTimeout, true, true},
		{"/open/quota-error", "open-quota-error", "quota-erring", reasonHandlerError, true, true},
		{"/open/quota-broken", "open-quota-broken", "broken", reasonUnavailable, true, true},
		{"/closed/quota-error", "closed-quota-error", "quota-erring", reasonHandlerError, false, true},
		{"/closed/quota-broken", "closed-quota-broken", "broken", reasonUnavailable, false, true},
		// A ContextBound handler, called on the request's goroutine, fails
		// the same way.
		{"/open/quota-slow-inline", "open-quota-slow-inline", "quota-sleepy-inline", reasonTimeout, true, true},
		{"/closed/quota-panic-inline", "closed-quota-panic-inline", "quota-panicky-inline", reasonHandlerError, false, true},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(strings.TrimPrefix(c.path, "/"), "/", "-"), func(t *testing.T) {
			denial := denyUnavailable
			if c.open {
				denial = denyFailOpen
			}
			errs := e.counter(t, "sidemix_mixer_dispatch_errors_total", "handler", c.handler, "reason", c.reason)
			denials := e.counter(t, "sidemix_mixer_denials_total", "rule", c.rule, "handler", c.handler, "reason", denial)
			ruleErrs := e.counter(t, "sidemix_mixer_rule_checks_total", "rule", c.rule, "result", "error")

			resp := e.check(pathBag(c.path))
			pre := resp.GetPrecondition()
			code := codes.Code(pre.GetStatus().GetCode())
			switch {
			case c.open && code != codes.OK:
				t.Fatalf("fail-open rule: code %v (%s), want OK", code, pre.GetStatus().GetMessage())
			case !c.open && code != codes.Unavailable:
				t.Fatalf("fail-closed rule: code %v (%s), want Unavailable", code, pre.GetStatus().GetMessage())
			}
			if !c.open {
				if ei := errorInfoOf(t, pre); ei == nil || ei.GetReason() != reasonHandlerFailed ||
					ei.GetMetadata()["handler"] != c.handler || ei.GetMetadata()["rule"] != c.rule {
					t.Errorf("error info %v", ei)
				}
			}
			// Open or closed, the answer rests on a failure.
			if d, n := pre.GetValidDuration().AsDuration(), pre.GetValidUseCount(); d > maxErrorValidDuration || n != 1 {
				t.Errorf("may be reused for %v, %d times; want ≤%v, once", d, n, maxErrorValidDuration)
			}
			if c.quota {
				q := resp.GetQuotas()["requestcount"]
				want := int64(0)
				if c.open {
					want = 1 // a fail-open quota grants what was asked
				}
				if q.GetGrantedAmount() != want {
					t.Errorf("granted %d, want %d", q.GetGrantedAmount(), want)
				}
				if ch := resp.GetQuotaCharges(); len(ch) != 1 || ch[0].GetQuota() != "requestcount" {
					t.Errorf("quota charges %v", ch)
				}
			}
			errs.want(1)
			denials.want(1)
			ruleErrs.want(1)
		})
	}

	// A quota named by the client fails open just the same, with the
	// amount asked.
	req := e.checkReq(pathBag("/open/quota-error"))
	req.Quotas = map[string]*mixerv1.CheckRequest_QuotaParams{"requestcount": {Amount: 4}}
	resp, err := e.client.Check(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	if code := resp.GetPrecondition().GetStatus().GetCode(); code != 0 || resp.GetQuotas()["requestcount"].GetGrantedAmount() != 4 {
		t.Errorf("named quota, fail open: code %v, quotas %v", code, resp.GetQuotas())
	}
	if len(resp.GetQuotaCharges()) != 0 {
		t.Errorf("named quotas: the answer repeats charges %v", resp.GetQuotaCharges())
	}
}

func TestShadowRules(t *testing.T) {
	e := start(t, testdata(t, "shadow.yaml"), Config{})

	t.Run("never denies", func(t *testing.T) {
		shadowDeny := e.counter(t, "sidemix_shadow_denials_total", "rule", "shadow-deny")
		shadowQuota := e.counter(t, "sidemix_shadow_denials_total", "rule", "shadow-quota-deny")
		shadowErr := e.counter(t, "sidemix_shadow_denials_total", "rule", "shadow-error")
		ruleErr := e.counter(t, "sidemix_mixer_rule_checks_total", "rule", "shadow-error", "result", "error")
		ruleDeny := e.counter(t, "sidemix_mixer_rule_checks_total", "rule", "shadow-deny", "result", "deny")
		denials := e.counter(t, "sidemix_mixer_denials_total")
		errs := e.counter(t, "sidemix_mixer_dispatch_errors_total")

		resp := e.check(pathBag("/shadow"))
		pre := resp.GetPrecondition()
		if code := codes.Code(pre.GetStatus().GetCode()); code != codes.OK {
			t.Fatalf("code %v (%s), want OK", code, pre.GetStatus().GetMessage())
		}
		// The shadow handlers' failures do not shorten the answer's life;
		// the shadow denier's bounds do (it would be asked as often as if
		// it enforced).
		if d, n := pre.GetValidDuration().AsDuration(), pre.GetValidUseCount(); d != 5*time.Second || n != 1000 {
			t.Errorf("valid for %v, %d uses; want the denier's 5s, 1000", d, n)
		}
		// A quota only shadow rules draw on is granted in full, and named
		// so that the client asks for it next time.
		if g := resp.GetQuotas()["shadowcount"].GetGrantedAmount(); g != 1 {
			t.Errorf("shadowcount granted %d, want 1", g)
		}
		if ch := resp.GetQuotaCharges(); len(ch) != 1 || ch[0].GetQuota() != "shadowcount" || ch[0].GetCharge() != 1 {
			t.Errorf("quota charges %v", ch)
		}
		shadowDeny.want(1)
		shadowQuota.want(1)
		shadowErr.want(0)
		ruleErr.want(1)
		ruleDeny.want(1)
		denials.want(0)
		errs.want(2) // erring and quota-erring, counted as the backend errors they are
		if !strings.Contains(e.logs.String(), "shadow rule would deny") {
			t.Errorf("no debug log of the shadow denial:\n%s", e.logs)
		}
	})

	t.Run("copies count alike", func(t *testing.T) {
		const requests, limit = 40, 5
		var wg sync.WaitGroup
		var mu sync.Mutex
		allowed, exhausted := 0, 0
		for range requests {
			wg.Add(1)
			go func() {
				defer wg.Done()
				code := codes.Code(e.check(pathBag("/q")).GetPrecondition().GetStatus().GetCode())
				mu.Lock()
				defer mu.Unlock()
				switch code {
				case codes.OK:
					allowed++
				case codes.ResourceExhausted:
					exhausted++
				default:
					t.Errorf("code %v", code)
				}
			}()
		}
		wg.Wait()
		// shadow-same shares limits-a with the enforcing rule: had it
		// charged again, fewer than the limit would pass.
		if allowed != limit || exhausted != requests-limit {
			t.Fatalf("%d allowed, %d exhausted; want %d, %d", allowed, exhausted, limit, requests-limit)
		}
		reg := e.srv.Registry()
		enforced := metric(t, reg, "sidemix_mixer_denials_total", "rule", "enforce", "reason", denyQuota)
		copyDenials := metric(t, reg, "sidemix_shadow_denials_total", "rule", "shadow-copy")
		sameDenials := metric(t, reg, "sidemix_shadow_denials_total", "rule", "shadow-same")
		if enforced != float64(exhausted) || copyDenials != enforced || sameDenials != enforced {
			t.Errorf("denials: enforced %v (answers %d), shadow copy %v, shadow on the same handler %v; want all equal",
				enforced, exhausted, copyDenials, sameDenials)
		}
		for _, h := range []string{"limits-a", "limits-b"} {
			g := metric(t, reg, "sidemix_mixer_quota_allocations_total", "handler", h, "quota", "requestcount", "result", allocGranted)
			d := metric(t, reg, "sidemix_mixer_quota_allocations_total", "handler", h, "quota", "requestcount", "result", allocDenied)
			if g != limit || d != requests-limit {
				t.Errorf("%s: %v granted, %v denied allocations; want %d, %d", h, g, d, limit, requests-limit)
			}
		}
		if got := metric(t, reg, "sidemix_mixer_shadow_denials_total"); got != 0 {
			t.Errorf("shadow denials under the wrong name: %v", got)
		}
	})
}

func TestQuotaWindowsPropagated(t *testing.T) {
	e := start(t, testdata(t, "ratelimit.yaml"), Config{})

	resp := e.check(pathBag("/two"))
	q := resp.GetQuotas()["requestcount"]
	if code := resp.GetPrecondition().GetStatus().GetCode(); code != 0 || q.GetGrantedAmount() != 1 {
		t.Fatalf("/two: code %v, quota %v", code, q)
	}
	if q.GetLimit() != 10 || q.GetRemaining() != 2 || q.GetReset_().AsDuration() != 1500*time.Millisecond {
		t.Errorf("/two: limit %d, remaining %d, reset %v; want the narrow window: 10, 2, 1.5s",
			q.GetLimit(), q.GetRemaining(), q.GetReset_().AsDuration())
	}
	if pre := resp.GetPrecondition(); pre.GetValidUseCount() <= 1 {
		t.Errorf("/two: granted quota made the precondition single-use")
	}

	resp = e.check(pathBag("/exhausted"))
	pre := resp.GetPrecondition()
	q = resp.GetQuotas()["requestcount"]
	if codes.Code(pre.GetStatus().GetCode()) != codes.ResourceExhausted || q.GetGrantedAmount() != 0 {
		t.Fatalf("/exhausted: %v, quota %v", pre.GetStatus(), q)
	}
	if q.GetLimit() != 5 || q.GetRemaining() != 0 || q.GetReset_().AsDuration() != 2*time.Second {
		t.Errorf("/exhausted: limit %d, remaining %d, reset %v; want 5, 0, 2s", q.GetLimit(), q.GetRemaining(), q.GetReset_().AsDuration())
	}
	if pre.GetValidUseCount() != 1 || pre.GetValidDuration().AsDuration() != 0 {
		t.Errorf("/exhausted: reusable for %v, %d uses", pre.GetValidDuration().AsDuration(), pre.GetValidUseCount())
	}
	ei := errorInfoOf(t, pre)
	want := map[string]string{"quota": "requestcount", "rule": "exhausted", "handler": "spent", "limit": "5", "remaining": "0", "reset": "2s"}
	for k, v := range want {
		if ei.GetMetadata()[k] != v {
			t.Errorf("error info %v: %s=%q, want %q", ei.GetMetadata(), k, ei.GetMetadata()[k], v)
		}
	}
	var retry *errdetails.RetryInfo
	for _, d := range pre.GetStatus().GetDetails() {
		var ri errdetails.RetryInfo
		if d.UnmarshalTo(&ri) == nil {
			retry = &ri
		}
	}
	if retry.GetRetryDelay().AsDuration() != 2*time.Second {
		t.Errorf("retry info %v, want 2s", retry)
	}
	reg := e.srv.Registry()
	if got := metric(t, reg, "sidemix_mixer_denials_total", "rule", "exhausted", "handler", "spent", "reason", denyQuota); got != 1 {
		t.Errorf("denials_total{exhausted,spent,quota} = %v", got)
	}
	if got := metric(t, reg, "sidemix_mixer_quota_granted_total", "handler", "wide"); got != 2 {
		t.Errorf("quota_granted_total{wide} = %v, want 2", got)
	}
	mfs, _ := reg.Gather()
	found := false
	for _, mf := range mfs {
		if mf.GetName() == "sidemix_mixer_handler_duration_seconds" {
			for _, m := range mf.GetMetric() {
				if hasLabel(m, "handler", "narrow") && hasLabel(m, "role", roleQuota) && m.GetHistogram().GetSampleCount() == 1 {
					found = true
				}
			}
		}
	}
	if !found {
		t.Errorf("no handler_duration_seconds{narrow,quota} sample")
	}
}
