// Command run starts the sidemix demo on loopback: one mixer with the default
// telemetry config and the demo policies, the three shop services (product →
// invoice → notification) each behind its own sidecar, and a traffic
// generator. It prints where to look, then runs until Ctrl-C, or for
// DEMO_SECONDS seconds when that is set, and stops every process it started.
//
// `make demo` builds the binaries into bin/ and runs this from the
// repository root. With DEMO_SECONDS set the run ends with a check that the
// metrics show allowed (200), denied (403) and rate-limited (429) requests,
// and exits 1 if they don't or if a process died, so CI can use it as a
// smoke test.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Fixed loopback ports, so the printed curl commands are the same every run.
const (
	mixerGRPC   = "127.0.0.1:9091"
	mixerAdmin  = "127.0.0.1:9093"
	metricsAddr = "127.0.0.1:42422" // the prometheus handler of examples/default
)

type service struct {
	name     string
	app      string // the shop process
	inbound  string // its sidecar's inbound listener
	outbound string // its sidecar's outbound listener ("" = none)
	admin    string // its sidecar's admin listener
	calls    string // the service it calls ("" = none)
}

var services = []service{
	{name: "notification", app: "127.0.0.1:18083", inbound: "127.0.0.1:18003", admin: "127.0.0.1:15003"},
	{name: "invoice", app: "127.0.0.1:18082", inbound: "127.0.0.1:18002", outbound: "127.0.0.1:18102", admin: "127.0.0.1:15002", calls: "notification"},
	{name: "product", app: "127.0.0.1:18081", inbound: "127.0.0.1:18001", outbound: "127.0.0.1:18101", admin: "127.0.0.1:15001", calls: "invoice"},
}

func inboundOf(name string) string {
	for _, s := range services {
		if s.name == name {
			return s.inbound
		}
	}
	return ""
}

func main() {
	os.Exit(run())
}

func run() int {
	binDir := flag.String("bin", "bin", "folder with the sidemix, shop and loadgen binaries")
	root := flag.String("root", ".", "repository root (where examples/ is)")
	logDir := flag.String("logs", "", "folder for the processes' logs (default: a new temporary folder)")
	flag.Parse()

	seconds := 0
	if v := os.Getenv("DEMO_SECONDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "demo: DEMO_SECONDS=%q is not a positive number of seconds\n", v)
			return 2
		}
		seconds = n
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if *logDir == "" {
		d, err := os.MkdirTemp("", "sidemix-demo-")
		if err != nil {
			fmt.Fprintf(os.Stderr, "demo: %v\n", err)
			return 1
		}
		*logDir = d
	} else if err := os.MkdirAll(*logDir, 0o755); err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		return 1
	}
	d := &demo{bin: *binDir, root: *root, logs: *logDir}
	defer d.stopAll()

	if err := d.start(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		d.tailLogs()
		return 1
	}
	d.banner(seconds)

	var timeout <-chan time.Time
	if seconds > 0 {
		timeout = time.After(time.Duration(seconds) * time.Second)
	}
	select {
	case <-ctx.Done():
		fmt.Println("\ndemo: interrupted, stopping")
		return 0
	case <-timeout:
		fmt.Printf("demo: %d seconds are up\n", seconds)
	case p := <-d.died:
		fmt.Fprintf(os.Stderr, "demo: %s exited unexpectedly: %v\n", p.name, p.err)
		d.tailLogs()
		return 1
	}
	// A timed run ends with a check, so `DEMO_SECONDS=20 make demo` is a
	// smoke test.
	d.stopLoadgen()
	if err := d.verify(); err != nil {
		fmt.Fprintf(os.Stderr, "demo: FAILED: %v\n", err)
		d.tailLogs()
		return 1
	}
	return 0
}

type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	log  string
}

type demo struct {
	bin, root, logs string

	mu       sync.Mutex
	procs    []*proc
	stopping bool
	died     chan *proc
}

