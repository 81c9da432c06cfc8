GO ?= go
BIN := bin/sidemix
GOBIN ?= $(shell $(GO) env GOPATH)/bin
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2

.PHONY: build test demo proto proto-tools bench fuzz lint

build:
	$(GO) build -o $(BIN) ./cmd/sidemix

proto-tools:
	GOBIN=$(GOBIN) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	GOBIN=$(GOBIN) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

proto: proto-tools
	PATH=$(GOBIN):$$PATH protoc -I api -I api/third_party \
		--go_out=. --go_opt=module=github.com/sidemix/sidemix \
		--go-grpc_out=. --go-grpc_opt=module=github.com/sidemix/sidemix \
		api/mixer/v1/mixer.proto
