# Targets that build, create, enable and push the managed Docker plugin.
# Include this file from the top-level Makefile, or run it on its own:
#   make -f packaging/plugin-targets.mk plugin enable
#
# PLUGIN_ROOTFS chooses how the plugin's root filesystem is built:
#   dockerfile   docker build of ./Dockerfile, then its filesystem is exported;
#                needs the network for the base image and the ossfs package
#   debootstrap  packaging/build-rootfs: Debian packages only, with s3fs behind
#                the test ossfs wrapper; for tests where nothing can be pulled

# Read while make parses this file, so it is this file's path even when the
# file is included from another Makefile.
PLUGIN_REPO_ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))..)

PLUGIN_NAME ?= ossfs
PLUGIN_TAG ?= latest
DOCKER ?= docker
PLUGIN_ROOTFS ?= dockerfile
PLUGIN_DIR ?= $(PLUGIN_REPO_ROOT)/build/plugin
PLUGIN_IMAGE ?= docker-volume-ossfs-rootfs:$(PLUGIN_TAG)
# sha256 of the ossfs package that the Dockerfile downloads; the dockerfile
# build stops without it. PLUGIN_BUILD_ARGS passes more docker build options.
OSSFS_SHA256 ?=
PLUGIN_BUILD_ARGS ?=

PLUGIN_REF = $(PLUGIN_NAME):$(PLUGIN_TAG)

.PHONY: rootfs plugin enable push clean

rootfs: ## build config.json + rootfs/ in PLUGIN_DIR (PLUGIN_ROOTFS=dockerfile or debootstrap)
	rm -rf "$(PLUGIN_DIR)"
	mkdir -p "$(PLUGIN_DIR)"
ifeq ($(PLUGIN_ROOTFS),debootstrap)
	"$(PLUGIN_REPO_ROOT)/packaging/build-rootfs" --test-ossfs "$(PLUGIN_DIR)/rootfs"
else ifeq ($(PLUGIN_ROOTFS),dockerfile)
	$(DOCKER) build --build-arg OSSFS_SHA256="$(OSSFS_SHA256)" $(PLUGIN_BUILD_ARGS) \
		-t "$(PLUGIN_IMAGE)" "$(PLUGIN_REPO_ROOT)"
	mkdir "$(PLUGIN_DIR)/rootfs"
	container=$$($(DOCKER) create "$(PLUGIN_IMAGE)") && \
	$(DOCKER) export "$$container" | tar -x -C "$(PLUGIN_DIR)/rootfs"; \
	status=$$?; $(DOCKER) rm "$$container" >/dev/null; exit $$status
else
	$(error PLUGIN_ROOTFS must be dockerfile or debootstrap, not '$(PLUGIN_ROOTFS)')
endif
	cp "$(PLUGIN_REPO_ROOT)/config.json" "$(PLUGIN_DIR)/config.json"

plugin: rootfs ## create the plugin PLUGIN_NAME:PLUGIN_TAG from a fresh rootfs (docker plugin create)
	$(DOCKER) plugin create "$(PLUGIN_REF)" "$(PLUGIN_DIR)"

enable: ## enable the plugin: Docker starts it and waits for its socket
	$(DOCKER) plugin enable "$(PLUGIN_REF)"

push: ## push the plugin to the registry named in PLUGIN_NAME (docker plugin push)
	$(DOCKER) plugin push "$(PLUGIN_REF)"

clean: ## disable and remove the plugin (fails while any of its volumes exist), delete PLUGIN_DIR
	if $(DOCKER) plugin inspect "$(PLUGIN_REF)" >/dev/null 2>&1; then \
		if [ "$$($(DOCKER) plugin inspect --format '{{.Enabled}}' "$(PLUGIN_REF)")" = true ]; then \
			$(DOCKER) plugin disable "$(PLUGIN_REF)" || exit 1; \
		fi; \
		$(DOCKER) plugin rm "$(PLUGIN_REF)" || exit 1; \
	fi
	rm -rf "$(PLUGIN_DIR)"
