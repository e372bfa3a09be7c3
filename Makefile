# outpost — make targets. `make help` lists them.
.DEFAULT_GOAL := help
.PHONY: help build test soak bench demo check deb

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

build: ## build the outpost binary (target/debug/outpost)
	cargo build -p outpost

test: ## install test servers, start them on 127.0.0.1, run every test
	tests/run.sh

soak: ## the crash loop with 200 kill -9 (make test runs 24)
	OUTPOST_CRASH_KILLS=200 tests/run.sh --no-capture -E 'test(kill9)'

bench: ## outpost vs AWS CLI, rclone, s5cmd, boto3+CRT on s3s-fs and radosgw (http, TLS), with 20 ms RTT, 10,000 destinations; ~1 h (BENCH_SERVER=s3s|radosgw, BENCH_TLS=1, BENCH_ONLY=a,b,delay,c..i, BENCH_REPEAT=5); writes docs/benchmarks.md
	tests/bench/run.sh

demo: ## publish sample batch files to a local radosgw bucket and show them arrive
	deploy/demo.sh

check: ## formatting and lints
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

deb: ## build the Debian package (release binary) into target/deb/
	cargo build --release -p outpost
	mkdir -p target/deb
	deploy/deb/build.sh target/release/outpost target/deb
