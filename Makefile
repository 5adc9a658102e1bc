# Lookout: the one entry point. `make run` and `make test` work on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := build

WATCHERS := slowlog client-delta memory-pressure stream-lag latency replication persistence evictions rules client-buffers
FIXTURES := wrong-world future-version panicker looper ticker slow-ticker memory-bomb recurse event-flood huge-string chatty file-open env-read sleeper impostor long-manifest long-error probe-echo slowlog-trap encoder hog
WASM_TARGET := wasm32-wasip2
CARGO ?= cargo

.PHONY: build plugins plugins-component plugins-extra fixtures run test test-unit test-plugins test-golden test-extra lint bench bench-fleet deps toolchain redis promtool redis-exporter alertmanager chromium cargo-component clean install

## Install what is missing: wasm targets, redis-server, promtool, alertmanager,
## chromium.
deps: toolchain redis promtool alertmanager chromium

toolchain:
	@rustup target list --installed 2>/dev/null | grep -qx $(WASM_TARGET) \
		|| rustup target add $(WASM_TARGET) wasm32-wasip1

redis:
	@command -v redis-server >/dev/null || { \
		echo "installing redis-server from Debian packages"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq redis-server >/dev/null; }

## promtool (Debian package prometheus): the metrics tests check /metrics with it.
promtool:
	@command -v promtool >/dev/null || { \
		echo "installing promtool from Debian packages (prometheus)"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq prometheus >/dev/null; }

## redis_exporter (Debian package prometheus-redis-exporter): the benches
## measure it beside Lookout on the same redis-server, as an anchor.
redis-exporter:
	@command -v prometheus-redis-exporter >/dev/null || command -v redis_exporter >/dev/null || { \
		echo "installing redis_exporter from Debian packages (prometheus-redis-exporter)"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq prometheus-redis-exporter >/dev/null; }

## Alertmanager (Debian package prometheus-alertmanager): the alert tests
## send to a real one.
alertmanager:
	@command -v alertmanager >/dev/null || command -v prometheus-alertmanager >/dev/null || { \
		echo "installing alertmanager from Debian packages (prometheus-alertmanager)"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq prometheus-alertmanager >/dev/null; }

## Chromium (Debian package chromium): the status tests load the page in a
## real headless browser.
chromium:
	@command -v chromium >/dev/null || { \
		echo "installing chromium from Debian packages"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }

## cargo-component built without LTO, with parallel codegen and light
## optimisation: it only packages watchers here, so its own speed does not
## matter, and the install is about a quarter shorter (README.md).
cargo-component:
	@command -v cargo-component >/dev/null || \
		CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
		CARGO_PROFILE_RELEASE_OPT_LEVEL=1 $(CARGO) install --locked cargo-component

## The host binary.
build: toolchain plugins
	$(CARGO) build --release -p lookout

## Install as a service (see docs/install.md, "Running as a service"):
##   $(PREFIX)/bin/lookout, the bundled watchers in $(PREFIX)/lib/lookout/plugins,
##   the systemd unit in $(PREFIX)/lib/systemd/system (its /usr/local paths set
##   to PREFIX), README.md and docs/ in $(PREFIX)/share/doc/lookout (the pages
##   `lookout --help` names) and /etc/lookout/lookout.toml unless one is there
##   already.
## DESTDIR stages it elsewhere. INSTALL_DEPS= installs what is built without
## building; LOOKOUT_BIN picks the binary.
PREFIX ?= /usr/local
DESTDIR ?=
INSTALL_DEPS ?= build
LOOKOUT_BIN ?= target/release/lookout

