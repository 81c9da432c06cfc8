package benchmarks

import (
	"net/netip"
	"strconv"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	mixerv1 "github.com/sidemix/sidemix/api/mixer/v1"
	"github.com/sidemix/sidemix/attribute"
)

// bag20 is a typical request of 20 attributes as a sidecar reports it.
func bag20(i int) *attribute.Bag {
	return attribute.NewBuilder(20).
		SetString(attribute.SourceWorkloadName, "product").
		SetString(attribute.SourceWorkloadNamespace, "shop").
		SetString(attribute.DestinationWorkloadName, "invoice").
		SetString(attribute.DestinationWorkloadNamespace, "shop").
		SetString(attribute.DestinationServiceHost, "invoice.shop.svc.cluster.local").
		SetString(attribute.DestinationServiceName, "invoice").
		SetInt64(attribute.DestinationPort, 8080).
		SetIP(attribute.SourceIP, netip.MustParseAddr("10.0.0.7")).
		SetString(attribute.RequestPath, "/invoices/"+strconv.Itoa(i)).
		SetString(attribute.RequestMethod, "GET").
		SetString(attribute.RequestScheme, "http").
		SetString(attribute.RequestID, "0f3c1a9e-8c7b-4d5e-9f00-"+strconv.Itoa(100000000000+i)).
		SetStringMap(attribute.RequestHeaders, map[string]string{"user-agent": "shop/1.0", "accept": "*/*", "x-request-id": "abc"}).
		SetTime(attribute.RequestTime, time.Unix(1700000000, int64(i))).
		SetInt64(attribute.RequestSize, 0).
		SetInt64(attribute.ResponseCode, 200).
		SetInt64(attribute.ResponseSize, 512).
		SetDuration(attribute.ResponseDuration, 1500*time.Microsecond).
		SetString(attribute.ContextReporterKind, "inbound").
		SetString(attribute.ContextProtocol, "http").
		Build()
}

// BenchmarkBagEncode compresses one 20-attribute bag (as for a Check).
func BenchmarkBagEncode(b *testing.B) {
	enc := attribute.NewEncoder(attribute.DefaultDictionary())
	bag := bag20(1)
	b.ReportAllocs()
	for b.Loop() {
		enc.Reset()
		_ = enc.Encode(bag)
	}
}

// BenchmarkBagDecode turns one compressed 20-attribute bag into a Bag, as the
// mixer does for every Check (after protobuf unmarshalling).
func BenchmarkBagDecode(b *testing.B) {
	d := attribute.DefaultDictionary()
	enc := attribute.NewEncoder(d)
	msg := enc.Encode(bag20(1))
	n := enc.GlobalWordCount()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.Decode(msg, n); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBagDecodeWire includes protobuf unmarshalling of the message.
func BenchmarkBagDecodeWire(b *testing.B) {
	d := attribute.DefaultDictionary()
	enc := attribute.NewEncoder(d)
	raw, _ := proto.Marshal(enc.Encode(bag20(1)))
	n := enc.GlobalWordCount()
	b.ReportAllocs()
	for b.Loop() {
		var msg mixerv1.CompressedAttributes
		if err := proto.Unmarshal(raw, &msg); err != nil {
			b.Fatal(err)
		}
		if _, err := d.Decode(&msg, n); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReportBatch100 delta-encodes and decodes a batch of 100 bags; the
// reported figures are per batch.
func BenchmarkReportBatch100(b *testing.B) {
	d := attribute.DefaultDictionary()
	enc := attribute.NewEncoder(d)
	bags := make([]*attribute.Bag, 100)
	for i := range bags {
		bags[i] = bag20(i)
	}
	raw, _ := proto.Marshal(enc.EncodeBatch(bags))
	b.ReportMetric(float64(len(raw))/100, "wire-bytes/bag")
	b.ReportAllocs()
	for b.Loop() {
		req := enc.EncodeBatch(bags)
		if _, err := d.DecodeBatch(req); err != nil {
			b.Fatal(err)
		}
	}
}
