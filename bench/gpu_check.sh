#!/usr/bin/env bash
# One GPU check for an H100/H200 (2026-12-04 on an H200: 173 s for the first four steps):
#
#   bench/gpu_check.sh [OUT_DIR]              OUT_DIR defaults to bench/results/gpu/
#   bench/gpu_check.sh --cpu-smoke [OUT_DIR]  the same plumbing on CPU at tiny sizes
#   bench/gpu_check.sh --download-wheels      fill .whl/ for an offline GPU machine
#   bench/gpu_check.sh --prepare-shape        fill .gpu_shape/ (the default model's config
#                                             and tokenizer, no weights) for rl_step
#
# Steps, each with its own time limit, log and JSON in OUT_DIR:
#   pytest_gpu          pytest -m gpu on the test files that have GPU tests (kernels at
#                       real sizes against their references)
#   kernels             python bench/kernels.py --json (time, bytes, % of copy bandwidth)
#   rollout_throughput  python bench/rollout_throughput.py --config qwen2.5-7b --dtype
#                       bfloat16 --json (random weights of the paper's Qwen shape)
#   rollout_flat        the same with --no-cascade --no-hf: the engine's decode on flat
#                       slot lists, to choose the engine's default on a GPU (the cascade
#                       kernel lost to tree_decode on some trees)
#   attention_sweep     python bench/attention_sweep.py --json: launch settings of decode
#                       and cascade attention timed on this GPU
#   rl_step             python bench/rl_step.py on the Qwen2.5 0.5B default's shape and
#                       tokenizer with seeded random weights (--random-weights): the GPU
#                       machine cannot install the model's packages and the device tool's
#                       64 MiB carry cannot hold its weights, but .gpu_shape/ (11.5 MB, from
#                       --prepare-shape) travels. Skipped with a message when it is missing
#                       and RL_STEP_ARGS is unset.
#   trainers            python -m train.sft, then python -m train.ppo, --preset tiny on a
#                       2-layer random model with the default's tokenizer (from
#                       .gpu_shape/): the trainers end to end on the GPU; run directories
#                       in a temporary folder, their summary.json files copied to OUT_DIR
# plus env.json (versions, GPU, commit) and summary.json (status, exit code and seconds of
# every step). The script exits non-zero if any step failed or timed out.
#
# The machine. It has torch and triton preinstalled (torch 2.11, triton 3.6, Python 3.12)
# but not this project, and no internet. So:
# - torch and triton are used as they are, never installed or upgraded;
# - the project is not installed: PYTHONPATH points at the repository root (every package
#   is a plain folder there; an editable install would need setuptools from the network);
# - the pure-Python dependencies it lacks (pytest, tqdm, safetensors, tokenizers, ...) come
#   from wheels in $GPU_WHEELS (default .whl/ at the repository root, which git ignores).
#   Fill it where there is internet with `bench/gpu_check.sh --download-wheels` (CPython
#   3.12, manylinux x86_64; numpy < 2.4, which triton 3.6's interpreter needs) and have
#   the device tool carry it (carry: [".whl"]; tens of MB, check it fits the 64 MiB
#   carry). The tool copies the working tree, but a .venv cannot travel: it is built for
#   another Python. Only wheels whose distribution is not installed yet get installed,
#   with --no-deps --no-index.
# The device tool: carry .gpu_shape (and .whl where packages are missing), command
# `timeout 560 bench/gpu_check.sh /tmp/gpu; tar czf "$OUT/gpu.tgz" -C /tmp gpu` (only 8
# files come back, and a call ends at 10 minutes: the steps' limits add up to more than
# that, their expected times to about 6 minutes).
# Environment: PYTHON (default python3); GPU_WHEELS; GPU_CHECK_LIMITS="170 110 90 90 90 170
# 150" (seconds for the seven steps, in the order above); RL_STEP_ARGS (arguments of
# bench/rl_step.py).
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
WHEELS="${GPU_WHEELS:-$REPO/.whl}"
MODE=gpu
case "${1:-}" in
  --cpu-smoke) MODE=cpu-smoke; shift ;;
  --download-wheels) MODE=download ;;
  --prepare-shape) MODE=prepare-shape ;;
  -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d'; exit 0 ;;
