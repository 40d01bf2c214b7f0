# Source from bash: a shell in which every oft_* message imports and every
# console script runs (the project's venv or the sourced ROS 2 distro, plus
# this workspace's install/setup.bash). Run scripts/setup.sh once first.
_oft_root=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
_oft_venv=${OFT_VENV:-$_oft_root/.venv}
if [ ! -x "$_oft_venv/bin/python" ] || [ ! -f "$_oft_root/install/setup.bash" ]; then
  echo "env.sh: run scripts/setup.sh first" >&2
  return 1 2>/dev/null || exit 1
fi
# shellcheck disable=SC1091
source "$_oft_venv/bin/activate"
if [ -z "${ROS_DISTRO:-}" ]; then
  # ROS 2 from the venv's wheels.
  export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
  export RMW_IMPLEMENTATION=${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}
fi
# colcon's setup scripts read unset variables; keep the caller's `set -u` out of them.
case $- in *u*) _oft_nounset=1; set +u ;; *) _oft_nounset=0 ;; esac
# shellcheck disable=SC1091
source "$_oft_root/install/setup.bash"
[ "$_oft_nounset" = 1 ] && set -u
# Console scripts live in install/<pkg>/lib/<pkg>/ (where `ros2 run` looks); put
# them on PATH too, since the `ros2` CLI is not available from PyPI.
for _oft_bin in "$_oft_root"/install/oft_*/lib/oft_*; do
  [ -d "$_oft_bin" ] && case ":$PATH:" in *":$_oft_bin:"*) ;; *) PATH="$_oft_bin:$PATH" ;; esac
done
export PATH OFT_ROOT=$_oft_root
unset _oft_root _oft_venv _oft_nounset _oft_bin
