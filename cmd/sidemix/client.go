package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	mixerv1 "github.com/sidemix/sidemix/api/mixer/v1"
	"github.com/sidemix/sidemix/attribute"
)

const checkSynopsis = `  sidemix check [--mixer ADDR] -a name=value [-a name=value...] [--quota name=amount...]

Sends one Check with the given attributes to a mixer and prints its answer:
status, how long and how often it may be cached, the attributes it depended
on, header operations and quota grants. Values are parsed with the kind the
attribute vocabulary gives the name (unknown names are strings): durations
like 250ms, times in RFC 3339, maps as k1:v1;k2:v2, and one map key as
-a 'request.headers[x-user]=alice'.

Example:
  sidemix check -a request.path=/admin/users -a destination.workload.name=web`

const reportSynopsis = `  sidemix report [--mixer ADDR] -a name=value [-a name=value...]

Sends one Report of the given attributes (--count times) to a mixer. Values
are parsed as for 'sidemix check'.

Example:
  sidemix report -a destination.workload.name=web -a response.code=200 -a response.duration=12ms`

// clientFlags are the flags check and report share.
type clientFlags struct {
	mixer   *string
	timeout *time.Duration
	attrs   repeatFlag
}

func addClientFlags(fs *flagSet) *clientFlags {
	cf := &clientFlags{}
	cf.mixer = fs.String("mixer", "127.0.0.1:9091", "gRPC `address` of the mixer")
	cf.timeout = fs.Duration("timeout", 5*time.Second, "deadline of the call")
	fs.Var(&cf.attrs, "a", "attribute `name=value` (repeatable)")
	fs.Var(&cf.attrs, "attr", "same as -a `name=value`")
	return cf
}

func (cf *clientFlags) dial() (*grpc.ClientConn, mixerv1.MixerClient, error) {
	conn, err := grpc.NewClient(*cf.mixer, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, nil, fmt.Errorf("mixer %s: %w", *cf.mixer, err)
	}
	return conn, mixerv1.NewMixerClient(conn), nil
}

// parseAttributes builds a bag from name=value flags, each value parsed with
// the kind manifest m gives the name (undeclared names are strings).
// name[key]=value sets one key of a map attribute.
func parseAttributes(m *attribute.Manifest, items []string) (*attribute.Bag, error) {
	b := attribute.NewBuilder(len(items))
	maps := map[string]map[string]string{}
	for _, it := range items {
		name, text, ok := strings.Cut(it, "=")
		if !ok || name == "" {
			return nil, usageErrorf("-a %q: want name=value", it)
		}
		if base, key, isKey := mapKey(name); isKey {
			if k, declared := m.Kind(base); declared && k != attribute.KindStringMap {
				return nil, usageErrorf("-a %q: %s is a %s, not a map", it, base, k)
			}
			if maps[base] == nil {
				maps[base] = map[string]string{}
			}
			maps[base][key] = text
			continue
		}
		kind, declared := m.Kind(name)
		if !declared {
			kind = attribute.KindString
		}
		if kind == attribute.KindStringMap {
			v, err := attribute.ParseValue(kind, text)
			if err != nil {
				return nil, usageErrorf("-a %q: %v", it, err)
			}
			if maps[name] == nil {
				maps[name] = map[string]string{}
			}
			for k, val := range v.StringMap() {
				maps[name][k] = val
			}
			continue
		}
		v, err := attribute.ParseValue(kind, text)
		if err != nil {
			return nil, usageErrorf("-a %q: %s is %s: %v", it, name, kind, err)
		}
		b.Set(name, v)
	}
	for name, mv := range maps {
		b.SetStringMap(name, mv)
	}
	return b.Build(), nil
}

// mapKey splits "request.headers[x-user]" into its name and key.
func mapKey(s string) (name, key string, ok bool) {
	open := strings.IndexByte(s, '[')
	if open <= 0 || !strings.HasSuffix(s, "]") {
		return "", "", false
	}
	return s[:open], s[open+1 : len(s)-1], true
}

func runCheck(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("check", checkSynopsis)
	cf := addClientFlags(fs)
	var quotas repeatFlag
	fs.Var(&quotas, "quota", "quota to allocate, `name=amount` (repeatable); without it every matching quota rule allocates 1")
	bestEffort := fs.Bool("best-effort", false, "grant what is left of a quota instead of all or nothing")
	dedup := fs.String("dedup-id", "", "deduplication `id` of the request (default: a fresh one)")
	if err := fs.parse(e, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("unexpected arguments %q (attributes go in -a name=value)", fs.Args())
	}
	bag, err := parseAttributes(attribute.DefaultManifest(), cf.attrs)
	if err != nil {
		return err
	}
	req := &mixerv1.CheckRequest{DeduplicationId: *dedup}
	if req.DeduplicationId == "" {
		req.DeduplicationId = "sidemix-check-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	if len(quotas) > 0 {
		req.Quotas = map[string]*mixerv1.CheckRequest_QuotaParams{}
		for _, q := range quotas {
			name, amount, ok := strings.Cut(q, "=")
			n, err := strconv.ParseInt(amount, 10, 64)
			if !ok || name == "" || err != nil || n <= 0 {
				return usageErrorf("--quota %q: want name=amount with a positive amount", q)
			}
			req.Quotas[name] = &mixerv1.CheckRequest_QuotaParams{Amount: n, BestEffort: *bestEffort}
		}
	}
	enc := attribute.NewEncoder(attribute.DefaultDictionary())
	enc.Reset()
	req.Attributes = enc.Encode(bag)
	req.GlobalWordCount = enc.GlobalWordCount()

	conn, client, err := cf.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	cctx, cancel := context.WithTimeout(ctx, *cf.timeout)
	defer cancel()
	resp, err := client.Check(cctx, req)
	if err != nil {
		return fmt.Errorf("check call to %s: %w", *cf.mixer, err)
	}
	printCheckResponse(e.stdout, resp)
	return nil
}

