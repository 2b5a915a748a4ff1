# baton: the two commands a fresh machine needs are `make demo` and `make test`.
# Both install what is missing first (Debian packages, the Docker daemon).

GO ?= go
export CGO_ENABLED := 0

.PHONY: build demo test test-short bench setup

build:
	$(GO) build -trimpath -o bin/baton ./cmd/baton

setup:
	./scripts/setup

demo: setup
	$(GO) run ./cmd/baton-demo

# The full suite: unit tests, then integration tests against the real Docker
# Engine, registry, nginx and both compose tools. CI runs exactly this.
test:
	./scripts/setup --compose-v2
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 80m ./...

# Unit tests only (no Docker): a quick loop while editing.
test-short:
	$(GO) test -short ./...

bench: setup build
	$(GO) run ./cmd/baton-bench $(BENCH_FLAGS)
