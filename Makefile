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

# The packages whose tests talk to Docker: they run once per engine.
# internal/swarmtest, internal/swarmnodes and internal/multihost are not among
# them: they start engines of their own (each in its own network namespace:
# the swarm's, see swarmtest's TestMain; the three "hosts" of
# testenv.StartEngineHosts, joined into one swarm by testenv.StartSwarm in
# swarmnodes), so they run once, in the `go test ./...` line below, whichever
# engine that line is for.
SELF_ENGINE_PKGS = ./internal/swarmtest/ ./internal/swarmnodes/ ./internal/multihost/
DOCKER_PKGS = $(filter-out $(SELF_ENGINE_PKGS),$(sort $(dir $(shell grep -rlE --include='*_test.go' 'testenv\.Docker|testing\.Short\(\)' .))))

# The full suite: unit tests, then integration tests against the real Docker
# Engine, registry, nginx and both compose tools, on two engines: the
# machine's (Debian's 20.10), then a current Docker Engine that
# scripts/docker-current runs beside it in a network namespace of its own
# (built once by scripts/ensure-docker-current, cached in ~/.cache/baton).
# CI runs exactly this.
test:
	./scripts/setup --compose-v2 --docker-current
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 60m ./...
	./scripts/docker-current run $(GO) test -count=1 -timeout 60m $(DOCKER_PKGS)

# Unit tests only (no Docker): a quick loop while editing.
test-short:
	$(GO) test -short ./...

# The benchmark on both engines, then their tables side by side. The JSON
# reports stay in bin/.
bench: build
	./scripts/setup --docker-current
	$(GO) build -trimpath -o bin/baton-bench ./cmd/baton-bench
	rm -f bin/bench-debian.json bin/bench-current.json
	rc=0; \
	./bin/baton-bench -json bin/bench-debian.json $(BENCH_FLAGS) || rc=$$?; \
	./scripts/docker-current run ./bin/baton-bench -json bin/bench-current.json $(BENCH_FLAGS) || rc=$$?; \
	./bin/baton-bench -compare bin/bench-debian.json,bin/bench-current.json || rc=$$?; \
	exit $$rc
