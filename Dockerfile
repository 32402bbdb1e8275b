# Root filesystem of the managed Docker plugin, with the real ossfs.
#
# `make rootfs` builds this image and exports its filesystem; Docker never
# runs it as a container. The Python side uses Debian's python3-flask and
# gunicorn, the same packages that packaging/build-rootfs installs for the
# end-to-end tests.
#
# TODO: pin OSSFS_SHA256 here once the release asset has been downloaded and
# its checksum checked against Alibaba's release. Until then the build
# requires --build-arg OSSFS_SHA256=<sha256 of the .deb> and stops without it.
# NOTE: the asset name for Debian bookworm is a guess. Ubuntu 22.04 builds
# link libssl3 like bookworm does, but no such build was installed here.

ARG DEBIAN_IMAGE=debian:bookworm-slim

FROM ${DEBIAN_IMAGE} AS ossfs-download
ARG OSSFS_VERSION=1.91.3
ARG OSSFS_DEB=ossfs_${OSSFS_VERSION}_ubuntu22.04_amd64.deb
ARG OSSFS_URL=https://github.com/aliyun/ossfs/releases/download/v${OSSFS_VERSION}/${OSSFS_DEB}
ARG OSSFS_SHA256=
RUN test -n "${OSSFS_SHA256}" \
        || { echo "missing build argument: --build-arg OSSFS_SHA256=<sha256 of ${OSSFS_DEB}>" >&2; exit 1; }
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*
RUN curl --fail --location --silent --show-error --output /ossfs.deb "${OSSFS_URL}" \
    && echo "${OSSFS_SHA256}  /ossfs.deb" | sha256sum --check --strict -

FROM ${DEBIAN_IMAGE}
COPY --from=ossfs-download /ossfs.deb /tmp/ossfs.deb
# fuse provides fusermount, which the plugin runs to unmount volumes.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        ca-certificates fuse gunicorn python3 python3-flask /tmp/ossfs.deb \
    && rm -rf /var/lib/apt/lists/* /tmp/ossfs.deb \
    && ossfs --version
COPY plugin /opt/docker-volume-ossfs/plugin
RUN mkdir -p /mnt/acs_mnt/ossfs /var/lib/docker-volume-ossfs /run/docker/plugins
WORKDIR /opt/docker-volume-ossfs
ENV PYTHONPATH=/opt/docker-volume-ossfs
ENTRYPOINT ["python3", "-m", "plugin"]