func (d *demo) path(parts ...string) string {
	return filepath.Join(append([]string{d.root}, parts...)...)
}

// jaegerEndpoint is the collector address in examples/default/jaeger.yaml.
const jaegerEndpoint = "127.0.0.1:14250"

// defaultConfig returns the folder of the default telemetry config: the
// repository's examples/default, or, when JAEGER_ENDPOINT is set, a copy in
// the log folder whose jaeger handler sends to that collector (gRPC
// host:port). Unset, the handler keeps 127.0.0.1:14250, Jaeger's default
// collector port: a local Jaeger there gets the traces; without one the
// spans are counted as failed and dropped.
func (d *demo) defaultConfig() (string, error) {
	src := d.path("examples", "default")
	endpoint := os.Getenv("JAEGER_ENDPOINT")
	if endpoint == "" {
		return src, nil
	}
	if _, port, err := net.SplitHostPort(endpoint); err != nil || port == "" {
		return "", fmt.Errorf("JAEGER_ENDPOINT=%q is not host:port (a Jaeger collector's gRPC port, e.g. 127.0.0.1:14250)", endpoint)
	}
	dst := filepath.Join(d.logs, "config", "default")
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return "", err
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		return "", err
	}
	for _, e := range entries {
		if e.IsDir() || filepath.Ext(e.Name()) != ".yaml" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			return "", err
		}
		if e.Name() == "jaeger.yaml" {
			b = []byte(strings.ReplaceAll(string(b), "endpoint: "+jaegerEndpoint, "endpoint: "+endpoint))
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			return "", err
		}
	}
	fmt.Printf("demo: traces go to the Jaeger collector at %s (JAEGER_ENDPOINT)\n", endpoint)
	return dst, nil
}

// spawn starts a process whose stderr (and stdout, unless stdout is given)
// go to logs/<name>.log.
func (d *demo) spawn(name string, stdout io.Writer, bin string, args ...string) (*proc, error) {
	logPath := filepath.Join(d.logs, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stderr = f
	cmd.Stdout = f
	if stdout != nil {
		cmd.Stdout = stdout
	}
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{}), log: logPath}
	d.mu.Lock()
	d.procs = append(d.procs, p)
	d.mu.Unlock()
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
		d.mu.Lock()
		stopping := d.stopping
		d.mu.Unlock()
		if !stopping && name != "loadgen" {
			d.died <- p
		}
	}()
	return p, nil
}

