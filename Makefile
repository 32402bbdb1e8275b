# Targets for developers; `make help` lists them.
PYTHON ?= python3
PYTEST_ARGS ?=

# rootfs, plugin, enable, push, clean: the managed Docker plugin.
include packaging/plugin-targets.mk

.PHONY: help deps demo test test-unit bench

help:  ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 16

deps:  ## install the Debian and Python packages the demo and tests need (root)
	scripts/install-deps

demo: deps  ## mount a bucket of a local S3 server through the plugin socket, end to end
	$(PYTHON) scripts/demo.py

test: deps  ## run every test: unit, protocol, real FUSE and Docker end to end
	$(PYTHON) -m pytest $(PYTEST_ARGS)

test-unit:  ## run the fast tests that need no FUSE
	$(PYTHON) -m pytest tests/unit tests/protocol $(PYTEST_ARGS)

bench: deps  ## measure the plugin against a Flask floor and rclone and rewrite docs/benchmarks.md (root, FUSE; about 6 minutes)
	$(PYTHON) -m bench --write-docs --wait-for-quiet 600
