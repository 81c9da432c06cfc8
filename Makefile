GO ?= go
BIN := bin/sidemix
GOBIN ?= $(shell $(GO) env GOPATH)/bin
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
# The version go.mod selects for the generated code's runtime (grpc needs it).
PROTOC_GEN_GO_VTPROTO_VERSION := v0.6.1-0.20240319094008-0393e58bdf10
STATICCHECK_VERSION := v0.8.2

# The version stamped into `sidemix version`.
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

# How long each fuzz target runs under `make fuzz`.
FUZZTIME ?= 30s
# Packages whose Fuzz targets `make fuzz` runs.
FUZZPKGS ?= ./...
# `make demo` stops by itself after DEMO_SECONDS when set (and then checks
# that the metrics show allowed, denied and rate-limited requests).
DEMO_SECONDS ?=

.PHONY: build test demo demo-build proto proto-tools proto-check bench bench-quick bench-build bench-micro bench-policy bench-report fuzz lint vet clean

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/sidemix

# The end-to-end tests run last and alone: some of them judge rate-limit
# accuracy by the clock, which other packages' tests running beside them on a
# small machine would disturb.
test:
	$(GO) test -race -count=1 -timeout 20m $$($(GO) list ./... | grep -v /internal/e2e$$)
	$(GO) test -race -count=1 -timeout 20m ./internal/e2e/

demo-build: build
	$(GO) build -o bin/shop ./examples/demo/shop
	$(GO) build -o bin/loadgen ./examples/demo/loadgen
	$(GO) build -o bin/demo ./examples/demo/run

demo: demo-build
	DEMO_SECONDS=$(DEMO_SECONDS) bin/demo --bin bin --root .

proto-tools:
	GOBIN=$(GOBIN) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	GOBIN=$(GOBIN) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	GOBIN=$(GOBIN) $(GO) install github.com/planetscale/vtprotobuf/cmd/protoc-gen-go-vtproto@$(PROTOC_GEN_GO_VTPROTO_VERSION)

proto: proto-tools
	PATH=$(GOBIN):$$PATH protoc -I api -I api/third_party \
		--go_out=. --go_opt=module=github.com/sidemix/sidemix \
		--go-grpc_out=. --go-grpc_opt=module=github.com/sidemix/sidemix \
		--go-vtproto_out=. --go-vtproto_opt=module=github.com/sidemix/sidemix \
		--go-vtproto_opt=features=marshal+unmarshal+unmarshal_unsafe+size+pool \
		--go-vtproto_opt=pool=github.com/sidemix/sidemix/api/mixer/v1.CheckRequest \
		--go-vtproto_opt=pool=github.com/sidemix/sidemix/api/mixer/v1.CompressedAttributes \
		--go-vtproto_opt=pool=github.com/sidemix/sidemix/api/mixer/v1.StringMap \
		--go-vtproto_opt=pool=github.com/sidemix/sidemix/api/mixer/v1.ReportRequest \
		api/mixer/v1/mixer.proto

# Fails when the committed generated code differs from what `make proto`
# produces (or when it produces files that are not committed).
proto-check: proto
	@git diff --exit-code -- api/ || { echo "generated code in api/ is stale: run 'make proto' and commit the result" >&2; exit 1; }
	@test -z "$$(git status --porcelain --untracked-files=all -- api/)" || { git status --porcelain -- api/ >&2; echo "make proto produced uncommitted files in api/" >&2; exit 1; }

# The hot-path benchmarks: bags (benchmarks/), rule matching (policy/), the
# proxy's check cache and report enqueue (proxy/mixerclient/).
BENCHPKGS := ./benchmarks/... ./policy/ ./proxy/mixerclient/

bench-micro:
	$(GO) test -run '^$$' -bench . -benchmem -count 3 $(BENCHPKGS)

# The whole suite on real processes (benchmarks/README.md, "Mesh suite"):
# fortio at 1,000 requests/s through no proxy, one and two sidemix sidecars,
# nginx and haproxy in interleaved rounds; the one-core throughput ceiling;
# latency and CPU against the rate; the mixer's Check and Report rows. About
# 10 minutes on 2 cores. Tables, PNGs and summary.json go to
# benchmarks/results/DATE/ and latest/, and `make bench` updates the
# README's generated block. nginx and haproxy are Debian's packages.
MESHBENCH_FLAGS ?=

bench-build: build
	$(GO) build -o bin/meshbench ./benchmarks/cmd/meshbench
	$(GO) build -o bin/fortioecho ./benchmarks/cmd/fortioecho
	$(GO) build -o bin/kfakebroker ./internal/cmd/kfakebroker

bench: bench-build
	bin/meshbench -sidemix $(BIN) -readme benchmarks/README.md $(MESHBENCH_FLAGS)

# A ~2-minute subset: one short round of every part; writes the same
# results files (summary.json included), not the README.
bench-quick: bench-build
	bin/meshbench -sidemix $(BIN) -rounds 1 -warmup 1s -duration 4s -rates 1000,4000 \
		-mixer-warmup 500ms -mixer-duration 2s $(MESHBENCH_FLAGS)

# The policy path on real processes (benchmarks/README.md, "Policy path"):
# mixer Checks on one core with 1/10/100 rules, redisquota against Redis side
# by side with envoyproxy/ratelimit (built into a temporary folder), and the
# proxy's quota prefetch; three interleaved rounds, a few minutes. Tables go
# to benchmarks/results/; POLICYBENCH_FLAGS='-readme benchmarks/README.md'
# also updates the README's table.
POLICYBENCH_FLAGS ?=

bench-policy: build
	$(GO) build -o bin/policybench ./benchmarks/cmd/policybench
	bin/policybench -sidemix $(BIN) $(POLICYBENCH_FLAGS)

# The report path on real processes (benchmarks/README.md, "Report path"):
# the mixer on one core with examples/default's telemetry + kafka (kfake) +
# jaeger (testenv's cached Jaeger build), closed loop and at 1,000 mesh
# requests/s; and the same OTLP spans to the mixer and to an OpenTelemetry
# Collector built with its builder into ~/.cache/sidemix (~4 min once, not
# committed). Three interleaved rounds, a few minutes; tables go to
# benchmarks/results/. REPORTBENCH_FLAGS='-otelcol ""' skips the collector.
REPORTBENCH_FLAGS ?=

bench-report: build
	$(GO) build -o bin/reportbench ./benchmarks/cmd/reportbench
	$(GO) build -o bin/kfakebroker ./internal/cmd/kfakebroker
	bin/reportbench -sidemix $(BIN) -kfake bin/kfakebroker $(REPORTBENCH_FLAGS)

# Runs every Fuzz target of FUZZPKGS for FUZZTIME each.
fuzz:
	@set -e; for pkg in $$($(GO) list $(FUZZPKGS)); do \
		for target in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "== $$pkg $$target ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

vet:
	$(GO) vet ./...

lint: vet
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

clean:
	rm -rf bin