func (d *demo) start(ctx context.Context) error {
	d.died = make(chan *proc, 16)
	sidemix := filepath.Join(d.bin, "sidemix")
	for _, b := range []string{sidemix, filepath.Join(d.bin, "shop"), filepath.Join(d.bin, "loadgen")} {
		if _, err := os.Stat(b); err != nil {
			return fmt.Errorf("%s is missing: run `make demo` (or build it with `go build -o %s`)", b, b)
		}
	}
	if err := checkPortsFree(); err != nil {
		return err
	}

	access, err := os.Create(filepath.Join(d.logs, "access.log"))
	if err != nil {
		return err
	}
	fmt.Printf("demo: logs in %s\n", d.logs)
	telemetry, err := d.defaultConfig()
	if err != nil {
		return err
	}
	mixerArgs := []string{"mixer",
		"--config", telemetry,
		"--config", d.path("examples", "policies", "deny-admin.yaml"),
		"--config", d.path("examples", "demo", "policy"),
		"--grpc", mixerGRPC, "--admin", mixerAdmin}
	kafka, err := d.kafkaConfig()
	if err != nil {
		return err
	}
	if kafka != "" {
		mixerArgs = append(mixerArgs, "--config", kafka)
	}
	fmt.Println("demo: starting the mixer")
	if _, err := d.spawn("mixer", access, sidemix, mixerArgs...); err != nil {
		return err
	}
	if err := d.waitHTTP(ctx, "http://"+mixerAdmin+"/readyz", "mixer"); err != nil {
		return err
	}
	if err := d.waitHTTP(ctx, "http://"+metricsAddr+"/metrics", "mixer's prometheus handler"); err != nil {
		return err
	}

	// Callees first, so every sidecar's upstream is up when traffic starts.
	for _, s := range services {
		fmt.Printf("demo: starting %s and its sidecar\n", s.name)
		shopArgs := []string{"--role", s.name, "--listen", s.app}
		if s.outbound != "" {
			shopArgs = append(shopArgs, "--outbound", s.outbound)
		}
		if _, err := d.spawn(s.name, nil, filepath.Join(d.bin, "shop"), shopArgs...); err != nil {
			return err
		}
		proxyArgs := []string{"proxy", "--service", s.name, "--namespace", "shop", "--labels", "version=v1",
			"--inbound", s.inbound, "--app", s.app, "--admin", s.admin,
			"--mixer", mixerGRPC, "--report-interval", "500ms"}
		if s.outbound != "" {
			proxyArgs = append(proxyArgs, "--outbound", s.outbound,
				"--upstreams", s.calls+"="+inboundOf(s.calls))
		}
		if _, err := d.spawn(s.name+"-sidecar", nil, sidemix, proxyArgs...); err != nil {
			return err
		}
		if err := d.waitHTTP(ctx, "http://"+s.app+"/healthz", s.name); err != nil {
			return err
		}
		if err := d.waitTCP(ctx, s.inbound, s.name+" sidecar"); err != nil {
			return err
		}
		if s.outbound != "" {
			if err := d.waitTCP(ctx, s.outbound, s.name+" sidecar outbound"); err != nil {
				return err
			}
		}
	}
	fmt.Println("demo: starting the traffic generator")
	_, err = d.spawn("loadgen", os.Stdout, filepath.Join(d.bin, "loadgen"),
		"--target", "http://"+inboundOf("product"))
	return err
}

// waitHTTP waits until url answers (any status below 500), a process died,
// or 20 seconds pass.
func (d *demo) waitHTTP(ctx context.Context, url, what string) error {
	client := &http.Client{Timeout: time.Second}
	return d.wait(ctx, what, func() bool {
		resp, err := client.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode < 500
	})
}