esac

if [ "$MODE" = download ]; then
  # Binary wheels for the GPU machine's Python, with their dependencies (none pulls torch).
  exec "$PY" -m pip download --dest "$WHEELS" --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux_2_28_x86_64 \
    pytest tqdm safetensors tokenizers "numpy<2.4" jinja2 transformers
fi

SHAPE_DIR="$REPO/.gpu_shape/qwen2.5-coder-0.5b-instruct"
if [ "$MODE" = prepare-shape ]; then
  # config.json and the tokenizer of the embedded default (converted into $RFTT_CACHE on
  # first use): everything rl_step --random-weights reads. Run with the project's Python.
  mkdir -p "$SHAPE_DIR" && cd "$REPO" && exec "$PY" - "$SHAPE_DIR" <<'EOF'
import shutil, sys
from model import DEFAULT_MODEL
from model.embedded import embedded_model_dir
assert DEFAULT_MODEL == "qwen2.5-coder-0.5b-instruct", DEFAULT_MODEL  # the folder's name says so
source = embedded_model_dir(DEFAULT_MODEL)
for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
    shutil.copy(source / name, sys.argv[1])
print(f"{sys.argv[1]}: config and tokenizer of {source}")
EOF
fi

OUT="$(mkdir -p "${1:-$REPO/bench/results/gpu}" && cd "${1:-$REPO/bench/results/gpu}" && pwd)"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
cd "$REPO" || exit 1
SUMMARY="$OUT/summary.jsonl"
: > "$SUMMARY"
FAILED=0

# record STEP STATUS CODE SECONDS NOTE: one line of the summary.
record() {
  "$PY" -c 'import json, sys; print(json.dumps(dict(step=sys.argv[1], status=sys.argv[2],
exit_code=int(sys.argv[3]), seconds=float(sys.argv[4]), note=sys.argv[5])))' "$@" >> "$SUMMARY"
  echo "[gpu_check] $1: $2 (exit $3, $4 s) $5"
}

# finish CODE: summary.json from the recorded steps, then exit CODE.
finish() {
  "$PY" -c 'import json, sys; steps = [json.loads(l) for l in open(sys.argv[1])]
json.dump(dict(ok=sys.argv[3] == "0", steps=steps), open(sys.argv[2], "w"), indent=1)' \
    "$SUMMARY" "$OUT/summary.json" "$1" && rm -f "$SUMMARY"
  echo "[gpu_check] done in $SECONDS s: $OUT/summary.json"
  exit "$1"
}

# run_step STEP LIMIT_S COMMAND...: stdout to STEP.out, stderr to STEP.log, time-limited.
run_step() {
  local step="$1" limit="$2"; shift 2
  local start=$SECONDS code status
  echo "[gpu_check] $step: $*" | tee "$OUT/$step.log"
  timeout --signal=TERM --kill-after=10 "$limit" "$@" > "$OUT/$step.out" 2>> "$OUT/$step.log"
  code=$?
  case $code in
    0) status=ok ;;
    124|137) status=timeout; FAILED=1 ;;
    *) status=failed; FAILED=1 ;;
  esac
  record "$step" "$status" "$code" "$((SECONDS - start))" "limit ${limit} s; log $step.log"
  return $code
}

# stdout_json STEP: STEP.json from STEP.out, which is one JSON document (bench/kernels.py)
# or ends with a JSON line after progress output (bench/rollout_throughput.py).
stdout_json() {
  "$PY" - "$OUT/$1.out" "$OUT/$1.json" <<'EOF' || { echo "[gpu_check] $1: no JSON in $1.out"; FAILED=1; }
import json, sys
text = open(sys.argv[1]).read()
try:
    value = json.loads(text)
except ValueError:
    for line in reversed(text.splitlines()):
        try:
            value = json.loads(line)
            break
        except ValueError:
            continue
    else:
        sys.exit(1)
json.dump(value, open(sys.argv[2], "w"), indent=1)
EOF
}

