"""Rollout throughput: tree sharing vs private copies vs transformers' `generate`.

    python bench/rollout_throughput.py                      # embedded SmolLM2-135M, fp32, CPU
    python bench/rollout_throughput.py --json               # last stdout line: one JSON object
    python bench/rollout_throughput.py --config llama3-8b --dtype bfloat16   # on a GPU
    python bench/rollout_throughput.py --config qwen2.5-7b --dtype bfloat16 --profile trace.json

The workload is the tree RFTT's search grows, fixed and seeded:

    P problems. Problem p's prompt = a shared instruction prefix of --prompt-tokens token
    ids + PROBLEM_TOKENS ids of its own (random ids from the vocabulary, seeded: throughput
    does not depend on what the ids say, so no tokenizer is needed, also for --config).
    Each prompt is the root of a tree. At each of d levels every open branch forks into
    b children and each child samples exactly L tokens (temperature 1, no top-k/top-p, no
    stop ids, a seed per branch), so every branch of a level has the same length.
    Leaves = P * b^d; generated tokens = P * L * (b + b^2 + ... + b^d).

"Tokens" in tokens/s are these *generated* tokens, the same count for all three methods
(each method's count is reported and checked); the wall time is the whole workload, from
the first prefill to the last leaf's last token. Three methods run it:

- shared:   ``Engine(model, share_prefix=True)``. A fork shares its parent's KV slots
            (search/token_tree.py); only new tokens run through the model, and decode
            reads each shared node's KV once for all the branches below it (cascade
            attention; `--no-cascade` gives each branch its flat slot list). The prompts'
            instruction prefix is *not* shared across problems (one root per prompt, as
            the engine's `prefill` makes them), only within a problem's tree.
- unshared: ``Engine(model, share_prefix=False)``. Every fork copies its parent's whole
            path and recomputes it (one prefill per child), then decodes like shared.
- hf:       transformers' ``generate`` on the same tree shape, level by level: one call per
            level whose batch is every parent's full text, each expanded into b sequences
            (``num_return_sequences=b``, do_sample, temperature 1, top_k 0, top_p 1,
            ``min_new_tokens = max_new_tokens = L``), and the outputs are the next level's
            parents. This is the fairest equivalent we see: HF has no tree sharing, so
            each child re-prefills its prefix, exactly as `unshared` does, but the
            children of a level are batched in one call with its own KV cache (DynamicCache)
            for the L decode steps. The texts differ from the engines' (another RNG), the
            shapes and token counts do not. For --model the HF model is loaded from the
            same directory (``model.loading.resolve_model_dir``); for --config it is an
            HF model of the same config with its own random weights. Null when
            transformers is not importable (or with --no-hf).

Each method runs a small warm-up tree first (not timed). Timing is `time.perf_counter`
with a CUDA synchronize at every phase boundary.

KV bytes (per token: layers * kv_heads * head_dim * 2 (K and V) * dtype size):
    kv_bytes_logical = leaves * (prompt + d*L) tokens: every leaf holding its path privately
    kv_bytes_unique  = the slots the shared engine's pool holds at the end
                     = P * prompt + L * (P*b + P*b^2 + ... + P*b^d) tokens

On CUDA the shared run's decode steps are also compared with the physical floor of a
decode step: per step, bytes = weights read once (all parameters;
an untied input embedding only as the rows gathered) + the unique KV the active branches
attend to + the KV written + the fp32 logits written. `achieved_bw_fraction` =
(sum of those bytes over all decode steps / the decode calls' wall time) / the bandwidth
of a large device-to-device copy measured in the same run (bytes read + written).
Sampling and Python overhead are inside the decode time: this is what a user gets.

`--profile PATH` writes a torch profiler chrome trace of one extra (untimed) shared run.

CPU threads: on CPU the default is ONE torch thread (--threads N to change it; the JSON
says which). Measured on the 2-core sandbox this was written on, shared with other jobs
(bench/RESULTS.md): with torch's default of 2 threads the same run took 13.5 minutes
instead of 2, and the engine's many small per-layer ops suffered most (shared 19x
slower, HF generate's large batched matmuls 2.6x): OpenMP threads wait on each other
when the cores are oversubscribed. On an idle many-core CPU more threads help the large
matmuls (unshared, HF) more than the shared engine; pass --threads to measure that.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# This file lives in bench/, next to bench/kernels.py: that folder must not shadow the
# `kernels` package, and the repository root must be importable when run as a script.
REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(REPO_ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != REPO_ROOT / "bench"]

import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from model import SMALL_MODEL, load_model  # noqa: E402
from model.cli import positive_int, resolve_device  # noqa: E402
from model.config import ModelConfig  # noqa: E402
from model.loading import random_model, resolve_model_dir  # noqa: E402
from search.engine import Branch, Engine  # noqa: E402
from search.sampling import SamplingParams  # noqa: E402

PROBLEM_TOKENS = 16  # each problem's own ids after the shared instruction prefix
SAMPLING = SamplingParams(temperature=1.0)  # plain sampling: lengths fixed by L, not by stops

# Random-weight shapes for profiling without checkpoints, as config.json dicts.
CONFIGS = {
    "tiny": dict(  # milliseconds on a CPU: for tests
        architectures=["LlamaForCausalLM"], vocab_size=512, hidden_size=64, intermediate_size=128,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
        rope_theta=10000.0, max_position_embeddings=4096, tie_word_embeddings=False,
        bos_token_id=1, eos_token_id=2,
    ),
    "llama3-8b": dict(  # Meta-Llama-3-8B (no RoPE scaling: that came with 3.1)
        architectures=["LlamaForCausalLM"], vocab_size=128256, hidden_size=4096,
        intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
        num_key_value_heads=8, head_dim=128, rope_theta=500000.0, rms_norm_eps=1e-5,
        max_position_embeddings=8192, tie_word_embeddings=False,
        bos_token_id=128000, eos_token_id=128001,
    ),
    "qwen2.5-7b": dict(  # Qwen2.5-7B(-Instruct): q/k/v bias implied by Qwen2
        architectures=["Qwen2ForCausalLM"], vocab_size=152064, hidden_size=3584,
        intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
        num_key_value_heads=4, head_dim=128, rope_theta=1000000.0, rms_norm_eps=1e-6,
        max_position_embeddings=32768, tie_word_embeddings=False,
        bos_token_id=151643, eos_token_id=151645,
    ),
}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


# ------------------------------------------------------------------------ workload


@dataclass(frozen=True)
class Workload:
    problems: int  # P
    branching: int  # b
    depth: int  # d
    step_tokens: int  # L
    prompts: tuple[tuple[int, ...], ...]  # P prompts, all of the same length
    seed: int

    @property
    def prompt_len(self) -> int:
        return len(self.prompts[0])

    def branches_at(self, level: int) -> int:  # open branches after `level` forks
        return self.problems * self.branching**level

    @property
    def leaves(self) -> int:
        return self.branches_at(self.depth)

    @property
    def generated_tokens(self) -> int:
        return self.step_tokens * sum(self.branches_at(k) for k in range(1, self.depth + 1))

    @property
    def unique_tokens(self) -> int:  # what the shared tree holds
        return self.problems * self.prompt_len + self.generated_tokens

    @property
    def logical_tokens(self) -> int:  # every leaf's path, privately
        return self.leaves * (self.prompt_len + self.depth * self.step_tokens)

    @property
    def unshared_slots(self) -> int:  # roots + a full copy per child + the sampled tokens
        copies = sum(self.branches_at(k) * (self.prompt_len + (k - 1) * self.step_tokens)
                     for k in range(1, self.depth + 1))
        return self.problems * self.prompt_len + copies + self.generated_tokens

    def params(self) -> dict:
        return dict(problems=self.problems, branching=self.branching, depth=self.depth,
                    step_tokens=self.step_tokens, prompt_tokens=self.prompt_len - PROBLEM_TOKENS,
                    problem_tokens=PROBLEM_TOKENS, prompt_len=self.prompt_len, seed=self.seed,
                    leaves=self.leaves, generated_tokens=self.generated_tokens)


def make_workload(vocab_size: int, problems: int, branching: int, depth: int, step_tokens: int,
                  prompt_tokens: int, seed: int) -> Workload:
    """Seeded prompts: one instruction prefix shared by all problems + each problem's ids.
    Ids avoid the low end of the vocabulary, where checkpoints keep their special tokens."""
    g = torch.Generator().manual_seed(seed)
    low = min(16, vocab_size // 2)
    instruction = torch.randint(low, vocab_size, (prompt_tokens,), generator=g).tolist()
    prompts = tuple(
        tuple(instruction + torch.randint(low, vocab_size, (PROBLEM_TOKENS,), generator=g).tolist())
        for _ in range(problems)
    )
    return Workload(problems, branching, depth, step_tokens, prompts, seed)


def warmup_workload(w: Workload) -> Workload:
    """A small tree of the same kind: pays one-time costs (allocations, kernel compilation)."""
    return Workload(1, 2, 1, 2, (w.prompts[0][:8],), w.seed + 1)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def branch_seed(seed: int, level: int, index: int) -> int:
    """A distinct sampling stream per branch, the same whether sharing is on or off."""
    return (seed * 1_000_003 + level) * 1_000_003 + index


@dataclass
class TreeRun:
    wall_s: float
    generated_tokens: int
    leaf_tokens: list[list[int]]  # each leaf's full path: prompt + sampled tokens
    decode_levels: list[tuple[int, float]]  # (open branches, seconds of its L decode steps)
    tokens_computed: int
    kv_slots_used: int


def run_tree(engine: Engine, w: Workload, bar: tqdm | None = None) -> TreeRun:
    """Grows the workload's tree on `engine`: prefill, then per level fork b and decode L."""
    device = engine.device
    _sync(device)
    start = time.perf_counter()
    branches: list[Branch] = engine.prefill([list(p) for p in w.prompts],
                                            [branch_seed(w.seed, 0, i) for i in range(w.problems)])
    generated, decode_levels = 0, []
    for level in range(1, w.depth + 1):
        children = [engine.fork(parent, branch_seed(w.seed, level, i * w.branching + j))
                    for i, parent in enumerate(branches) for j in range(w.branching)]
        before = sum(len(c.generated) for c in children)
        _sync(device)
        t0 = time.perf_counter()
        engine.decode(children, SAMPLING, w.step_tokens)  # no stop ids: exactly L each
        _sync(device)
        decode_levels.append((len(children), time.perf_counter() - t0))
        generated += sum(len(c.generated) for c in children) - before
        branches = children
        if bar is not None:
            bar.update(1)
    wall = time.perf_counter() - start
    return TreeRun(wall, generated, [engine.text_tokens(b) for b in branches], decode_levels,
                   engine.tokens_computed, engine.pool.num_used)


