# The two set-up commands of README.md are `make run` and `make test`.
.PHONY: run build test deps lint fmt

# Standalone mode with embedded defaults; pass flags with ARGS="--every 100".
run: build
	./target/release/orchestrator run $(ARGS)

build:
	cargo build --release --workspace

# Installs nats-server and anvil into .deps/ when missing, then runs the lint
# gates and every test of the workspace. Without incremental caches: a full
# run compiles each crate once, and the caches (about 1.7 GiB) only cost disk.
test: export CARGO_INCREMENTAL = 0
test:
	deps="$$(scripts/install-test-deps.sh)" && export PATH="$$deps:$$PATH" && \
	cargo fmt --all --check && \
	cargo clippy --workspace --all-targets -- -D warnings && \
	cargo build --workspace && \
	cargo test --workspace
	$(MAKE) container-test

deps:
	scripts/install-test-deps.sh

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all

# Containers (README, "Containers"): the original template's compose targets,
# run in compose/ (start-services, start-split-work, ..., stop-services).
CONTAINER_TARGETS := start-services start-split-work start-mock-proving start-split-work-amd64 \
	start-multistep-mock-proving start-gpu-proving stop-services logs status image
.PHONY: $(CONTAINER_TARGETS) compose-config container-test

$(CONTAINER_TARGETS):
	$(MAKE) -C compose $@

compose-config:
	$(MAKE) -C compose config

# The container test (tests/containers.rs) on a real Docker engine, which
# scripts/containers/engine.sh installs and starts where it can; where it
# cannot, the test says so in one line and the suite goes on.
container-test:
	deps="$$(scripts/install-test-deps.sh)" && export PATH="$$deps:$$PATH" && \
	cargo test --test containers -- --ignored --nocapture --test-threads=1

# The fault suite of RELIABILITY.md: every tests/faults_*.rs, and the fault
# tests kept in files named for what they cover. Summaries (which node was
# killed, peak RSS, ...) are printed, hence --nocapture.
FAULT_TESTS = $(patsubst tests/%.rs,%,$(wildcard tests/faults_*.rs)) roles_restart roles_real_provers_faults shutdown bad_input nats_auth nats_creds
.PHONY: faults
faults:
	deps="$$(scripts/install-test-deps.sh)" && export PATH="$$deps:$$PATH" && \
	cargo test $(addprefix --test ,$(FAULT_TESTS)) -- --nocapture

# BENCHMARKS.md (benches/harness/): release binaries, the actors' own
# throughput bench, then the harness, which measures standalone, role mode
# and latency side by side with their floors and writes the report. The
# test tools come from the same install as `make test`'s. About 15 minutes
# on the 2-core build machine; BENCH_REPEATS, BENCH_SIZES and BENCH_PARTS
# make a shorter run (see benches/harness/main.rs).
.PHONY: bench
bench:
	deps="$$(scripts/install-test-deps.sh)" && export PATH="$$deps:$$PATH" && \
	cargo build --release --workspace && \
	mkdir -p target/bench && \
	cargo bench -p orchestrator-actors --bench throughput > target/bench/throughput.txt && \
	cat target/bench/throughput.txt && \
	BENCH_THROUGHPUT=target/bench/throughput.txt cargo bench -p orchestrator --bench harness
