# entra-rotator. `make test` is what CI runs; it needs the pinned Rust toolchain and python3 (for moto).
CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: test lint fmt build check-steps bench try-discovery demo

## The product's main job: one rotation end to end against the simulated tenant, on the embedded
## default, with a line of explanation per stage. Ends by itself; leaves no process behind.
demo:
	bash scripts/demo.sh

## Run every test (unit, contract suites on the embedded and the AWS adapters, end to end, command
## line). Installs the moto server (the local AWS emulator, from PyPI) under target/ once, starts it
## on loopback for the run and stops it afterwards.
test:
	bash scripts/with-moto.sh $(CARGO) test --workspace --locked

## Formatting and clippy, warnings as errors; the dependencies' licences and duplicate versions
## (cargo-deny, deny.toml, installed once, no advisory database fetch).
## Then the AWS deployment's offline checks (cfn-lint, SAM transform, checkov, infra/checks.py).
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	# The host agent's Windows code paths (ReplaceFileW, drive and UNC paths) compile for Windows.
	$(CARGO) clippy -p rotator-agent -p rotator-agent-protocol --target x86_64-pc-windows-gnu --all-targets --locked -- -D warnings
	CARGO="$(CARGO)" bash scripts/deny.sh
	bash scripts/lint-infra.sh

fmt:
	$(CARGO) fmt --all

## Build the `rotator` command (release, in cargo's target directory).
build:
	$(CARGO) build --release --locked -p rotator

## The six Lambda packages for infra/template.yaml: target/lambda/<function>/{bootstrap,rotator.toml}.
## `make build-lambdas LAMBDA_CONFIG=path/to/rotator.toml` (LAMBDA_ARCH=arm64|x86_64; see README.md, "Deploying to AWS").
.PHONY: build-lambdas
build-lambdas:
	CARGO="$(CARGO)" bash scripts/build-lambdas.sh

## Validate the seed's example rollout and print its plan.
check-steps:
	$(CARGO) run --quiet --locked -p rotator -- steps check examples/steps/iis-app.json

## Benchmarks: full and delta sync of a simulated tenant, expiry scan, a wave of 500 rotations at
## Graph's pace (BENCH_ARGS="--only rotations --rotations 100" for it alone); then each Lambda function's
## package size, start-up time and memory up to its first poll of a local fake Runtime API, against a
## minimal lambda_runtime function; ratios against baselines measured in the same run.
## `make bench BENCH_ARGS="--apps 2000" LAMBDA_BENCH_ARGS="--runs 3"` for a quick look.
bench:
	$(CARGO) run --release --locked -p rotator-bench -- $(BENCH_ARGS)
	CARGO="$(CARGO)" bash bench/lambda-startup.sh $(LAMBDA_BENCH_ARGS)

## Discovery against the simulated tenant: sync, status, then a delta sync.
try-discovery:
	bash scripts/try-discovery.sh