def engine_for(model, w: Workload, share: bool, cascade: bool = True) -> Engine:
    slots = w.unique_tokens if share else w.unshared_slots  # a pool sized to the workload
    return Engine(model, num_slots=slots + 16, share_prefix=share, cascade=share and cascade)


def rollout_tokens(model, w: Workload, share: bool) -> list[list[int]]:
    """Every leaf's token ids for the workload, with sharing on or off (for tests)."""
    return run_tree(engine_for(model, w, share), w).leaf_tokens


# ------------------------------------------------------------------ HF baseline


def load_hf_model(args, config: ModelConfig, device: torch.device, dtype: torch.dtype):
    """(model, None) or (None, why not)."""
    try:
        import transformers
    except ImportError as err:
        return None, f"transformers not importable: {err}"
    transformers.logging.set_verbosity_error()
    if args.config:
        raw = config.to_hf_dict({v: k for k, v in DTYPES.items()}[dtype])
        hf_config = transformers.AutoConfig.for_model(raw.pop("model_type"), **raw)
        torch.manual_seed(args.seed)
        with torch.device(device):
            hf = transformers.AutoModelForCausalLM.from_config(hf_config, dtype=dtype)
    else:
        directory = resolve_model_dir(args.model)
        hf = transformers.AutoModelForCausalLM.from_pretrained(directory, dtype=dtype).to(device)
    return hf.eval(), None


