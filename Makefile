# digestline — the two commands a newcomer needs are `make demo` and `make test`.
GO       ?= go
export GOTOOLCHAIN ?= local

# Every module of the workspace (go.work), as package patterns.
MODULES  := $(shell $(GO) list -m -f '{{.Dir}}' 2>/dev/null)
PKGS     := $(addsuffix /...,$(MODULES))
BINARIES := ./cmd/digestline ./services/builder/cmd/builder ./services/pusher/cmd/pusher \
            ./services/verifier/cmd/verifier ./services/reporter/cmd/reporter ./services/notifier/cmd/notifier

.PHONY: all demo test test-build test-chaos build bench lint deps tools images compose-up compose-down screenshot
# podman-compose (Debian's package) where it is installed, else podman's own
# `podman compose` (podman 4.7+); COMPOSE="docker compose" for docker.
COMPOSE ?= $(shell command -v podman-compose >/dev/null 2>&1 && echo podman-compose || echo podman compose)
all: lint build test

## deps: download every module's dependencies
deps:
	@for m in $(MODULES); do (cd $$m && $(GO) mod download); done

## build: static binaries of the CLI and the four services into bin/
build:
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/ $(BINARIES)

## demo: the whole pipeline on embedded NATS and an embedded registry (DEMO_KEEP=1 keeps it running)
demo:
	./scripts/demo.sh

## tools: peer tools the tests compare with (crane, oras, skopeo)
tools:
	./scripts/tools.sh

## test: every module's tests, with the race detector, the chaos tests included
test: lint tools
	DIGESTLINE_REQUIRE_TOOLS=1 $(GO) test -race -count=1 -timeout 20m -tags chaos $(PKGS)

## test-build: compile what make test runs (the race-instrumented test packages, the system tests' static binaries) without linking or running a test
# go list -export compiles into the build cache and links nothing: a test
# binary's link is never cached, so building them here would link each twice.
test-build:
	$(GO) list -race -tags chaos -test -export -deps -f '{{.ImportPath}}' $(PKGS) >/dev/null
	CGO_ENABLED=0 $(GO) list -trimpath -export -deps -f '{{.ImportPath}}' $(BINARIES) >/dev/null

## test-chaos: only the heavy reliability tests (services SIGKILLed at random, NATS outages)
test-chaos: tools
	$(GO) test -race -count=1 -timeout 10m -tags chaos -run 'Chaos|Outage' ./cmd/digestline/systemtest/

## images: every service (and nats-server, and the CLI/registry) as a FROM-scratch OCI image built by digestline
images: build
	./scripts/images.sh

## compose-up: build and load the images, then start docker-compose.yml (COMPOSE="docker compose" for docker)
compose-up: images
	./scripts/load-images.sh
	$(COMPOSE) up -d

compose-down:
	$(COMPOSE) down

## screenshot: the reporter's pages in headless Chromium at 1280 and 390 px, after a promoted, a failed and a rejected run (docs/page-*.png, docs/run-*.png)
screenshot: build
	./scripts/screenshot.sh

## bench: run the benchmarks and write docs/benchmarks.md
bench: build tools
	./scripts/bench.sh

## lint: gofmt, go vet, and the code's shape (file and function sizes, the layers' imports, Markdown links: scripts/shape);
## vet builds with -race, so what it compiles is what make test's race-instrumented tests reuse
lint:
	@out=$$(gofmt -l $(MODULES)); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet -race -tags chaos $(PKGS)
	$(GO) run ./scripts/shape .
