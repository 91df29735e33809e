# takeover — build, test, demo.
# Everything the tests need is installed by scripts/install-deps.sh (root, Debian).

GO          ?= go
BIN         := bin/takeover
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
# Packages whose concurrency matters most run under the race detector.
RACE_PKGS   := ./state/... ./steps ./provider ./provider/ovh ./provider/sim
export CGO_ENABLED ?= 0

.PHONY: all build deps test lint unit race bench demo demo-check lab-down test-acc clean

all: build

build:
	$(GO) build -trimpath -o $(BIN) ./cmd/takeover

deps:
	@if [ "$$(id -u)" = 0 ]; then scripts/install-deps.sh; else echo "make: not root: skipping scripts/install-deps.sh (root-only tests will be skipped)"; fi

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

# unit + integration tests. As root (CI) nothing may be skipped: real sshd,
# nbd-server, nbdfuse, etcd and the netns lab all run.
unit:
	TAKEOVER_TEST_DISALLOW_SKIP=$${TAKEOVER_TEST_DISALLOW_SKIP:-$$([ "$$(id -u)" = 0 ] && echo 1 || echo 0)} \
		$(GO) test -count=1 -timeout 12m ./...

race:
	CGO_ENABLED=1 TAKEOVER_TEST_DISALLOW_SKIP=$${TAKEOVER_TEST_DISALLOW_SKIP:-$$([ "$$(id -u)" = 0 ] && echo 1 || echo 0)} \
		$(GO) test -race -count=1 -timeout 10m $(RACE_PKGS)

# As root the demo runs too: `make demo` passing is part of the tests.
test: deps lint build unit demo-check race

demo-check: build
	@if [ "$$(id -u)" = 0 ]; then scripts/demo.sh; else echo "make: not root: skipping the demo"; fi

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# A real takeover in the local lab, and the failback.
demo: deps build
	scripts/demo.sh

lab-down: build
	$(BIN) lab down

# Read-only checks against the real OVH API (manual; needs credentials).
test-acc:
	TAKEOVER_ACC=1 $(GO) test -count=1 -run Acc -v ./provider/ovh

clean:
	rm -rf bin