def run_hf(hf, w: Workload, device: torch.device, bar: tqdm | None = None) -> TreeRun:
    """The same tree with `generate`: per level, every parent's full text expanded into b
    sampled children of exactly L new tokens."""
    torch.manual_seed(w.seed)
    _sync(device)
    start = time.perf_counter()
    seqs = torch.tensor(w.prompts, dtype=torch.int64, device=device)  # [P, S]: same lengths, no padding
    generated, computed, decode_levels = 0, 0, []
    for level in range(1, w.depth + 1):
        t0 = time.perf_counter()
        out = hf.generate(
            input_ids=seqs, attention_mask=torch.ones_like(seqs), do_sample=True, temperature=1.0,
            top_k=0, top_p=1.0, max_new_tokens=w.step_tokens, min_new_tokens=w.step_tokens,
            num_return_sequences=w.branching, pad_token_id=0,
        )
        _sync(device)
        decode_levels.append((out.shape[0], time.perf_counter() - t0))
        if out.shape != (seqs.shape[0] * w.branching, seqs.shape[1] + w.step_tokens):
            raise RuntimeError(f"generate returned {tuple(out.shape)} at level {level}: lengths not fixed")
        generated += out.shape[0] * w.step_tokens
        # each child re-prefills its parent's text, then L - 1 forwards for the rest
        computed += out.shape[0] * (seqs.shape[1] + w.step_tokens - 1)
        seqs = out
        if bar is not None:
            bar.update(1)
    wall = time.perf_counter() - start
    return TreeRun(wall, generated, seqs.tolist(), decode_levels, computed, 0)


