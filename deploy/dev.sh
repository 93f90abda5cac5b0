#!/usr/bin/env bash
# Sets up a checkout of appliance on a Debian-family machine (Debian 12, Raspberry Pi OS
# bookworm, Ubuntu) and runs one thing in it:
#   deploy/dev.sh demo [ARGS]   the appliance's demo (local Live emulator when no API key)
#   deploy/dev.sh test [ARGS]   the whole test suite (pytest ARGS)
#   deploy/dev.sh test-bookworm [ARGS]   the suite on Debian 12's own numpy (1.24),
#                               cryptography (38) and systemd-python (235) from apt, and
#                               pymicro-vad 1.0.2 (what 32-bit ARM installs), in .venv-bookworm
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
# What deploy/install.sh takes from apt instead of pip (see there).
bookworm_packages=(python3-numpy python3-cryptography python3-systemd)

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

# A venv over Debian's /usr/bin/python3 that sees apt's packages (--system-site-packages),
# as deploy/install.sh makes on a device; pip adds only what apt does not satisfy.
setup_bookworm_venv() {
  local venv=.venv-bookworm stamp=.venv-bookworm/.installed
  [ -x $venv/bin/python ] || /usr/bin/python3 -m venv --system-site-packages $venv
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    if ! { $venv/bin/python -m pip install -q --upgrade pip &&
      $venv/bin/python -m pip install -q -e ".[dev]" "pymicro-vad==1.0.2"; } >$venv/pip.log 2>&1; then
      cat $venv/pip.log >&2
      echo "deploy/dev.sh: pip install failed (log above, also in $venv/pip.log)" >&2
      exit 69
    fi
    touch "$stamp"
  fi
  # Prove the versions are apt's, not a newer pip copy that would hide a break.
  $venv/bin/python - <<'PY'
import sys
from importlib.metadata import distribution

for name in ("numpy", "cryptography", "systemd-python"):
    where = str(distribution(name).locate_file(""))
    version = distribution(name).version
    print(f"deploy/dev.sh: {name} {version} from {where}", file=sys.stderr)
    if not where.startswith("/usr/lib/python3/"):
        sys.exit(f"deploy/dev.sh: {name} is not apt's: remove .venv-bookworm and run again")
PY
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
    # The slowest tests are listed at the end: the default run must stay well under 15 min.
    exec .venv/bin/python -m pytest --durations=15 "$@"
    ;;
  test-bookworm)
    install_apt "${run_packages[@]}" "${test_packages[@]}" "${bookworm_packages[@]}"
    setup_bookworm_venv
    exec .venv-bookworm/bin/python -m pytest -p no:cacheprovider "$@"
    ;;
  setup)
    install_apt "${run_packages[@]}" "${test_packages[@]}"
    setup_venv dev ".[dev]"
    ;;
  *)
    echo "usage: deploy/dev.sh demo|test|test-bookworm|setup [ARGS]" >&2
    exit 64
    ;;
esac
