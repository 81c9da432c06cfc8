// Package fakemixer is a test double of the mixer's gRPC service for the
// proxy's and the mixer client's unit tests: a real gRPC server on loopback
// whose Check answers are scripted by the test and which keeps every bag it
// receives, decoded. End-to-end tests use the real mixer instead.
package fakemixer

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	mixerv1 "github.com/sidemix/sidemix/api/mixer/v1"
	"github.com/sidemix/sidemix/attribute"
)

// CheckFunc answers one Check for the decoded bag.
type CheckFunc func(bag *attribute.Bag) *mixerv1.CheckResponse

// RequestFunc answers one Check seeing the whole request (the quotas it
// names, its deduplication id); a non-nil error is the RPC's.
type RequestFunc func(bag *attribute.Bag, req *mixerv1.CheckRequest) (*mixerv1.CheckResponse, error)

// Server is the fake mixer.
type Server struct {
	mixerv1.UnimplementedMixerServer

	addr string
	srv  *grpc.Server

	mu       sync.Mutex
	check    RequestFunc
	checks   []*attribute.Bag
	dedups   []string
	requests []*mixerv1.CheckRequest
	failNext int
	failCode codes.Code
	reported []*attribute.Bag
	nReports int
	discard  bool
	batches  int
	delay    time.Duration
	notify   chan struct{}
}

// Start serves on addr ("127.0.0.1:0" for a free port) until the test ends.
// Its Check allows everything, depending on nothing, until SetCheck.
func Start(t testing.TB, addr string) *Server {
	t.Helper()
	s := &Server{notify: make(chan struct{})}
	s.SetCheck(func(*attribute.Bag) *mixerv1.CheckResponse { return Allow(time.Minute, 10000) })
	s.Restart(t, addr)
	t.Cleanup(s.Stop)
	return s
}

// Restart serves again (after Stop) on addr, keeping the script and what
// was received.
func (s *Server) Restart(t testing.TB, addr string) {
	t.Helper()
	var ln net.Listener
	var err error
	// The port of a stopped server can take a moment to free up.
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("fake mixer: %v", err)
	}
	srv := grpc.NewServer()
	mixerv1.RegisterMixerServer(srv, s)
	s.mu.Lock()
	s.addr = ln.Addr().String()
	s.srv = srv
	s.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

// Stop stops serving, closing connections.
func (s *Server) Stop() {
	s.mu.Lock()
	srv := s.srv
	s.srv = nil
	s.mu.Unlock()
	if srv != nil {
		srv.Stop()
	}
}

// Addr is the address served on.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// SetCheck scripts the Check answers.
func (s *Server) SetCheck(f CheckFunc) {
	s.SetCheckRequest(func(b *attribute.Bag, _ *mixerv1.CheckRequest) (*mixerv1.CheckResponse, error) { return f(b), nil })
}

// SetCheckRequest scripts the Check answers with the whole request in view.
func (s *Server) SetCheckRequest(f RequestFunc) {
	s.mu.Lock()
	s.check = f
	s.mu.Unlock()
}

// FailNext makes the next n Checks fail with code (after being recorded).
func (s *Server) FailNext(n int, code codes.Code) {
	s.mu.Lock()
	s.failNext, s.failCode = n, code
	s.mu.Unlock()
}

// Requests returns the Check requests received, in order.
func (s *Server) Requests() []*mixerv1.CheckRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*mixerv1.CheckRequest(nil), s.requests...)
}

// DiscardReports makes the server count reported bags without keeping
// them (for benchmarks).
func (s *Server) DiscardReports() {
	s.mu.Lock()
	s.discard = true
	s.mu.Unlock()
}

// ReportCount is the number of bags reported.
func (s *Server) ReportCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nReports
}

// SetDelay makes every Check wait d before answering.
func (s *Server) SetDelay(d time.Duration) {
	s.mu.Lock()
	s.delay = d
	s.mu.Unlock()
}

// CheckCalls is the number of Checks received.
func (s *Server) CheckCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.checks)
}

// Checked returns the bags of the Checks received.
func (s *Server) Checked() []*attribute.Bag {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*attribute.Bag(nil), s.checks...)
}

// DedupIDs returns the deduplication ids of the Checks received.
func (s *Server) DedupIDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.dedups...)
}

// Reported returns the bags of every Report received.
func (s *Server) Reported() []*attribute.Bag {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*attribute.Bag(nil), s.reported...)
}

// Batches is the number of Report RPCs received.
func (s *Server) Batches() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.batches
}