# ---------------------------------------------------------------- bandwidth floor


def copy_bandwidth_gbps(device: torch.device) -> float:
    """Ceiling: a 1 GiB device-to-device copy, bytes read + written, median of 10."""
    n = 1 << 30
    src = torch.empty(n, dtype=torch.uint8, device=device).random_()
    dst = torch.empty_like(src)
    dst.copy_(src)
    times = []
    for _ in range(10):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        dst.copy_(src)
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) / 1e3)
    del src, dst
    return 2 * n / statistics.median(times) / 1e9


def weight_bytes_per_step(model, tokens: int) -> int:
    """Parameters read by one forward of `tokens` tokens: all of them, except that an
    untied input embedding is only gathered (tokens rows)."""
    params = {id(p): p for p in model.parameters()}
    total = sum(p.numel() * p.element_size() for p in params.values())
    emb = model.embed_tokens.weight
    if emb is not model.lm_head_weight:
        total += -emb.numel() * emb.element_size() + tokens * emb.shape[1] * emb.element_size()
    return total


def decode_floor_bytes(model, w: Workload, kv_per_token: int) -> int:
    """Sum over the shared run's decode steps of the bytes a step must move."""
    total = 0
    held = w.problems * w.prompt_len  # tree tokens below which the level's branches grow
    vocab = model.config.vocab_size
    for level in range(1, w.depth + 1):
        n = w.branches_at(level)
        for step in range(w.step_tokens):  # the forward after appending token `step`
            kv_read = (held + n * (step + 1)) * kv_per_token
            total += weight_bytes_per_step(model, n) + kv_read + n * kv_per_token + n * vocab * 4
        held += n * w.step_tokens
    return total


