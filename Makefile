# The two set-up commands of README.md are `make run` and `make test`.
.PHONY: run build test deps lint fmt

# Standalone mode with embedded defaults; pass flags with ARGS="--every 100".
run: build
	./target/release/orchestrator run $(ARGS)

build:
	cargo build --release --workspace

# Installs nats-server and anvil into .deps/ when missing, then runs the lint
# gates and every test of the workspace.
test:
	deps="$$(scripts/install-test-deps.sh)" && export PATH="$$deps:$$PATH" && \
	cargo fmt --all --check && \
	cargo clippy --workspace --all-targets -- -D warnings && \
	cargo build --workspace && \
	cargo test --workspace

deps:
	scripts/install-test-deps.sh

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all
