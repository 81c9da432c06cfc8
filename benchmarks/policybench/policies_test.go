package policybench

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/denier"
	"github.com/sidemix/sidemix/adapters/list"
	"github.com/sidemix/sidemix/adapters/memquota"
	"github.com/sidemix/sidemix/adapters/redisquota"
	"github.com/sidemix/sidemix/policy"
)

// TestGeneratedPoliciesLoad loads every generated policy as the mixer
// would, so a change of the policy language shows here, not mid-benchmark.
func TestGeneratedPoliciesLoad(t *testing.T) {
	reg, err := adapters.NewRegistry(denier.Factory(), list.Factory(), memquota.Factory(), redisquota.Factory())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{1, 10, 100} {
		dir := filepath.Join(t.TempDir(), fmt.Sprint(n))
		if err := writeCheckPolicy(dir, n); err != nil {
			t.Fatal(err)
		}
		snap, err := policy.Load([]string{dir}, policy.Options{Adapters: reg})
		if err != nil {
			t.Fatalf("%d rules: %v", n, err)
		}
		if _, _, rules := snap.Counts(); rules != n {
			t.Errorf("check policy of %d rules has %d", n, rules)
		}
	}
	dir := t.TempDir()
	if err := writePrefetchPolicy(dir, grantLimit); err != nil {
		t.Fatal(err)
	}
	if _, err := policy.Load([]string{dir}, policy.Options{Adapters: reg}); err != nil {
		t.Fatalf("prefetch policy: %v", err)
	}
	for _, algo := range []string{"FIXED_WINDOW", "ROLLING_WINDOW"} {
		dir = t.TempDir()
		if err := writeRedisQuotaPolicy(dir, "127.0.0.1:6379", algo, 10, time.Second, 10); err != nil {
			t.Fatal(err)
		}
		if _, err := policy.Load([]string{dir}, policy.Options{Adapters: reg}); err != nil {
			t.Fatalf("redisquota policy (%s): %v", algo, err)
		}
	}
}