# ---------------------------------------------------------------------- setup
start=$SECONDS
(  # a subshell: its `exit 1` ends setup, not the script
  echo "[gpu_check] mode $MODE, python $PY, out $OUT"
  "$PY" -c 'import torch, triton' || { echo "torch and triton must be preinstalled"; exit 1; }
  if [ -d "$WHEELS" ]; then
    "$PY" - "$WHEELS" <<'EOF' || exit 1
import importlib.metadata as md, pathlib, subprocess, sys
todo = []
for wheel in sorted(pathlib.Path(sys.argv[1]).glob("*.whl")):
    name = wheel.name.split("-")[0]
    if name.lower() in ("torch", "triton"):
        continue  # the machine's own builds stay
    try:
        md.version(name)  # already installed: leave it
    except md.PackageNotFoundError:
        todo.append(str(wheel))
print(f"installing {len(todo)} wheel(s) from {sys.argv[1]}", flush=True)
if todo:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", *todo])
EOF
  else
    echo "no wheel folder $WHEELS: using what is installed"
  fi
  # What the steps import (transformers is optional: rollout_throughput skips its baseline).
  "$PY" - <<'EOF' || exit 1
import importlib.util, sys
missing = [m for m in ("pytest", "tqdm", "safetensors", "tokenizers", "numpy", "jinja2")
           if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"missing modules {missing}: run bench/gpu_check.sh --download-wheels where "
             "there is internet and carry .whl/ to this machine")
import numpy
if tuple(int(x) for x in numpy.__version__.split(".")[:2]) >= (2, 4):
    print(f"note: numpy {numpy.__version__}: triton 3.6's interpreter (CPU tests) needs < 2.4; "
          "the GPU steps do not use it")
EOF
  "$PY" - "$MODE" > "$OUT/env.json" <<'EOF' || exit 1
import json, platform, subprocess, sys
import torch, triton
mode = sys.argv[1]
if mode == "gpu" and not torch.cuda.is_available():
    sys.exit("no CUDA device (use --cpu-smoke to check the plumbing on CPU)")
commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
print(json.dumps(dict(
    mode=mode, python=platform.python_version(), torch=torch.__version__,
    triton=triton.__version__, cuda=torch.version.cuda,
    device=torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
    commit=commit or None), indent=1))
EOF
) > "$OUT/setup.log" 2>&1
code=$?
cat "$OUT/setup.log"
if [ $code -ne 0 ]; then
  record setup failed $code $((SECONDS - start)) "see setup.log"
  finish 1
fi
record setup ok 0 $((SECONDS - start)) "env.json"

# ---------------------------------------------------------------------- steps
# Seconds allowed to each step; GPU_CHECK_LIMITS overrides them. Maxima, about twice what
# the H200 took (pytest 96 s, kernels 9, rollout 23, rl_step 31, the sweep 95 as its own
# call); rollout_flat and trainers not timed there yet.
if [ "$MODE" = gpu ]; then
  ROLLOUT_ARGS=(--config qwen2.5-7b --dtype bfloat16)
  DEVICE=cuda
  DEFAULT_LIMITS="170 110 90 90 90 170 150"
else  # tiny sizes on CPU: proves the plumbing, measures nothing
  ROLLOUT_ARGS=(--config tiny --device cpu --dtype float32 --no-hf --problems 1 --branching 2
                --depth 1 --step-tokens 4 --prompt-tokens 16)
  DEVICE=cpu
  DEFAULT_LIMITS="120 240 120 120 60 120 300"
fi
read -r -a LIMITS <<< "${GPU_CHECK_LIMITS:-$DEFAULT_LIMITS}"

mapfile -t GPU_TEST_FILES < <(grep -l "pytest.mark.gpu" tests/test_*.py)
run_step pytest_gpu "${LIMITS[0]}" "$PY" -m pytest -q -m gpu -p no:cacheprovider \
  --junitxml="$OUT/pytest_gpu.xml" "${GPU_TEST_FILES[@]}"
cat "$OUT/pytest_gpu.out" >> "$OUT/pytest_gpu.log"
[ -f "$OUT/pytest_gpu.xml" ] && "$PY" - "$OUT/pytest_gpu.xml" "$OUT/pytest_gpu.json" <<'EOF' || FAILED=1
import json, sys, xml.etree.ElementTree as ET
suite = ET.parse(sys.argv[1]).getroot()
suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
cases = [dict(name=f"{c.get('classname')}::{c.get('name')}", seconds=float(c.get("time", 0)),
              outcome=next((child.tag for child in c if child.tag in ("failure", "error", "skipped")), "passed"))
         for c in suite.iter("testcase")]
