// Package attribute is the vocabulary proxy and mixer speak: attribute names
// and their kinds, the immutable Bag a request becomes, the references a
// decision depended on, and the compressed wire form of bags.
//
// A proxy builds a bag per request:
//
//	bag := attribute.NewBuilder(16).
//		SetString(attribute.RequestPath, "/hello").
//		SetInt64(attribute.ResponseCode, 200).
//		Build()
//	path, ok := bag.String(attribute.RequestPath)
//
// On the wire, names and string values become indices into a global
// Dictionary both sides share (versioned by its length: words are only
// appended) or, for words the dictionary lacks, into the message's own words
// by negative index (-1 is the first). A report batch encodes each bag as a
// delta against the previous one, so the attributes every request of a
// service repeats travel once per batch.
//
// A receiver of report batches decodes them one bag at a time
// (Dictionary.DecodeBatchChanges), each bag made in the memory of the
// one before (in place when it only changes values, as a batch's bags
// mostly do) and told which attributes changed, so that a policy.Sequence
// re-evaluates only what reads them. Dictionary.DecodeBatchChecked also
// checks each bag against a Manifest while it decodes it: after a bag
// that passed, only the kinds of the values the next one changes, each
// change's declared kind looked up once per batch position.
//
// Words travel as protobuf strings, which must be UTF-8, while a
// request's bytes need not be (header values may carry obs-text): the
// Encoder sends a string that is not UTF-8 with each invalid sequence
// replaced by U+FFFD, so one such header neither fails its Check nor
// loses the report batch it is in.
//
// Decoding never trusts the message: any malformed input yields an error
// wrapping ErrMalformed, never a panic (see FuzzDecode).
package attribute
