# owncastd: `make run` installs and starts the server, `make test` runs every test.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= etc/owncast.toml

# Debian 12 packages: to build the extension and run the server ...
DEB_BUILD := python3 python3-venv python3-dev gcc pkg-config ffmpeg libpq5 \
	libavcodec-dev libavformat-dev libswscale-dev libavutil-dev libswresample-dev
# ... and what the tests and benchmarks drive (real clients, a real browser, reference servers).
DEB_TEST := gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
	gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav \
	nginx libnginx-mod-rtmp sqlite3 procps chromium wrk strace \
	debhelper dpkg-dev fakeroot lintian devscripts \
	postgresql redis-server

SOURCES := setup.py pyproject.toml $(shell find owncastd -type f \
	-not -name '*.c' -not -name '*.so' -not -path '*/__pycache__/*' 2>/dev/null)

.PHONY: install run test bench deb-deps deb-test-deps clean vendor deb

install: deb-deps $(VENV)/.installed

# Installs missing Debian packages when run as root; otherwise says what to install.
define apt_install
	@missing=$$(for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:" $$missing; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "missing Debian packages:" $$missing; \
	    echo "run as root, or: sudo apt-get install" $$missing; exit 1; \
	  fi; \
	fi
endef

deb-deps:
	$(call apt_install,$(DEB_BUILD))

deb-test-deps:
	$(call apt_install,$(DEB_TEST))

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(VENV)/bin/python $(SOURCES)
	$(BIN)/pip install -q .
	@touch $@

$(VENV)/.test-installed: $(VENV)/bin/python requirements-test.txt
	$(BIN)/pip install -q -r requirements-test.txt
	@touch $@

run: install
	$(BIN)/owncastd start --config $(CONFIG)

# The API tests once more with every daemon on PostgreSQL (a throwaway server that
# tests/pg.py starts): the store's SQL must mean the same on both (issue 18).
PG_TESTS := $(addprefix tests/,test_api.py test_admin_config.py test_chat.py test_chat_ws.py \
	test_integrations.py test_tokens.py test_viewers.py test_compat_007.py test_webhooks.py \
	test_samples.py test_auth_table.py test_metrics.py test_xss.py test_secrets.py \
	test_directory.py test_moderation.py test_stream_keys.py)

# A failed test is run once more (pytest-rerunfailures; the summary counts reruns): on a
# 2-core machine a few real-time tests (live streams, kill -9, browsers) can miss a deadline
# under load. A test that fails twice fails the run; -rfER names every failure and rerun.
test: install deb-test-deps $(VENV)/.test-installed
	$(BIN)/pytest -q -rfER --reruns 1 tests
	OWNCASTD_TEST_STORE=postgresql $(BIN)/pytest -q -rfER --reruns 1 -p no:cacheprovider $(PG_TESTS)

bench: install deb-test-deps $(VENV)/.test-installed
	$(BIN)/pytest -q bench --benchmark-columns=min,mean,max,rounds -p no:cacheprovider

# Refreshes the vendored hls.js (committed, so installing needs no npm): make vendor HLSJS=1.x.y
HLSJS ?= 1.7.4
HLSJS_DIR := owncastd/assets/web/vendor/hls.js
vendor:
	tmp=$$(mktemp -d) && (cd $$tmp && npm pack -q hls.js@$(HLSJS) >/dev/null && tar xzf hls.js-$(HLSJS).tgz) && \
	mkdir -p $(HLSJS_DIR) && cp $$tmp/package/dist/hls.min.js $$tmp/package/dist/hls.worker.js \
	  $$tmp/package/LICENSE $(HLSJS_DIR)/ && rm -rf $$tmp
	sed -i 's/^Version: .*/Version: $(HLSJS)/' $(HLSJS_DIR)/README.md

# dist/owncastd_*.deb, built by dpkg-buildpackage in a copy of the tree (docs/PACKAGING.md).
deb: deb-deps deb-test-deps
	rm -rf build/deb && mkdir -p build/deb/src dist
	tar -c --exclude-vcs --exclude=./.venv --exclude=./build --exclude=./dist --exclude=./data \
	  --exclude='__pycache__' --exclude='*.so' --exclude='owncastd/native/*.c' --exclude=./.hypothesis \
	  --exclude=./.pytest_cache --exclude=./.benchmarks . | tar -x -C build/deb/src
	cd build/deb/src && dpkg-buildpackage -b -us -uc
	rm -f dist/owncastd_* && mv build/deb/owncastd_* dist/ && rm -rf build/deb

clean:
	rm -rf build *.egg-info owncastd/native/*.c owncastd/native/*.so $(VENV)
