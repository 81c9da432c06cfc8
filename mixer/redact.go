package mixer

import (
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/policy"
)

// redacted replaces a secret in /debug/config, as url.URL.Redacted does.
const redacted = "xxxxx"

// secretKeyWords mark a params key whose value is a secret (compared in
// lower case, without '_' and '-').
var secretKeyWords = []string{"password", "passwd", "secret", "token", "credential", "apikey", "privatekey"}

func isSecretKey(k string) bool {
	k = strings.NewReplacer("_", "", "-", "").Replace(strings.ToLower(k))
	for _, w := range secretKeyWords {
		if strings.Contains(k, w) {
			return true
		}
	}
	return false
}

// urlUserinfo matches the userinfo of a URL anywhere in a string:
// scheme "://" userinfo "@". Group 2 is the user, group 3 the password.
var urlUserinfo = regexp.MustCompile(`([a-zA-Z][a-zA-Z0-9+.\-]*://)([^/?#@\s:]*)(:[^/?#@\s]*)?@`)

// redactURLs hides the passwords of URLs in s (redis://:pw@host becomes
// redis://:xxxxx@host); a userinfo without ':' may be a bare password
// (some Redis URLs) and is hidden whole.
func redactURLs(s string) string {
	if !strings.Contains(s, "@") {
		return s
	}
	return urlUserinfo.ReplaceAllStringFunc(s, func(m string) string {
		sub := urlUserinfo.FindStringSubmatch(m)
		if sub[3] == "" {
			return sub[1] + redacted + "@"
		}
		return sub[1] + sub[2] + ":" + redacted + "@"
	})
}

// redactValue copies v (params as policy.View renders them: maps, lists
// and scalars) with secrets hidden: the value of any key that names a
// secret, and the passwords of URLs in every string.
func redactValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			if isSecretKey(k) && e != nil && e != "" {
				out[k] = redacted
				continue
			}
			out[k] = redactValue(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = redactValue(e)
		}
		return out
	case string:
		return redactURLs(x)
	}
	return v
}

// redactView returns the config view with the handlers' params redacted;
// the snapshot's own view is left as it is. A handler whose params are an
// adapters.Redactor shows its Redacted() copy (the params as decoded, with
// defaults, under their YAML keys); the others show their params as
// written. Either way keys that name secrets and URL passwords are hidden
// too. Instances and rules hold expressions, not credentials.
func redactView(v any, handlers []policy.HandlerConfig) any {
	cv, ok := v.(*policy.ConfigView)
	if !ok {
		return v
	}
	redactors := map[string]adapters.Redactor{}
	for _, hc := range handlers {
		if r, ok := hc.Params.(adapters.Redactor); ok {
			redactors[hc.Namespace+"/"+hc.Name] = r
		}
	}
	out := *cv
	out.Handlers = make([]policy.HandlerView, len(cv.Handlers))
	for i, h := range cv.Handlers {
		if r, ok := redactors[h.Namespace+"/"+h.Name]; ok {
			h.Params = viewOf(r.Redacted())
		}
		h.Params = redactValue(h.Params)
		out.Handlers[i] = h
	}
	return &out
}

// viewOf renders typed params as plain data under their YAML keys, as the
// policy view shows params; what cannot be rendered is left out.
func viewOf(params any) any {
	b, err := yaml.Marshal(params)
	if err != nil {
		return "(params not shown: " + err.Error() + ")"
	}
	var v any
	if err := yaml.Unmarshal(b, &v); err != nil {
		return "(params not shown: " + err.Error() + ")"
	}
	return v
}
