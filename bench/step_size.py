"""How far one optimiser step moves a model's token log-probs, at each learning rate.

    python bench/step_size.py                                   # the embedded default, 5 lrs
    python bench/step_size.py --model smollm2-135m-instruct --lr 1e-7,1e-6,1e-5 --json

AdamW's first step from a fresh state is a sign step: with m̂ = g and v̂ = g², every
weight moves by exactly lr in its gradient's direction, however small the gradient. On a
few hundred tokens the signs are coherent across a layer's inputs, so a linear layer's
output moves by about lr·‖x‖₁, and a few hundred million weights compound that over every
layer. A learning rate that is harmless on one model can move another's log-probs by
nats in one step — which PPO then sees as ratios far outside its clip.

The measurement: N response sequences (the arithmetic generator's worked solutions
written as functional-token steps, behind the solver prompt: what SFT and RL train on),
one policy-gradient loss with seeded random ±advantages per sequence, one backward; then
for each learning rate, from the same weights and gradients, one AdamW step (β = 0.9,
0.95, a fresh state, as train.ppo's first step) and the log-probs again (temperature
0.7, as train.ppo). Reported per lr, over the response tokens: the mean and max |Δ log p|,
train.ppo's approximate KL to the old policy (mean of (r − 1) − log r) and the fraction
of tokens whose ratio leaves [0.8, 1.2] (PPO's clip at ε = 0.2).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(REPO_ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != REPO_ROOT / "bench"]

import torch  # noqa: E402

from model import DEFAULT_MODEL  # noqa: E402
from model.cli import positive_int  # noqa: E402
from rftt.data import generate_arithmetic  # noqa: E402
from rftt.solution_steps import reference_rows  # noqa: E402
from train.model_io import load_base_model  # noqa: E402
from train.sequences import collate, encode_sft_example  # noqa: E402

TEMPERATURE = 0.7


def lr_list(text: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated learning rates, got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"learning rates must be > 0, got {text!r}")
    return values


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"embedded name, directory or 'tiny' (default {DEFAULT_MODEL})")
    p.add_argument("--lr", type=lr_list, default=lr_list("1e-7,3e-7,1e-6,2e-6,1e-5"),
                   help="learning rates, comma-separated (default 1e-7,3e-7,1e-6,2e-6,1e-5)")
    p.add_argument("--sequences", type=positive_int, default=16, help="response sequences (default 16)")
    p.add_argument("--seed", type=int, default=0, help="seed of the problems and the advantages (default 0)")
    p.add_argument("--json", action="store_true", help="last stdout line: a JSON object")
    return p.parse_args(argv)


def measure(args) -> dict:
    device = torch.device("cpu")
    model, tok = load_base_model(args.model, device, args.seed)
    rows = reference_rows(generate_arithmetic(args.sequences, "train", seed=args.seed))
    batch = collate([encode_sft_example(tok, r["question"], r["response"]) for r in rows], tok.eos_token_id)
    mask = batch.loss_mask.float()  # [B, T]: response tokens
    model.train()
    logp0, _ = model(batch.inputs, targets=batch.targets, temperature=TEMPERATURE)  # [B, T]
    g = torch.Generator().manual_seed(args.seed)
    adv = torch.randn(len(rows), 1, generator=g)  # one advantage a sequence, either sign
    (-(logp0 * adv * mask).sum() / mask.sum()).backward()
    logp0 = logp0.detach()
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    results = []
    for lr in args.lr:
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.copy_(weights[n])
                p.grad = grads[n].clone() if n in grads else None
        torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.0).step()
        with torch.no_grad():
            logp1, _ = model(batch.inputs, targets=batch.targets, temperature=TEMPERATURE)
        d = (logp1 - logp0) * mask
        ratio = d.exp()
        tokens = float(mask.sum())
        results.append({
            "lr": lr,
            "mean_abs_dlogp": float(d.abs().sum()) / tokens,
            "max_abs_dlogp": float(d.abs().max()),
            "approx_kl": float((((ratio - 1) - d) * mask).sum()) / tokens,
            "outside_clip": float((((ratio - 1).abs() > 0.2) * mask).sum()) / tokens,
        })
    return {"model": str(args.model), "sequences": len(rows), "response_tokens": int(mask.sum()),
            "temperature": TEMPERATURE, "optimizer": "AdamW(0.9, 0.95), first step", "steps": results}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    result = measure(args)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['model']}: {result['sequences']} sequences, {result['response_tokens']} response tokens")
        print(f"{'lr':>8} {'mean|dlogp|':>12} {'max|dlogp|':>11} {'approx KL':>10} {'outside clip':>13}")
        for r in result["steps"]:
            print(f"{r['lr']:8.0e} {r['mean_abs_dlogp']:12.4f} {r['max_abs_dlogp']:11.3f} {r['approx_kl']:10.4f} "
                  f"{r['outside_clip']:13.3f}")
    return result


if __name__ == "__main__":
    main()