install: $(INSTALL_DEPS)
	install -D -m 755 $(LOOKOUT_BIN) $(DESTDIR)$(PREFIX)/bin/lookout
	install -d $(DESTDIR)$(PREFIX)/lib/lookout/plugins $(DESTDIR)$(PREFIX)/lib/systemd/system $(DESTDIR)/etc/lookout
	for w in $(WATCHERS); do install -m 644 plugins/$$w.wasm $(DESTDIR)$(PREFIX)/lib/lookout/plugins/ || exit 1; done
	sed 's|/usr/local|$(PREFIX)|g' packaging/lookout.service > $(DESTDIR)$(PREFIX)/lib/systemd/system/lookout.service
	chmod 644 $(DESTDIR)$(PREFIX)/lib/systemd/system/lookout.service
	install -d $(DESTDIR)$(PREFIX)/share/doc/lookout/docs
	install -m 644 README.md $(DESTDIR)$(PREFIX)/share/doc/lookout/
	install -m 644 $(wildcard docs/*.md docs/*.png) $(DESTDIR)$(PREFIX)/share/doc/lookout/docs/
	@if [ -e $(DESTDIR)/etc/lookout/lookout.toml ]; then \
		echo "kept $(DESTDIR)/etc/lookout/lookout.toml (the sample is packaging/lookout.toml)"; \
	else \
		sed 's|/usr/local|$(PREFIX)|g' packaging/lookout.toml > $(DESTDIR)/etc/lookout/lookout.toml && \
		chmod 644 $(DESTDIR)/etc/lookout/lookout.toml; \
	fi

## Watchers as plugins/NAME.wasm (plain cargo, wasm32-wasip2).
plugins: toolchain
	cd plugins && $(CARGO) build --release --target $(WASM_TARGET)
	@for w in $(WATCHERS); do \
		cp plugins/target/$(WASM_TARGET)/release/$${w//-/_}.wasm plugins/$$w.wasm; \
	done
	@ls -l plugins/*.wasm

## The same watchers built with cargo-component (proves both toolchains work).
plugins-component: toolchain cargo-component
	cd plugins && for w in $(WATCHERS); do $(CARGO) component build --release -p $$w || exit 1; done

## Watchers in other languages: plugins/hit-ratio.wasm, Python built with
## componentize-py (pinned in plugins/hit-ratio/requirements.txt, installed
## from PyPI into plugins/hit-ratio/.venv on the first build).
plugins-extra:
	plugins/hit-ratio/build.sh

## Test-only watcher components under tests/fixtures.
fixtures: toolchain
	cd tests/fixtures && $(CARGO) build --release --target $(WASM_TARGET)
	@for f in $(FIXTURES); do \
		cp tests/fixtures/target/$(WASM_TARGET)/release/$${f//-/_}.wasm tests/fixtures/$$f.wasm; \
	done

## Run the daemon on REDIS_URL, or on a throwaway local redis-server.
run: deps build
	host/scripts/run-local

## Unit tests (host and watchers), golden tests of every watcher and
## integration tests against real redis-servers.
test: deps plugins fixtures plugins-component test-plugins test-golden test-extra
	if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --no-fail-fast; \
	else $(CARGO) test --workspace; fi

## Every bundled watcher over its recorded snapshots through `lookout test
## --expect` (no Redis needed): plugins/NAME/golden/ holds snapshots.jsonl,
## expected.jsonl, NAME.toml (its settings, if any) and record.sh, which
## re-records them; tests/golden/ holds the helpers those scripts share.
test-golden: plugins
	$(CARGO) build -q -p lookout
	@for w in $(WATCHERS); do \
		golden=plugins/$$w/golden; \
		config=; [ -f $$golden/$$w.toml ] && config="--config $$golden/$$w.toml"; \
		echo "golden: $$w"; \
		target/debug/lookout test plugins/$$w.wasm --snapshots $$golden/snapshots.jsonl $$config \
			--expect $$golden/expected.jsonl --cache-dir target/golden-cache >/dev/null || exit 1; \
	done

test-plugins:
	cd plugins && $(CARGO) test

## hit-ratio (Python): its unit tests, then its golden test through
## `lookout test` with the limits it needs (plugins/hit-ratio/lookout.toml).
test-extra: plugins-extra
	cd plugins/hit-ratio && python3 -m unittest --quiet
	$(CARGO) build -q -p lookout
	target/debug/lookout test plugins/hit-ratio.wasm --lookout-config plugins/hit-ratio/lookout.toml \
		--snapshots plugins/hit-ratio/golden/snapshots.jsonl --expect plugins/hit-ratio/golden/expected.jsonl \
		--cache-dir target/golden-cache >/dev/null

lint: toolchain
	$(CARGO) fmt --all --check
	cd plugins && $(CARGO) fmt --all --check
	cd tests/fixtures && $(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	cd plugins && $(CARGO) clippy --all-targets -- -D warnings
	cd plugins && $(CARGO) clippy --target $(WASM_TARGET) -- -D warnings
	cd tests/fixtures && $(CARGO) clippy --target $(WASM_TARGET) -- -D warnings

## Benchmarks against a real local redis-server, with redis_exporter and
## the seed's Bash tick as anchors in the same run. LOOKOUT_BINS=a=PATH,b=PATH
## measures several lookout binaries side by side instead (host/benches/measure.rs).
bench: deps redis-exporter plugins plugins-extra fixtures
	$(CARGO) bench -p lookout --bench bench

## One process watching 1 to 10,000 targets on 100 local redis-servers, each
## row the median of 3 runs (FLEET_ROWS=1,1000 FLEET_WINDOW_S=10 FLEET_RUNS=1
## for a quick run; see host/benches/fleet.rs).
bench-fleet: deps redis-exporter plugins
	$(CARGO) bench -p lookout --bench fleet

clean:
	$(CARGO) clean
	cd plugins && $(CARGO) clean
	cd tests/fixtures && $(CARGO) clean
	rm -f plugins/*.wasm tests/fixtures/*.wasm
