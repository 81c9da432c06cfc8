package mixer

import (
	"fmt"
	"unicode/utf8"

	mixerv1 "github.com/sidemix/sidemix/api/mixer/v1"
)

// The Mixer API's requests are decoded by generated vtprotobuf code
// (internal/vtcodec), which, unlike protobuf-go, does not refuse proto3
// strings that are not UTF-8. These functions hold the mixer to the same
// rule, before anything keeps a string, so an attribute value is UTF-8 as
// it was before (CEL's strings assume it); the answer is InvalidArgument
// where protobuf-go's decoder made gRPC answer Internal.

// checkRequestUTF8 returns an error naming the first string of req that is
// not valid UTF-8.
func checkRequestUTF8(req *mixerv1.CheckRequest) error {
	if i := notUTF8(req.GetAttributes().GetWords()); i >= 0 {
		return fmt.Errorf("attributes.words[%d] is not valid UTF-8: %q", i, req.GetAttributes().GetWords()[i])
	}
	if !utf8.ValidString(req.GetDeduplicationId()) {
		return fmt.Errorf("deduplication_id is not valid UTF-8")
	}
	for name := range req.GetQuotas() {
		if !utf8.ValidString(name) {
			return fmt.Errorf("quotas: name %q is not valid UTF-8", name)
		}
	}
	return nil
}

// reportRequestUTF8 is checkRequestUTF8 for a Report batch.
func reportRequestUTF8(req *mixerv1.ReportRequest) error {
	if i := notUTF8(req.GetDefaultWords()); i >= 0 {
		return fmt.Errorf("default_words[%d] is not valid UTF-8: %q", i, req.GetDefaultWords()[i])
	}
	for b, a := range req.GetAttributes() {
		if i := notUTF8(a.GetWords()); i >= 0 {
			return fmt.Errorf("attributes[%d].words[%d] is not valid UTF-8: %q", b, i, a.GetWords()[i])
		}
	}
	return nil
}

// notUTF8 returns the index of the first word that is not valid UTF-8, or -1.
func notUTF8(words []string) int {
	for i, w := range words {
		if !utf8.ValidString(w) {
			return i
		}
	}
	return -1
}