func runReport(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("report", reportSynopsis)
	cf := addClientFlags(fs)
	count := fs.Int("count", 1, "how many copies of the bag to report in one batch")
	if err := fs.parse(e, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("unexpected arguments %q (attributes go in -a name=value)", fs.Args())
	}
	if *count < 1 {
		return usageErrorf("--count must be at least 1")
	}
	bag, err := parseAttributes(attribute.DefaultManifest(), cf.attrs)
	if err != nil {
		return err
	}
	bags := make([]*attribute.Bag, *count)
	for i := range bags {
		bags[i] = bag
	}
	enc := attribute.NewEncoder(attribute.DefaultDictionary())
	enc.Reset()
	req := enc.EncodeBatch(bags)

	conn, client, err := cf.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	cctx, cancel := context.WithTimeout(ctx, *cf.timeout)
	defer cancel()
	if _, err := client.Report(cctx, req); err != nil {
		return fmt.Errorf("report call to %s: %w", *cf.mixer, err)
	}
	fmt.Fprintf(e.stdout, "ok: reported %d %s of %d attributes to %s\n", *count, plural(*count, "bag", "bags"), bag.Len(), *cf.mixer)
	return nil
}

// printCheckResponse renders a CheckResponse for people.
func printCheckResponse(w io.Writer, resp *mixerv1.CheckResponse) {
	pre := resp.GetPrecondition()
	st := pre.GetStatus()
	code := codes.Code(st.GetCode())
	line := fmt.Sprintf("%s (%d)", codeName(code), st.GetCode())
	if st.GetMessage() != "" {
		line += ": " + st.GetMessage()
	}
	fmt.Fprintf(w, "status:      %s\n", line)
	fmt.Fprintf(w, "valid for:   %s, %d %s\n", pre.GetValidDuration().AsDuration(), pre.GetValidUseCount(), plural(int(pre.GetValidUseCount()), "use", "uses"))
	printReferenced(w, "referenced:", pre.GetReferencedAttributes())
	if rd := pre.GetRouteDirective(); rd != nil {
		for _, op := range rd.GetRequestHeaderOperations() {
			fmt.Fprintf(w, "request header:  %s %s %q\n", op.GetOperation(), op.GetName(), op.GetValue())
		}
		for _, op := range rd.GetResponseHeaderOperations() {
			fmt.Fprintf(w, "response header: %s %s %q\n", op.GetOperation(), op.GetName(), op.GetValue())
		}
		if rd.GetDirectResponseCode() != 0 {
			fmt.Fprintf(w, "direct response: %d %q\n", rd.GetDirectResponseCode(), rd.GetDirectResponseBody())
		}
	}
	names := make([]string, 0, len(resp.GetQuotas()))
	for n := range resp.GetQuotas() {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		q := resp.GetQuotas()[n]
		fmt.Fprintf(w, "quota %s: granted %d, valid for %s\n", n, q.GetGrantedAmount(), q.GetValidDuration().AsDuration())
		printReferenced(w, "  referenced:", q.GetReferencedAttributes())
	}
}

func printReferenced(w io.Writer, label string, ra *mixerv1.ReferencedAttributes) {
	matches := ra.GetAttributeMatches()
	if len(matches) == 0 {
		fmt.Fprintf(w, "%s  (none)\n", label)
		return
	}
	parts := make([]string, 0, len(matches))
	for _, m := range matches {
		s := m.GetName()
		if m.GetHasMapKey() {
			s += "[" + m.GetMapKey() + "]"
		}
		switch m.GetCondition() {
		case mixerv1.ReferencedAttributes_ABSENCE:
			s += " (absent)"
		case mixerv1.ReferencedAttributes_REGEX:
			s += " ~ " + m.GetRegex()
		}
		parts = append(parts, s)
	}
	fmt.Fprintf(w, "%s  %s\n", label, strings.Join(parts, ", "))
}

// codeNames spell gRPC codes as google.rpc.Code does.
var codeNames = [...]string{
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
	"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
	"ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
	"UNAUTHENTICATED",
}

// codeName spells a gRPC code as google.rpc.Code does: PERMISSION_DENIED.
func codeName(c codes.Code) string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return c.String()
}
