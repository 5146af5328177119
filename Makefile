# Conveniences; CI runs .ci/run, which runs the README's test command.
GO ?= go
LDFLAGS := -s -w -X main.version=$(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

.PHONY: build test test-unit bench build-arm packages test-packages demo check-configs

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/gateway ./cmd/gateway

# The whole suite, integration tests against real peers included.
test:
	$(GO) test -race ./...

# Without the peers installed, integration tests skip.
test-unit:
	FIELDBRIDGE_REQUIRE_PEERS=0 $(GO) test ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...
	bench/run.sh

# Static binaries for Raspberry Pi: armv6 (Pi Zero/1), armv7 (Pi 2/3/4 32-bit), arm64.
build-arm:
	CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=6 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/gateway-linux-armv6 ./cmd/gateway
	CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=7 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/gateway-linux-armv7 ./cmd/gateway
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/gateway-linux-arm64 ./cmd/gateway

# Debian packages (amd64, arm64, armhf for ARMv6 and up) and tarballs in
# dist/, built with nfpm from the Go module proxy.
packages:
	packaging/build.sh

# Checks the packages; as root it also installs, removes and purges the one
# for this machine.
test-packages: packages
	packaging/test.sh

demo:
	$(GO) run ./cmd/gateway --config configs/demo.yaml

check-configs:
	for f in configs/*.yaml; do $(GO) run ./cmd/gateway check --config $$f >/dev/null || exit 1; done