# ----------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--model", default=None,
                       help=f"a Hugging Face directory or '{SMALL_MODEL}' (the default)")
    which.add_argument("--config", choices=sorted(CONFIGS), default=None,
                       help="a random-weight model of a named shape (no checkpoint needed)")
    parser.add_argument("--problems", type=positive_int, default=2, help="P: trees (default 2)")
    parser.add_argument("--branching", type=positive_int, default=4, help="b: children per branch (default 4)")
    parser.add_argument("--depth", type=positive_int, default=2, help="d: levels (default 2)")
    parser.add_argument("--step-tokens", type=positive_int, default=16, help="L: tokens a step (default 16)")
    parser.add_argument("--prompt-tokens", type=positive_int, default=192,
                        help=f"shared instruction prefix length (default 192; + {PROBLEM_TOKENS} per problem)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, help="cuda if available, else cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default=None,
                        help="default: bfloat16 on CUDA, float32 on CPU")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="torch CPU threads (default on CPU: 1, see the module docstring; on CUDA: torch's own)")
    parser.add_argument("--no-hf", action="store_true", help="skip the transformers baseline")
    parser.add_argument("--no-cascade", dest="cascade", action="store_false",
                        help="shared run: flat per-branch KV lists instead of cascade decode (to see what it saves)")
    parser.add_argument("--profile", metavar="PATH", default=None,
                        help="write a torch profiler chrome trace of a shared run to PATH")
    parser.add_argument("--json", action="store_true", help="last stdout line: a JSON object")
    args = parser.parse_args(argv)
    args.device = resolve_device(parser, args.device)
    args.dtype = DTYPES[args.dtype or ("bfloat16" if args.device.type == "cuda" else "float32")]
    if args.config is None and args.model is None:
        args.model = SMALL_MODEL
    return args


def load(args):
    """(our model, its name)."""
    if args.config:
        config = ModelConfig.from_dict(dict(CONFIGS[args.config]), source=f"--config {args.config}")
        return random_model(config, args.seed, args.dtype, args.device).eval(), f"random {args.config}"
    model, _ = load_model(args.model, args.dtype, args.device)
    return model, str(args.model)


def main(argv: list[str] | None = None) -> dict:
    """Runs the benchmark; prints a table (or, with --json, a JSON last line); returns the dict."""
    args = parse_args(argv)
    threads = torch.get_num_threads()
    if args.threads is None and args.device.type == "cpu":
        args.threads = 1
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        with torch.inference_mode():
            result = measure(args)
    finally:
        torch.set_num_threads(threads)  # main() may be called in-process (tests)
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result)
    return result


