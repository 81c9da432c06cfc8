package meshbench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sidemix/sidemix/benchmarks/internal/harness"
)

// The paths of the latency set-up, in the order of a round.
const (
	Direct   = "direct"
	Sidemix1 = "sidemix_1"
	Sidemix2 = "sidemix_2"
	Nginx    = "nginx"
	HAProxy  = "haproxy"
)

// Paths are the latency set-up's paths, in the order of a round.
var Paths = []string{Direct, Sidemix1, Sidemix2, Nginx, HAProxy}

// Variant is the optional extra path: one sidecar like sidemix_1's with
// Options.Variant's flags added, measured in the same rounds so a
// setting's effect reads side by side. It stays out of summary.json and
// the goals.
const Variant = "sidemix_1_variant"

// The routing paths (issue 6): the client's outbound sidecar straight to
// the app, once with plain --upstreams (SidemixOut) and once with --routes
// (SidemixRouted): a VirtualService splitting 90/10 over two subsets of a
// DestinationRule with outlier detection, with a timeout and retries, to
// two app instances. Same rounds; in summary.json under "routing" only.
const (
	SidemixOut    = "sidemix_out"
	SidemixRouted = "sidemix_out_routed"
)

// allPaths is every path a report may hold, in the order of a round.
var allPaths = []string{Direct, Sidemix1, Variant, Sidemix2, SidemixOut, SidemixRouted, Nginx, HAProxy}

// sidemixPaths are the paths whose proxies ask the suite's mixer.
var sidemixPaths = []string{Sidemix1, Variant, Sidemix2, SidemixOut, SidemixRouted}

// Defaults of Options: Istio's published set-up.
const (
	DefaultQPS      = 1000
	DefaultConns    = 16
	DefaultPayload  = 1024
	DefaultWarmup   = 2 * time.Second
	DefaultDuration = 10 * time.Second
)

// The service names the sidecars carry; the app's quota is bound to appService.
const (
	appService    = "echo"
	clientService = "client"
	namespace     = "default"
)

// Options configure a Suite.
type Options struct {
	// Sidemix and Echo (benchmarks/cmd/fortioecho) are required; Nginx and
	// HAProxy are the peers' binaries (empty: that path is not run);
	// Jaeger, when set, receives the sidecars' spans (examples/default's
	// jaeger handler); empty leaves the tracing handler out.
	Sidemix, Echo, Nginx, HAProxy, Jaeger string
	// Examples is examples/default, loaded into the mixer.
	Examples string
	// Policy, when set, is a policy file loaded beside Examples instead of
	// the suite's own (a deny rule that does not match and a memquota
	// bound to the app's service "echo").
	Policy string
	// Variant, when set, adds the Variant path: flags added to the
	// sidemix_1 sidecar's (e.g. "--quota-prefetch-max=100").
	Variant []string
	// Paths, when set, limits the latency set-up to these paths (names
	// of allPaths); empty runs every path whose binaries are there.
	Paths []string
	// WorkDir holds generated configs.
	WorkDir string
	// QPS, Conns and Payload shape the latency runs.
	QPS, Conns, Payload int
	// Warmup and Duration shape every run.
	Warmup, Duration time.Duration
	// AllCPUs is the taskset list of the latency set-up's processes (the
	// harness may run pinned elsewhere); empty leaves them unpinned.
	AllCPUs string
	// ProxyCPU and OtherCPUs are the ceiling runs' cores: the proxy alone
	// on ProxyCPU, the app and the mixer on OtherCPUs.
	ProxyCPU, OtherCPUs string
	// Log receives progress lines.
	Log io.Writer
}

