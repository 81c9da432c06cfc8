package policy

import (
	"strings"
	"testing"
)

const failPolicyConfig = `
apiVersion: sidemix.dev/v1
kind: Handler
metadata: {name: sink}
spec: {adapter: sink}
---
apiVersion: sidemix.dev/v1
kind: Handler
metadata: {name: deny}
spec: {adapter: denier}
---
apiVersion: sidemix.dev/v1
kind: Instance
metadata: {name: nothing}
spec: {template: checknothing}
---
apiVersion: sidemix.dev/v1
kind: Instance
metadata: {name: perpath}
spec:
  template: quota
  params: {dimensions: {path: request.path}}
---
apiVersion: sidemix.dev/v1
kind: Rule
metadata: {name: a-default}
spec:
  actions: [{handler: deny, instances: [nothing]}]
---
apiVersion: sidemix.dev/v1
kind: Rule
metadata: {name: b-open}
spec:
  failPolicy: OPEN
  actions: [{handler: deny, instances: [nothing]}, {handler: sink, instances: [perpath]}]
---
apiVersion: sidemix.dev/v1
kind: Rule
metadata: {name: c-shadow}
spec:
  failPolicy: Closed
  shadow: true
  actions: [{handler: deny, instances: [nothing]}]
`

func TestRuleFailPolicyAndShadow(t *testing.T) {
	s, err := LoadSources(map[string][]byte{"r.yaml": []byte(failPolicyConfig)}, Options{Adapters: testRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	bag := pathBag("/x")
	var got []string
	for _, v := range []Variety{VarietyCheck, VarietyQuota} {
		for _, a := range s.Evaluate(bag, v, nil).Actions {
			got = append(got, a.Rule+"/"+a.Handler+":"+map[bool]string{true: "open", false: "closed"}[a.FailOpen]+
				map[bool]string{true: "+shadow", false: ""}[a.Shadow])
		}
	}
	want := "a-default/deny:closed b-open/deny:open c-shadow/deny:closed+shadow b-open/sink:open"
	if strings.Join(got, " ") != want {
		t.Fatalf("actions = %s, want %s", strings.Join(got, " "), want)
	}

	v := s.View().(*ConfigView)
	var views []string
	for _, r := range v.Rules {
		views = append(views, r.Name+":"+r.FailPolicy+map[bool]string{true: "+shadow", false: ""}[r.Shadow])
	}
	if got := strings.Join(views, " "); got != "a-default:closed b-open:open c-shadow:closed+shadow" {
		t.Fatalf("view = %s", got)
	}
}
