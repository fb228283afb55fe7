#!/usr/bin/env bash
# Build the claude-mcp image on a machine with no image registry and no Docker daemon:
# a local Debian bookworm base made with debootstrap, then the repository's Dockerfile with
# buildah (chroot isolation). Run as root (it may apt-get install debootstrap, buildah, podman).
#
#   deploy/build-image.sh                 # -> localhost/claude-mcp:dev
#   IMAGE=localhost/claude-mcp:1 deploy/build-image.sh
#
# Environment: IMAGE (the tag to build), BASE (the base image's tag, made once and then
# reused), DEBIAN_MIRROR, BUILD_CA (a CA bundle given to pip during the build only; by default
# this machine's own bundle, so a TLS-intercepting proxy that the host trusts works),
# REBUILD_BASE=1 (make the base again).
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-localhost/claude-mcp:dev}
BASE=${BASE:-localhost/base:bookworm}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
BUILD_CA=${BUILD_CA:-/etc/ssl/certs/ca-certificates.crt}

log() { printf '[build-image] %s\n' "$*" >&2; }

missing=()
for tool in debootstrap buildah podman; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
    if [[ $(id -u) != 0 ]]; then
        log "missing: ${missing[*]}; run as root (apt-get install) or install them yourself"
        exit 1
    fi
    log "installing ${missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ ${REBUILD_BASE:-0} == 1 ]] && podman image exists "$BASE"; then
    podman image rm --force "$BASE" >/dev/null
fi
if podman image exists "$BASE"; then
    log "base $BASE is present (REBUILD_BASE=1 makes it again)"
else
    # Debian bookworm's python3 is 3.11, which satisfies requires-python (>= 3.11).
    root=$(mktemp -d /var/tmp/claude-mcp-base.XXXXXX)
    trap 'rm -rf "$root"' EXIT
    log "debootstrap bookworm into $root"
    debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
        bookworm "$root" "$DEBIAN_MIRROR" >"$root.log" 2>&1 || { tail -n 30 "$root.log" >&2; exit 1; }
    rm -f "$root.log"
    cat >"$root/etc/apt/sources.list" <<EOF
deb $DEBIAN_MIRROR bookworm main
deb $DEBIAN_MIRROR bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
    chroot "$root" apt-get clean
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/tmp/* "$root"/var/log/*.log
    log "importing it as $BASE"
    tar --numeric-owner -C "$root" -c . |
        podman import --change 'CMD ["/bin/bash"]' --change 'ENV LANG=C.UTF-8' - "$BASE" >/dev/null
    rm -rf "$root"
    trap - EXIT
fi

secret=()
if [[ -s $BUILD_CA ]]; then
    secret=(--secret "id=build_ca,src=$BUILD_CA")
fi
previous=$(podman image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
log "building $IMAGE from $BASE"
# --format docker keeps HEALTHCHECK (the OCI image format has no field for it).
buildah bud --isolation chroot --format docker "${secret[@]}" \
    --build-arg BASE_IMAGE="$BASE" -t "$IMAGE" .
# The image this build replaced, now untagged, is removed (unless something still uses it).
if [[ -n $previous && $previous != "$(podman image inspect --format '{{.Id}}' "$IMAGE")" &&
      -z $(podman image inspect --format '{{join .RepoTags ""}}' "$previous" 2>/dev/null) ]]; then
    podman image unmount "$previous" >/dev/null 2>&1 || true
    podman image rm "$previous" >/dev/null 2>&1 || true
fi
log "built $IMAGE: $(podman image inspect --format '{{.Size}}' "$IMAGE") bytes"