func (o *Options) setDefaults() {
	if o.QPS <= 0 {
		o.QPS = DefaultQPS
	}
	if o.Conns <= 0 {
		o.Conns = DefaultConns
	}
	if o.Payload <= 0 {
		o.Payload = DefaultPayload
	}
	if o.Warmup <= 0 {
		o.Warmup = DefaultWarmup
	}
	if o.Duration <= 0 {
		o.Duration = DefaultDuration
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
}

// backend is an app and a mixer.
type backend struct {
	echo, mixer         *harness.Proc
	echoAddr, mixerAddr string
	mixerAdmin, cfgDir  string
}

func (b *backend) stop() {
	for _, p := range []*harness.Proc{b.mixer, b.echo} {
		if p != nil {
			_ = p.Stop(10 * time.Second)
		}
	}
}

// path is one latency path: where fortio sends and which processes are
// the proxy.
type path struct {
	name  string
	t     target
	procs []*harness.Proc
	// others are processes of the path that are not its proxy (the
	// routed path's second app instance); admin is the admin address of
	// its first sidecar.
	others []*harness.Proc
	admin  string
}

func (p *path) pids() []int {
	out := make([]int, len(p.procs))
	for i, pr := range p.procs {
		out[i] = pr.Pid()
	}
	return out
}

func (p *path) stop() {
	for _, pr := range append(p.procs, p.others...) {
		_ = pr.Stop(10 * time.Second)
	}
}

// Suite holds the running app, mixer, Jaeger and every path's proxies.
type Suite struct {
	opts    Options
	payload []byte
	jaeger  *harness.Proc
	jaegerA string
	main    *backend
	paths   map[string]*path
	// Tracing says where the sidecars' spans go.
	Tracing string
}

// New validates opts and starts the latency set-up.
func New(opts Options) (*Suite, error) {
	opts.setDefaults()
	if opts.Sidemix == "" || opts.Echo == "" || opts.Examples == "" || opts.WorkDir == "" {
		return nil, errors.New("meshbench: Sidemix, Echo, Examples and WorkDir are required")
	}
	for _, p := range opts.Paths {
		if !slices.Contains(allPaths, p) {
			return nil, fmt.Errorf("meshbench: no path %q (want some of %s)", p, strings.Join(allPaths, ", "))
		}
		if p == Variant && len(opts.Variant) == 0 {
			return nil, fmt.Errorf("meshbench: path %s needs Variant flags", Variant)
		}
	}
	s := &Suite{opts: opts, payload: payload(opts.Payload), paths: map[string]*path{}}
	if err := s.start(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func payload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = 'a' + byte(i%26)
	}
	return b
}

func (s *Suite) logf(format string, args ...any) { fmt.Fprintf(s.opts.Log, format+"\n", args...) }

func (s *Suite) start() error {
	if s.opts.Jaeger != "" {
		if err := s.startJaeger(); err != nil {
			return err
		}
		s.Tracing = "sampled 100%, spans to Jaeger (examples/default/jaeger.yaml)"
	} else {
		s.Tracing = "sampled 100%, spans built and reported; no Jaeger, so no tracing handler"
	}
	var err error
	if s.main, err = s.startBackend("main", s.opts.AllCPUs, nil); err != nil {
		return err
	}
	if s.wants(Direct) {
		s.paths[Direct] = &path{name: Direct, t: target{url: "http://" + s.main.echoAddr + "/echo"}}
	}
	for _, name := range allPaths[1:] {
		if name == Variant && len(s.opts.Variant) == 0 || !s.wants(name) {
			continue
		}
		p, err := s.startPath(name, s.main, s.opts.AllCPUs, 0)
		if err != nil {
			return err
		}
		if p != nil {
			s.paths[name] = p
		}
	}
	return nil
}

// wants says whether Options.Paths selects path name.
func (s *Suite) wants(name string) bool {
	return len(s.opts.Paths) == 0 || slices.Contains(s.opts.Paths, name)
}

// Has reports whether the suite runs path name.
func (s *Suite) Has(name string) bool { return s.paths[name] != nil }

// Close stops everything the suite started.
func (s *Suite) Close() {
	for _, p := range s.paths {
		p.stop()
	}
	if s.main != nil {
		s.main.stop()
	}
	if s.jaeger != nil {
		_ = s.jaeger.Stop(10 * time.Second)
	}
}

// startBackend starts the app and a mixer pinned to cpus with env.
func (s *Suite) startBackend(label, cpus string, env []string) (*backend, error) {
	b := &backend{}
	addrs, err := harness.FreeAddrs(3)
	if err != nil {
		return nil, err
	}
	b.echoAddr, b.mixerAddr, b.mixerAdmin = addrs[0], addrs[1], addrs[2]
	b.echo, err = harness.Start(harness.Spec{Name: "fortioecho", Path: s.opts.Echo, Args: []string{"-addr", b.echoAddr}, CPUs: cpus, Env: env})
	if err != nil {
		return nil, err
	}
	if err := b.echo.WaitReady(30*time.Second, harness.TCPReady(b.echoAddr)); err != nil {
		b.stop()
		return nil, err
	}
	b.cfgDir = filepath.Join(s.opts.WorkDir, "mixer-"+label)
	if err := s.writeMixerConfig(b.cfgDir); err != nil {
		b.stop()
		return nil, err
	}
	if out, err := exec.Command(s.opts.Sidemix, "validate", b.cfgDir).CombinedOutput(); err != nil {
		b.stop()
		return nil, fmt.Errorf("sidemix validate %s: %v\n%s", b.cfgDir, err, out)
	}
	b.mixer, err = harness.Start(harness.Spec{Name: "sidemix mixer", Path: s.opts.Sidemix, CPUs: cpus, Env: env,
		Args: []string{"mixer", "--config", b.cfgDir, "--grpc", b.mixerAddr, "--admin", b.mixerAdmin, "--log-level", "warn"}})
	if err != nil {
		b.stop()
		return nil, err
	}
	if err := b.mixer.WaitReady(30*time.Second, harness.HTTPReady("http://"+b.mixerAdmin+"/readyz")); err != nil {
		b.stop()
		return nil, err
	}
	return b, nil
}

// startPath starts the proxies of path name in front of b's app, pinned to
// cpus; workers > 0 sets the proxy's worker count (GOMAXPROCS, nginx
// worker_processes, haproxy nbthread), 0 leaves one per core. A peer
// whose binary is not configured returns nil.
func (s *Suite) startPath(name string, b *backend, cpus string, workers int) (*path, error) {
	dir, err := os.MkdirTemp(s.opts.WorkDir, name+"-")
	if err != nil {
		return nil, err
	}
	var env []string
	if workers > 0 {
		env = []string{"GOMAXPROCS=" + strconv.Itoa(workers)}
	}
	if workers <= 0 {
		workers = cpuCount(cpus)
	}
	switch name {
	case Sidemix1:
		in, err := s.startSidecar("inbound", cpus, env, "--service", appService, "--app", b.echoAddr, "--mixer", b.mixerAddr)
		if err != nil {
			return nil, err
		}
		return &path{name: name, t: target{url: "http://" + in.addr + "/echo"}, procs: []*harness.Proc{in.Proc}}, nil
	case Variant:
		args := append([]string{"--service", appService, "--app", b.echoAddr, "--mixer", b.mixerAddr}, s.opts.Variant...)
		in, err := s.startSidecar("inbound", cpus, env, args...)
		if err != nil {
			return nil, err
		}
		return &path{name: name, t: target{url: "http://" + in.addr + "/echo"}, procs: []*harness.Proc{in.Proc}}, nil
	case Sidemix2:
		in, err := s.startSidecar("inbound", cpus, env, "--service", appService, "--app", b.echoAddr, "--mixer", b.mixerAddr)
		if err != nil {
			return nil, err
		}
		out, err := s.startSidecar("outbound", cpus, env, "--service", clientService, "--inbound", "",
			"--upstreams", appService+"="+in.addr, "--mixer", b.mixerAddr)
		if err != nil {
			_ = in.Stop(10 * time.Second)
			return nil, err
		}
		return &path{name: name, t: target{url: "http://" + out.addr + "/echo", host: appService}, procs: []*harness.Proc{out.Proc, in.Proc}}, nil
	case SidemixOut:
		out, err := s.startSidecar("outbound", cpus, env, "--service", clientService, "--inbound", "",
			"--upstreams", appService+"="+b.echoAddr, "--mixer", b.mixerAddr)
		if err != nil {
			return nil, err
		}
		return &path{name: name, t: target{url: "http://" + out.addr + "/echo", host: appService}, procs: []*harness.Proc{out.Proc}, admin: out.admin}, nil
	case SidemixRouted:
		return s.startRouted(dir, b, cpus, env)
	case Nginx:
		if s.opts.Nginx == "" {
			return nil, nil
		}
		return s.startNginx(dir, b.echoAddr, cpus, workers)
	case HAProxy:
		if s.opts.HAProxy == "" {
			return nil, nil
		}
		return s.startHAProxy(dir, b.echoAddr, cpus, workers)
	}
	return nil, fmt.Errorf("meshbench: no path %q", name)
}

type sidecar struct {
	*harness.Proc
	addr, admin string
}

// startSidecar starts `sidemix proxy` listening on a free port: inbound
// unless args say --inbound "", then outbound.
func (s *Suite) startSidecar(kind, cpus string, env []string, args ...string) (*sidecar, error) {
	addrs, err := harness.FreeAddrs(2)
	if err != nil {
		return nil, err
	}
	listen, admin := addrs[0], addrs[1]
	all := append([]string{"proxy", "--namespace", namespace, "--admin", admin, "--log-level", "warn"}, args...)
	if kind == "inbound" {
		all = append(all, "--inbound", listen)
	} else {
		all = append(all, "--outbound", listen)
	}
	p, err := harness.Start(harness.Spec{Name: "sidemix proxy (" + kind + ")", Path: s.opts.Sidemix, Args: all, CPUs: cpus, Env: env})
	if err != nil {
		return nil, err
	}
	if err := p.WaitReady(30*time.Second, harness.HTTPReady("http://"+admin+"/readyz")); err != nil {
		_ = p.Stop(5 * time.Second)
		return nil, err
	}
	return &sidecar{Proc: p, addr: listen, admin: admin}, nil
}

// cpuCount counts the CPUs of a taskset list ("0", "0,2", "0-3"); empty
// is the machine's.
func cpuCount(list string) int {
	if list == "" {
		return harness.CPUCount()
	}
	n := 0
	for part := range strings.SplitSeq(list, ",") {
		var lo, hi int
		if _, err := fmt.Sscanf(part, "%d-%d", &lo, &hi); err == nil && hi >= lo {
			n += hi - lo + 1
		} else {
			n++
		}
	}
	return max(n, 1)
}

// waitAnswers sends requests to p until one is answered 200.
func (s *Suite) waitAnswers(ctx context.Context, p *path) error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		res, err := fortioRun(ctx, p.t, 0, 1, s.payload, 100*time.Millisecond)
		if err != nil {
			return err
		}
		if res.ok > 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s never answered 200 (answers %s)", p.name, codeSummary(res.codes))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