def measure(args: argparse.Namespace) -> dict:
    device = args.device
    model, model_name = load(args)
    cfg = model.config
    w = make_workload(cfg.vocab_size, args.problems, args.branching, args.depth, args.step_tokens,
                      args.prompt_tokens, args.seed)
    kv_per_token = cfg.num_hidden_layers * cfg.num_key_value_heads * cfg.head_dim * 2 * args.dtype.itemsize

    hf, hf_note = (None, "--no-hf") if args.no_hf else load_hf_model(args, cfg, device, args.dtype)
    methods = ["shared", "unshared"] + (["hf"] if hf is not None else [])
    runs: dict[str, TreeRun] = {}
    with tqdm(total=len(methods) * w.depth, desc="rollouts", unit="level", file=sys.stderr) as bar:
        for method in methods:
            bar.set_description(method)
            if method == "hf":
                run_hf(hf, warmup_workload(w), device)
                runs[method] = run_hf(hf, w, device, bar)
            else:
                share = method == "shared"
                run_tree(engine_for(model, warmup_workload(w), share, args.cascade), warmup_workload(w))
                runs[method] = run_tree(engine_for(model, w, share, args.cascade), w, bar)

    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with profile(activities=activities, record_shapes=True) as prof:
            run_tree(engine_for(model, w, True, args.cascade), w)
        prof.export_chrome_trace(args.profile)

    shared, unshared, hf_run = runs["shared"], runs["unshared"], runs.get("hf")
    rate = lambda r: r.generated_tokens / r.wall_s if r else None  # noqa: E731
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "model": model_name,
        "dtype": str(args.dtype).removeprefix("torch."),
        "cpu_threads": torch.get_num_threads(),
        "cascade": args.cascade,
        "workload": w.params(),
        "tokens_per_s_shared": rate(shared),
        "tokens_per_s_unshared": rate(unshared),
        "tokens_per_s_hf": rate(hf_run),
        "speedup_vs_unshared": unshared.wall_s / shared.wall_s,
        "speedup_vs_hf": hf_run.wall_s / shared.wall_s if hf_run else None,
        "wall_s_shared": shared.wall_s,
        "wall_s_unshared": unshared.wall_s,
        "wall_s_hf": hf_run.wall_s if hf_run else None,
        "generated_tokens_shared": shared.generated_tokens,
        "generated_tokens_unshared": unshared.generated_tokens,
        "generated_tokens_hf": hf_run.generated_tokens if hf_run else None,
        "tokens_computed_shared": shared.tokens_computed,
        "tokens_computed_unshared": unshared.tokens_computed,
        "tokens_computed_hf": hf_run.tokens_computed if hf_run else None,
        "kv_bytes_per_token": kv_per_token,
        "kv_bytes_unique": shared.kv_slots_used * kv_per_token,
        "kv_bytes_logical": w.logical_tokens * kv_per_token,
        "hf_note": hf_note,
    }
    if device.type == "cuda":
        decode_s = sum(s for _, s in shared.decode_levels)
        achieved = decode_floor_bytes(model, w, kv_per_token) / decode_s / 1e9
        copy = copy_bandwidth_gbps(device)
        result.update(decode_s_shared=decode_s, achieved_gbps=achieved, copy_gbps=copy,
                      achieved_bw_fraction=achieved / copy)
    if args.profile:
        result["profile"] = args.profile
    return result


def print_table(r: dict) -> None:
    wl = r["workload"]
    print(f"device {r['device']}; model {r['model']} ({r['dtype']})")
    print(f"workload: P={wl['problems']} b={wl['branching']} d={wl['depth']} L={wl['step_tokens']}, "
          f"prompt {wl['prompt_len']} tokens, {wl['leaves']} leaves, {wl['generated_tokens']} generated tokens")
    print(f"{'method':<10} {'tokens/s':>10} {'wall s':>8} {'computed':>9}  speedup of shared")
    for name in ("shared", "unshared", "hf"):
        tps = r[f"tokens_per_s_{name}"]
        if tps is None:
            print(f"{name:<10} {'-':>10}  ({r['hf_note']})")
            continue
        speed = {"shared": "", "unshared": f"{r['speedup_vs_unshared']:.2f}x",
                 "hf": f"{r['speedup_vs_hf']:.2f}x" if r["speedup_vs_hf"] else ""}[name]
        print(f"{name:<10} {tps:10.1f} {r[f'wall_s_{name}']:8.2f} {r[f'tokens_computed_{name}']:9d}  {speed}")
    print(f"KV bytes: unique {r['kv_bytes_unique'] / 2**20:.1f} MiB, logical {r['kv_bytes_logical'] / 2**20:.1f} MiB "
          f"({r['kv_bytes_logical'] / r['kv_bytes_unique']:.2f}x)")
    if "achieved_bw_fraction" in r:
        print(f"decode: {r['achieved_gbps']:.1f} GB/s of a {r['copy_gbps']:.1f} GB/s copy "
              f"= {100 * r['achieved_bw_fraction']:.1f}% of the floor's bandwidth")


if __name__ == "__main__":
    main()
