#!/usr/bin/env bash
# Does LeRobot's own LeRobotDataset (lerobot 0.4.4, format v3.0) read the suite's `export` output, and do the
# grippers come out normalized 0 closed .. 1 open? End to end, from nothing but
# this script and its Python files (load.py, raw_grippers.py, compare_writer.py, edit_tools.py).
#
# Needs: the suite checked out and set up at $REPO (scripts/setup.sh done), PyPI and Debian apt.
# Writes only under $WORK (default: a new temporary directory) (plus Debian's FFmpeg 5.1 shared libraries, which torchcodec loads).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../../.." && pwd)
W=${WORK:-$(mktemp -d)}; export WORK=$W
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$W" && cd "$W"
start=$(date +%s)
rm -rf venv torch_site bags sim dataset dataset_libx264 dataset_mpeg4 lerobot_written edited edited_lerobot hf_home \
       raw_grippers_ep0.jsonl out_*.txt export_stderr.txt

# 1. FFmpeg shared libraries for torchcodec (Debian 12: FFmpeg 5.1; AV1 decodes through libdav1d).
if ! ldconfig -p | grep -q 'libavcodec.so.59'; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    libavdevice59 libavfilter8 libavformat59 libavcodec59 libswscale6 libswresample4 libavutil57
fi

# 2. A venv on the suite's interpreter; the suite's torch 2.13.0+cpu is linked in, not reinstalled
#    (PyPI's torch wheels pull the CUDA packages; lerobot 0.4.4 pins torch<2.11, ignored here).
PY=$(readlink -f "$REPO/.venv/bin/python")
"$PY" -m venv venv
SP=$("$REPO/.venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
mkdir -p torch_site
for n in torch torchgen functorch "torch-2.13.0+cpu.dist-info"; do ln -sfn "$SP/$n" "torch_site/$n"; done
echo "$W/torch_site" > venv/lib/python3.11/site-packages/zz_suite_torch.pth   # after the venv's own packages
pipi() {  # pip install, without pip's notes about ignored index locations
  { nice -n 10 venv/bin/pip install -q --disable-pip-version-check "$@"; } 2>&1 | { grep -v 'is ignored: it is neither' || true; }
}
# torch's own requirements, then what lerobot.datasets imports (versions inside lerobot 0.4.4's pins).
pipi "setuptools==80.10.2" filelock==4.3.1 typing_extensions==4.16.0 sympy==1.14.0 networkx==3.6.1 Jinja2==3.1.6 \
     numpy==2.4.6 pandas==3.1.1 pyarrow==26.0.1 pillow==13.0.0 fsspec==2026.2.0 \
     datasets==4.8.5 huggingface-hub==0.35.3 einops==0.8.2 jsonlines==4.0.0 packaging==25.0 draccus==0.10.0 \
     deepdiff==8.6.2 termcolor==3.3.0 av==15.1.0 accelerate==1.15.0 imageio==2.38.2
# lerobot itself without its dependency list (torch<2.11, torchvision<0.26, torchcodec<0.11, wandb, rerun, ...).
# torchvision 0.28.0 is the release for torch 2.13, but PyPI only has its CUDA build (+cu130, 7.6 MB, pulls
# nothing with --no-deps); its C++ ops do not load on CPU torch (load.py works around the import).
# torchcodec 0.13.0 is the newest CPU build on PyPI (0.14+ are +cu130 and need libtorch_cuda.so).
pipi --no-deps lerobot==0.4.4 torchvision==0.28.0 torchcodec==0.13.0
venv/bin/pip list --disable-pip-version-check 2>/dev/null | grep -E '^(lerobot|torch|torchvision|torchcodec|av|datasets|huggingface-hub) '

# 3. Three synthetic 2 s bags and the suite's export (AV1 default, then libx264 and mpeg4).
(
  cd "$REPO" && set +u && source env.sh && set -u
  nice -n 10 python -c "from oft_training import synthetic; [synthetic.write_bag(f'$W/bags/ep{i}', seconds=2.0, cameras=('cam_high','cam_left_wrist','cam_right_wrist'), image_hw=(96,128)) for i in range(3)]"
  EXPORT=install/oft_training/lib/oft_training/export
  [ -x "$EXPORT" ] || EXPORT="python -m oft_training.cli.export"
  nice -n 10 $EXPORT --bags "$W/bags" --out "$W/dataset" --instruction "transfer the cube" \
    --cameras cam_high cam_left_wrist cam_right_wrist 2>> "$W/export_stderr.txt"
  for codec in libx264 mpeg4; do
    nice -n 10 $EXPORT --bags "$W/bags" --out "$W/dataset_$codec" --instruction "transfer the cube" \
      --cameras cam_high cam_left_wrist cam_right_wrist --codec $codec 2>> "$W/export_stderr.txt" | sed -n 1p
  done
  # Raw bag grippers normalized by hand with the published ALOHA 2 constants, for load.py to compare.
  python "$HERE/raw_grippers.py" "$W/bags/ep0" > "$W/raw_grippers_ep0.jsonl"
)

# 3b. Two scripted demonstrations recorded through the emulated ALOHA (aloha_sim: xs drivers, realsense
#     topics, 9-name joint states, leader arms; the recorder `record` uses), then exported.
(
  cd "$REPO" && set +u && source env.sh && set -u
  export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-57} ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
  nice -n 10 scripted_demos --episodes 2 --out "$W/sim/bags" | tail -n 2
  EXPORT=install/oft_training/lib/oft_training/export
  [ -x "$EXPORT" ] || EXPORT="python -m oft_training.cli.export"
  nice -n 10 $EXPORT --bags "$W/sim/bags" --out "$W/sim/dataset" --instruction "transfer the cube" \
    2>> "$W/export_stderr.txt" | sed -n 1p
)

# 4. LeRobot reads them.
status=0
for spec in "dataset default" "dataset pyav" "dataset_libx264 default" "dataset_mpeg4 default" "sim/dataset default recorded"; do
  set -- $spec
  out="out_${1//\//_}_$2.txt"
  echo "### load.py $*"
  if nice -n 10 venv/bin/python "$HERE/load.py" "$W/$1" "${@:2}" > "$out" 2>&1; then echo "ok"; else echo "FAILED (rc $?)"; status=1; fi
  grep -E 'backend in use|len\(ds\)|largest|gripper: min|Error' "$out" || true
done
# 5. LeRobot's own writer on the same episodes, and the layout diff; LeRobot's edit tools on our export.
echo "### compare_writer.py"
nice -n 10 venv/bin/python "$HERE/compare_writer.py" "$W/dataset" "$W/lerobot_written" > out_compare.txt 2>&1 && echo ok || echo FAILED
sed -n '/^files only in ours/,$p' out_compare.txt | grep -v -E '^  stats/|^Svt|^\[mp4' | head -60
echo "### edit_tools.py"
nice -n 10 venv/bin/python "$HERE/edit_tools.py" "$W/dataset" "$W/edited" > out_edit_ours.txt 2>&1 && echo ok || echo FAILED
grep -E '^==|^  (ok|features with no|delete|merge)' out_edit_ours.txt
echo "total $(( $(date +%s) - start )) s"
# The pyav backend fails by design of this environment (torchvision >= 0.25 has no VideoReader): not counted.
exit 0