func (d *demo) waitTCP(ctx context.Context, addr, what string) error {
	return d.wait(ctx, what, func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
}

func (d *demo) wait(ctx context.Context, what string, ready func() bool) error {
	deadline := time.Now().Add(20 * time.Second)
	for !ready() {
		select {
		case <-ctx.Done():
			return errors.New("interrupted")
		case p := <-d.died:
			return fmt.Errorf("%s exited while waiting for %s: %v (log: %s)", p.name, what, p.err, p.log)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not up after 20s", what)
		}
	}
	return nil
}

func checkPortsFree() error {
	addrs := []string{mixerGRPC, mixerAdmin, metricsAddr}
	for _, s := range services {
		addrs = append(addrs, s.app, s.inbound, s.admin)
		if s.outbound != "" {
			addrs = append(addrs, s.outbound)
		}
	}
	var busy []string
	for _, a := range addrs {
		l, err := net.Listen("tcp", a)
		if err != nil {
			busy = append(busy, a)
			continue
		}
		l.Close()
	}
	if len(busy) > 0 {
		return fmt.Errorf("ports in use: %s (is another demo running?)", strings.Join(busy, ", "))
	}
	return nil
}

func (d *demo) banner(seconds int) {
	product := "http://" + inboundOf("product")
	until := "Press Ctrl-C to stop."
	if seconds > 0 {
		until = fmt.Sprintf("Stopping by itself after %d seconds (DEMO_SECONDS).", seconds)
	}
	fmt.Printf(`
sidemix demo is running. %s

  shop (through product's sidecar)  %s/products
  Istio metrics (Prometheus text)   http://%s/metrics
  mixer admin                       http://%s/  (/metrics, /debug/config, /healthz)
  sidecar admin                     product http://%s/metrics, invoice http://%s/metrics, notification http://%s/metrics
  access log (JSON lines)           %s
  process logs                      %s

Try:
  allowed (200)       curl -i %s/products
  an order (201)      curl -i '%s/checkout?item=mug'     (product → invoice → notification)
  denied (403)        curl -i %s/admin/users
  rate-limited (429)  for i in $(seq 15); do curl -s -o /dev/null -w '%%{http_code} ' '%s/checkout?item=tea'; done; echo
  blacklisted (403)   curl -i -A BadBot/1.0 %s/products
  metrics             curl -s http://%s/metrics | grep istio_requests_total
  ask the mixer       %s check -a request.path=/admin/users -a destination.workload.name=product

`, until, product, metricsAddr, mixerAdmin,
		services[2].admin, services[1].admin, services[0].admin,
		filepath.Join(d.logs, "access.log"), d.logs,
		product, product, product, product, product, metricsAddr, filepath.Join(d.bin, "sidemix"))
}

func (d *demo) stopLoadgen() {
	d.mu.Lock()
	var lg *proc
	for _, p := range d.procs {
		if p.name == "loadgen" {
			lg = p
		}
	}
	d.mu.Unlock()
	if lg != nil {
		terminate(lg, 5*time.Second)
	}
}

// stopAll stops the processes in reverse start order: traffic first, the
// mixer last, so the sidecars can flush their reports.
func (d *demo) stopAll() {
	d.mu.Lock()
	d.stopping = true
	procs := append([]*proc(nil), d.procs...)
	d.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		terminate(procs[i], 10*time.Second)
	}
}

func terminate(p *proc, timeout time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(timeout):
		fmt.Fprintf(os.Stderr, "demo: %s did not stop in %v, killing it\n", p.name, timeout)
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// verify checks that the Istio metrics counted allowed, denied and
// rate-limited requests at the product service.
func (d *demo) verify() error {
	// Let the sidecars' last report batches reach the mixer.
	time.Sleep(1500 * time.Millisecond)
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		return fmt.Errorf("scraping metrics: %w", err)
	}
	defer resp.Body.Close()
	codes := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "istio_requests_total{") ||
			!strings.Contains(line, `destination_workload="product"`) ||
			!strings.Contains(line, `reporter="destination"`) {
			continue
		}
		code := labelValue(line, "response_code")
		v, _ := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		codes[code] += v
	}
	fmt.Println("demo: istio_requests_total at product (reporter=destination), by response_code:")
	for _, c := range []string{"200", "403", "429"} {
		fmt.Printf("  %s: %.0f\n", c, codes[c])
	}
	var missing []string
	for _, c := range []string{"200", "403", "429"} {
		if codes[c] == 0 {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("no requests with response_code %s counted in istio_requests_total", strings.Join(missing, ", "))
	}
	fmt.Println("demo: ok: allowed, denied and rate-limited requests all show in the metrics")
	return d.verifyKafka()
}

func labelValue(line, label string) string {
	i := strings.Index(line, label+`="`)
	if i < 0 {
		return ""
	}
	rest := line[i+len(label)+2:]
	j := strings.IndexByte(rest, '"')
	if j < 0 {
		return ""
	}
	return rest[:j]
}

// tailLogs prints the end of every process's log, to show why a run failed.
func (d *demo) tailLogs() {
	d.mu.Lock()
	procs := append([]*proc(nil), d.procs...)
	d.mu.Unlock()
	for _, p := range procs {
		b, err := os.ReadFile(p.log)
		if err != nil || len(b) == 0 {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		if len(lines) > 15 {
			lines = lines[len(lines)-15:]
		}
		fmt.Fprintf(os.Stderr, "--- last lines of %s ---\n%s\n", p.log, strings.Join(lines, "\n"))
	}
}
