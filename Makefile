# Every target is idempotent: it installs what is missing and skips what is done.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
APT_PACKAGES := crun runc skopeo umoci mmdebstrap docker-registry busybox-static iproute2 \
	nftables iptables uidmap zstd git ca-certificates isal pigz qemu-user-static binfmt-support \
	openssh-server openssh-client docker.io
STAMP := $(VENV)/.installed

.PHONY: setup host images test lint unit demo bench codegen clean-state compat-tools

setup: $(STAMP) host

$(STAMP): pyproject.toml
	@bash scripts/apt-install.sh $(APT_PACKAGES)
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

host:
	@bash scripts/prepare-host.sh

images: setup
	@bash scripts/registry.sh start
	$(PY) scripts/build_test_images.py --push

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench scripts examples
	$(VENV)/bin/ruff format --check src tests bench scripts examples
	$(VENV)/bin/mypy

# Regenerates the SDK classes (src/dirk/sdk/gen/) from src/dirk/schema/dirk.graphql.
codegen: $(STAMP)
	$(PY) -m dirk.codegen

unit: $(STAMP)
	$(VENV)/bin/pytest -q tests/unit

# The released official Dagger SDKs that tests/compat/ drives (own venv + node project in .cache/).
compat-tools:
	@bash scripts/compat-tools.sh

test: images lint compat-tools
	$(VENV)/bin/pytest -q -ra tests

demo: images
	$(PY) examples/demo/ci.py

bench: images
	$(PY) bench/run.py
