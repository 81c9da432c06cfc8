package policy

import (
	"gopkg.in/yaml.v3"

	"github.com/sidemix/sidemix/internal/yamlload"
)

// The strict decoding and node helpers are shared with other loaders
// (internal/yamlload); these names keep the loader's code short.

type fieldIssue = yamlload.FieldIssue

func decodeStrict(node *yaml.Node, out any, prefix string) ([]fieldIssue, bool) {
	return yamlload.DecodeStrict(node, out, prefix)
}

func resolve(n *yaml.Node) *yaml.Node               { return yamlload.Resolve(n) }
func valueNode(n *yaml.Node, key string) *yaml.Node { return yamlload.ValueNode(n, key) }
func keyNode(n *yaml.Node, key string) *yaml.Node   { return yamlload.KeyNode(n, key) }
func lineOf(n *yaml.Node, def int) int              { return yamlload.LineOf(n, def) }