// WaitReported waits until at least n bags were reported and returns them.
func (s *Server) WaitReported(t testing.TB, n int, timeout time.Duration) []*attribute.Bag {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		got := s.nReports
		ch := s.notify
		s.mu.Unlock()
		if got >= n {
			return s.Reported()
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("fake mixer: %d bags reported after %v, want %d", got, timeout, n)
			return nil
		}
	}
}

// Check implements mixerv1.MixerServer.
func (s *Server) Check(ctx context.Context, req *mixerv1.CheckRequest) (*mixerv1.CheckResponse, error) {
	bag, err := attribute.DefaultDictionary().Decode(req.GetAttributes(), req.GetGlobalWordCount())
	if err != nil {
		return nil, grpcstatus.Error(codes.InvalidArgument, err.Error())
	}
	s.mu.Lock()
	s.checks = append(s.checks, bag)
	s.dedups = append(s.dedups, req.GetDeduplicationId())
	s.requests = append(s.requests, req)
	f, delay := s.check, s.delay
	fail := s.failNext > 0
	if fail {
		s.failNext--
	}
	code := s.failCode
	s.mu.Unlock()
	if fail {
		return nil, grpcstatus.Error(code, "fake mixer: failing as told")
	}
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return f(bag, req)
}

// Report implements mixerv1.MixerServer.
func (s *Server) Report(_ context.Context, req *mixerv1.ReportRequest) (*mixerv1.ReportResponse, error) {
	bags, err := attribute.DefaultDictionary().DecodeBatch(req)
	if err != nil {
		return nil, grpcstatus.Error(codes.InvalidArgument, err.Error())
	}
	s.mu.Lock()
	if !s.discard {
		s.reported = append(s.reported, bags...)
	}
	s.nReports += len(bags)
	s.batches++
	close(s.notify)
	s.notify = make(chan struct{})
	s.mu.Unlock()
	return &mixerv1.ReportResponse{}, nil
}

// Answer builds a precondition answer.
func Answer(code codes.Code, msg string, valid time.Duration, uses int32, refs ...attribute.Reference) *mixerv1.CheckResponse {
	return &mixerv1.CheckResponse{Precondition: &mixerv1.CheckResponse_PreconditionResult{
		Status:               &status.Status{Code: int32(code), Message: msg},
		ValidDuration:        durationpb.New(valid),
		ValidUseCount:        uses,
		ReferencedAttributes: attribute.ToProto(refs),
	}}
}

// Allow answers OK.
func Allow(valid time.Duration, uses int32, refs ...attribute.Reference) *mixerv1.CheckResponse {
	return Answer(codes.OK, "", valid, uses, refs...)
}

// Ref is a whole-attribute reference to a present attribute.
func Ref(name string) attribute.Reference { return attribute.Reference{Name: name, Present: true} }

// KeyRef is a reference to one key of a map attribute.
func KeyRef(name, key string, present bool) attribute.Reference {
	return attribute.Reference{Name: name, MapKey: key, HasKey: true, Present: present}
}

// WithQuota adds a quota result to r.
func WithQuota(r *mixerv1.CheckResponse, name string, granted int64, valid time.Duration) *mixerv1.CheckResponse {
	return WithQuotaResult(r, name, QuotaResult{Granted: granted, Valid: valid})
}

// QuotaResult is one quota's answer, as WithQuotaResult writes it.
type QuotaResult struct {
	Granted          int64
	Valid            time.Duration
	Limit, Remaining int64
	Reset            time.Duration
	Refs             []attribute.Reference
}

// WithQuotaResult adds a quota result with its limit figures to r.
func WithQuotaResult(r *mixerv1.CheckResponse, name string, q QuotaResult) *mixerv1.CheckResponse {
	if r.Quotas == nil {
		r.Quotas = map[string]*mixerv1.CheckResponse_QuotaResult{}
	}
	res := &mixerv1.CheckResponse_QuotaResult{
		GrantedAmount: q.Granted,
		ValidDuration: durationpb.New(q.Valid),
		Limit:         q.Limit,
		Remaining:     q.Remaining,
	}
	if q.Reset > 0 {
		res.Reset_ = durationpb.New(q.Reset)
	}
	if len(q.Refs) > 0 {
		res.ReferencedAttributes = attribute.ToProto(q.Refs)
	}
	r.Quotas[name] = res
	return r
}

// WithCharges adds quota charges (name, charge, name, charge, ...) to r, as
// the mixer answers a Check that named no quotas.
func WithCharges(r *mixerv1.CheckResponse, charges ...any) *mixerv1.CheckResponse {
	for i := 0; i+1 < len(charges); i += 2 {
		r.QuotaCharges = append(r.QuotaCharges, &mixerv1.CheckResponse_QuotaCharge{
			Quota: charges[i].(string), Charge: int64(charges[i+1].(int)),
		})
	}
	return r
}