counts = {o: sum(c["outcome"] == o for c in cases) for o in ("passed", "failure", "error", "skipped")}
json.dump(dict(counts=counts, seconds=float(suite.get("time", 0)), cases=cases),
          open(sys.argv[2], "w"), indent=1)
EOF

run_step kernels "${LIMITS[1]}" "$PY" bench/kernels.py --json && stdout_json kernels

run_step rollout_throughput "${LIMITS[2]}" "$PY" bench/rollout_throughput.py --json "${ROLLOUT_ARGS[@]}" \
  && stdout_json rollout_throughput
run_step rollout_flat "${LIMITS[3]}" "$PY" bench/rollout_throughput.py --json --no-cascade --no-hf \
  "${ROLLOUT_ARGS[@]}" && stdout_json rollout_flat

if [ -f bench/rl_step.py ] && [ "$MODE" = gpu ]; then
  # The default's shape with random weights (see the header); RL_STEP_ARGS replaces the
  # arguments, e.g. "--model DIR --json" on a machine that holds a checkpoint.
  if [ -n "${RL_STEP_ARGS:-}" ] || [ -f "$SHAPE_DIR/config.json" ]; then
    read -r -a RL_ARGS <<< "${RL_STEP_ARGS:---model $SHAPE_DIR --random-weights --json}"
    run_step rl_step "${LIMITS[4]}" "$PY" bench/rl_step.py "${RL_ARGS[@]}" && stdout_json rl_step
  else
    record rl_step skipped 0 0 "no $SHAPE_DIR (bench/gpu_check.sh --prepare-shape) and no RL_STEP_ARGS"
  fi
elif [ -f bench/rl_step.py ]; then
  record rl_step skipped 0 0 "not run in --cpu-smoke (it loads the 0.5B model)"
else
  record rl_step skipped 0 0 "bench/rl_step.py does not exist yet"
fi

# The sweep stops starting new settings 50 s before its limit. On CPU it runs tiny shapes
# through Triton's interpreter.
if [ "$MODE" = gpu ]; then
  run_step attention_sweep "${LIMITS[5]}" "$PY" bench/attention_sweep.py --json \
    --budget-s "$((LIMITS[5] - 50))" && stdout_json attention_sweep
else
  run_step attention_sweep "${LIMITS[5]}" env RFTT_KERNELS=triton TRITON_INTERPRET=1 \
    "$PY" bench/attention_sweep.py --json && stdout_json attention_sweep
fi

if [ -f "$SHAPE_DIR/config.json" ]; then
  RUNS="$(mktemp -d)"  # checkpoints and exports: too large to bring back
  run_step trainers "${LIMITS[6]}" bash -c '
    set -e
    "$1" - "$2" "$3/tiny" <<\EOF
import sys
from pathlib import Path
from model import ModelConfig, random_model, save_pretrained
from model.loading import load_config_and_tokenizer
from train.model_io import TINY_SHAPE
_, tok = load_config_and_tokenizer(Path(sys.argv[1]))
out = sys.argv[2]
config = ModelConfig.from_dict(dict(TINY_SHAPE, architectures=["LlamaForCausalLM"], vocab_size=len(tok),
                                    eos_token_id=tok.eos_token_id))
save_pretrained(random_model(config, seed=0), tok, out)
EOF
    "$1" -m train.sft --preset tiny --model "$3/tiny" --out "$3/sft" --device "$4"
    "$1" -m train.ppo --preset tiny --model "$3/sft/final" --out "$3/ppo" --device "$4"
  ' trainers "$PY" "$SHAPE_DIR" "$RUNS" "$DEVICE"
  for stage in sft ppo; do
    [ -f "$RUNS/$stage/summary.json" ] && cp "$RUNS/$stage/summary.json" "$OUT/trainers_$stage.json"
  done
  rm -rf "$RUNS"
else
  record trainers skipped 0 0 "no $SHAPE_DIR (bench/gpu_check.sh --prepare-shape)"
fi

finish $FAILED
