#!/usr/bin/env bash
# Sets up a checkout of appliance on a Debian-family machine (Debian 12, Raspberry Pi OS
# bookworm, Ubuntu) and runs one thing in it:
#   deploy/dev.sh demo [ARGS]   the appliance's demo (local Live emulator when no API key)
#   deploy/dev.sh test [ARGS]   the whole test suite (pytest ARGS)
#   deploy/dev.sh setup         only set up
# It is idempotent: apt packages are installed only when missing (as root, or with sudo
# when it does not ask for a password), the virtualenv only when pyproject.toml changed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
what=${1:-setup}
[ $# -gt 0 ] && shift

# Build headers for pyalsaaudio and systemd-python (no wheels), the venv module, and the
# tools the tests drive for real: alsa-lib's plugins, JACK's dummy backend, sox, espeak-ng.
run_packages=(python3 python3-venv python3-dev gcc pkg-config libasound2-dev libsystemd-dev
  alsa-utils libasound2-plugins)
# The demo's virtual sound card (JACK dummy backend) and the emulator's voice.
demo_packages=(jackd2 espeak-ng)
test_packages=(jackd2 libjack-jackd2-dev sox espeak-ng systemd-container debootstrap)

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo "$@"
  else return 1
  fi
}

install_apt() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "deploy/dev.sh: installing ${missing[*]}" >&2
  # jackd2 asks whether to enable realtime scheduling: answer for it.
  echo "jackd2 jackd/tweak_rt_limits boolean false" | as_root debconf-set-selections 2>/dev/null || true
  if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"; then
    as_root apt-get update -q && as_root env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -q --no-install-recommends "${missing[@]}" || {
      echo "deploy/dev.sh: could not install ${missing[*]}; install them with apt and run again" >&2
      exit 69
    }
  fi
}

setup_venv() {
  local name=$1 spec=$2 stamp=.venv/.installed-$1
  if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
  fi
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    # Quiet unless it fails: build back-ends print warnings nobody needs to read.
    if ! { .venv/bin/python -m pip install -q --upgrade pip &&
      .venv/bin/python -m pip install -q -e "$spec"; } >.venv/pip.log 2>&1; then
      cat .venv/pip.log >&2
      echo "deploy/dev.sh: pip install failed (log above, also in .venv/pip.log)" >&2
      exit 69
    fi
    touch "$stamp"
  fi
}

case "$what" in
  demo)
    install_apt "${run_packages[@]}" "${demo_packages[@]}"
    setup_venv demo ".[demo]"
    exec .venv/bin/appliance demo "$@"
    ;;
  test)
    install_apt "${run_packages[@]}" "${test_packages[@]}"
    setup_venv dev ".[dev]"
    .venv/bin/ruff check appliance tests bench
    .venv/bin/ruff format --check appliance tests bench
    .venv/bin/mypy
    exec .venv/bin/python -m pytest "$@"
    ;;
  setup)
    install_apt "${run_packages[@]}" "${test_packages[@]}"
    setup_venv dev ".[dev]"
    ;;
  *)
    echo "usage: deploy/dev.sh demo|test|setup [ARGS]" >&2
    exit 64
    ;;
esac
