#!/usr/bin/env bash
# Build a stand-in for python:3.11-slim-bookworm from a Debian mirror, for machines that
# reach a Debian mirror and PyPI but no container registry (docs/docker.md):
#
#   sudo docker/build_local_base.sh [TAG]        # default TAG local/python:3.11-bookworm
#   PYTHON_IMAGE=local/python:3.11-bookworm scripts/stack_e2e.sh
#
# debootstrap (minbase variant) installs Debian 12's python3 (3.11), python3-venv and CA
# certificates into a temporary root, which `docker import` turns into an image. Like the
# official slim image it has python3, pip via `python3 -m venv` and useradd; unlike it,
# Python lives in /usr/bin and is Debian's build of 3.11. Needs root, debootstrap (or
# DEBOOTSTRAP=/path/to/debootstrap) and a Docker engine.
#
# Behind a TLS-intercepting proxy, EXTRA_CA_CERTS="/path/a.crt /path/b.crt" adds those
# (public) CA certificates to the image's trust store and points pip, uv and requests at
# it (PIP_CERT, SSL_CERT_FILE, REQUESTS_CA_BUNDLE), as a corporate base image would.
set -euo pipefail

TAG="${1:-local/python:3.11-bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
DEBOOTSTRAP="${DEBOOTSTRAP:-debootstrap}"
ROOTFS="$(mktemp -d)"
trap 'rm -rf "${ROOTFS}"' EXIT

"${DEBOOTSTRAP}" --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "${ROOTFS}" "${MIRROR}"
rm -rf "${ROOTFS}"/var/lib/apt/lists/* "${ROOTFS}"/var/cache/apt/*.bin "${ROOTFS}"/tmp/*

changes=(--change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]')
if [[ -n "${EXTRA_CA_CERTS:-}" ]]; then
    for cert in ${EXTRA_CA_CERTS}; do
        cp "${cert}" "${ROOTFS}/usr/local/share/ca-certificates/$(basename "${cert%.*}").crt"
    done
    chroot "${ROOTFS}" update-ca-certificates
    bundle=/etc/ssl/certs/ca-certificates.crt
    changes+=(--change "ENV PIP_CERT=${bundle} SSL_CERT_FILE=${bundle} REQUESTS_CA_BUNDLE=${bundle}")
fi

tar -C "${ROOTFS}" -c . | docker import "${changes[@]}" - "${TAG}"
docker run --rm "${TAG}" python3 -c 'import sys, venv, ssl; print("python", sys.version.split()[0])'
echo "build_local_base: ${TAG} ready; build with --build-arg PYTHON_IMAGE=${TAG}"
