package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sidemix/sidemix/internal/testenv"
)

// shopBinary is examples/demo/shop, built once per test process.
var shopBinary struct {
	once sync.Once
	path string
	err  error
}

func buildShop(t *testing.T) string {
	t.Helper()
	shopBinary.once.Do(func() {
		dir, err := os.MkdirTemp("", "sidemix-shop-")
		if err != nil {
			shopBinary.err = err
			return
		}
		shopBinary.path = filepath.Join(dir, "shop")
		cmd := exec.Command("go", "build", "-o", shopBinary.path, "./examples/demo/shop")
		cmd.Dir = testenv.ModuleRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			shopBinary.err = fmt.Errorf("go build ./examples/demo/shop: %v\n%s", err, out)
		}
	})
	if shopBinary.err != nil {
		t.Fatal(shopBinary.err)
	}
	return shopBinary.path
}

// shopService is one service of the demo shop chain and its sidecar.
type shopService struct {
	name     string
	app      *testenv.Process
	sidecar  *proxy
	outbound string // the sidecar's outbound listener; "" for notification
}

// shopChain is the demo's chain product → invoice → notification in
// namespace shop, each service the real examples/demo/shop binary behind
// its own sidecar, calling the next through its sidecar's outbound
// listener. GET product.sidecar.url("/checkout?item=tea") runs one request
// through the whole chain.
type shopChain struct {
	product, invoice, notification *shopService
}

// startShopChain starts the chain's apps and sidecars against mixerAddr;
// sidecarArgs are added to every sidecar's flags.
func startShopChain(t *testing.T, mixerAddr string, sidecarArgs ...string) *shopChain {
	t.Helper()
	bin := buildShop(t)
	start := func(name, callee string, calleeInbound string) *shopService {
		t.Helper()
		s := &shopService{name: name}
		appAddr := testenv.FreeAddr(t)
		appArgs := []string{"--role", name, "--listen", appAddr}
		args := []string{"--service", name, "--namespace", "shop"}
		if callee != "" {
			s.outbound = testenv.FreeAddr(t)
			appArgs = append(appArgs, "--outbound", s.outbound)
			args = append(args, "--outbound", s.outbound, "--upstreams", callee+"="+calleeInbound)
		}
		s.app = testenv.StartProcess(t, bin, appArgs...)
		waitReady(t, s.app, "http://"+appAddr+"/healthz")
		s.sidecar = startProxy(t, mixerAddr, appAddr, append(args, sidecarArgs...)...)
		if s.outbound != "" {
			testenv.WaitTCP(t, s.outbound, 5*time.Second)
		}
		return s
	}
	c := &shopChain{}
	c.notification = start("notification", "", "")
	c.invoice = start("invoice", "notification", c.notification.sidecar.inbound)
	c.product = start("product", "invoice", c.invoice.sidecar.inbound)
	return c
}

// checkout sends one checkout to product's sidecar, which runs the whole
// chain, and fails the test unless it succeeds.
func (c *shopChain) checkout(t *testing.T) {
	t.Helper()
	r := get(t, c.product.sidecar.url("/checkout?item=tea"))
	if r.code != 201 || !strings.Contains(r.body, `"notified":true`) {
		t.Fatalf("GET /checkout: %d %q, want 201 from invoice, notified", r.code, r.body)
	}
}
