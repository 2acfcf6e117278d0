r"""NNX transformer vs the same-shaped ``transformers.LlamaForCausalLM`` (PyTorch): tokens/s.

    python -m benchmarks.bench_model            # 3 Llama shapes, CPU
    python -m benchmarks.bench_model --quick    # one small shape, fewer steps
    python -m benchmarks.bench_model --sizes=d4,smollm2_135m --batch=8 --seq=128 --out=x.json
    python -m benchmarks.bench_model --sizes=smollm2_135m --batch=32 --seq=512 \
        --dtype=bfloat16 --attention=cudnn          # GPU: MFU = jax_train_tflop_s / peak

Both sides run the next-token LM path on the SAME int32 batch in this process: the NNX model is
loaded from the torch model's weights (``nnx_models.hf``), so shapes and numbers are identical
(a logits check is printed). Rows:
- ``forward``: logits of the batch (``jax.jit`` vs ``torch.no_grad`` in eval mode);
- ``train step``: cross-entropy + backward + AdamW update (one jitted, donated step vs
  ``loss.backward(); opt.step()``).
Timing: warm-up calls (compile) excluded, then the best of ``--repeats`` calls (the machines are
shared). Threads: torch uses ``torch.get_num_threads()`` (all cores), XLA its default CPU thread
pool. Without torch the torch columns are skipped with a message. ``jax_train_tflop_s`` is the
train step's achieved rate from ``scaling.flops.train_flops_per_token(cfg, seq, lm_head=True)``.
The run starts with a square 1024^3 GEMM in both frameworks: the step is matmul-bound, so the
faster GEMM rate over torch's achieved train FLOP/s is the *ceiling* printed next to each train
ratio (what any implementation could reach on this machine). JSON goes to ``--out``.
"""

from __future__ import annotations

import argparse
import os
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from benchmarks import common
from nnx_models import config as model_config
from nnx_models import hf
from nnx_models.transformer import Transformer
from scaling import flops

SIZES = {  # Llama shapes (SwiGLU): depth-rule sizes and the SmolLM2-135M preset
    "d1": lambda: model_config.ModelConfig.from_depth(1, mlp="swiglu", vocab_size=512),
    "d2": lambda: model_config.ModelConfig.from_depth(2, mlp="swiglu", vocab_size=512),
    "d4": lambda: model_config.ModelConfig.from_depth(4, mlp="swiglu", vocab_size=512),
    "d8": lambda: model_config.ModelConfig.from_depth(8, mlp="swiglu", vocab_size=512),
    "smollm2_135m": model_config.smollm2_135m,
}


def _time(fn, repeats: int) -> float:
    """Best of ``repeats`` after >= 10 calls and >= 1 s of warm-up: the first call compiles, and
    torch fills its allocator and oneDNN primitive caches in the next few. (The 32 ms vs 23 ms d2
    step seen before ``launch.host.tune_malloc`` was the allocator returning pages to the OS, not
    warm-up: it persisted for as many calls as we ran.)"""
    return common.best_wall(fn, repeats, warmup_calls=10, warmup_s=1.0)


def _torch_model(cfg: model_config.ModelConfig, path: str):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    hf_cfg = LlamaConfig(
        **{
            k: v
            for k, v in hf._hf_config(cfg).items()
            if k not in ("architectures", "model_type", "torch_dtype")
        }
    )
    model = LlamaForCausalLM(hf_cfg).float()
    model.save_pretrained(path, safe_serialization=True)
    return model


def gemm_peak_flop_s(dtype: str, have_torch: bool, n: int = 1024) -> dict:
    """FLOP/s of one [n, n] @ [n, n] matmul in each framework, same process, same warm-up.

    The train step is matmul-bound, so the faster of the two bounds what any implementation can
    reach here: ``peak / torch_train_flop_s`` is the ceiling on the train-step ratio.
    """
    out = {"jax": common.jax_gemm_flop_s(dtype, n)}
    if have_torch:
        import torch

        ta = torch.ones(n, n, dtype=getattr(torch, dtype))
        out["torch"] = 2 * n**3 / _time(lambda: ta @ ta, 10)
    return out


def bench_jax(cfg, path, tokens, repeats, **overrides):
    model = hf.load_transformer(path, **overrides)
    graphdef, params = nnx.split(model)
    tx = optax.adamw(1e-4)
    fwd = jax.jit(lambda p, t: nnx.merge(graphdef, p)(t))

    def loss_fn(p, t):
        logits = nnx.merge(graphdef, p)(t)[:, :-1]
        return optax.softmax_cross_entropy_with_integer_labels(logits, t[:, 1:]).mean()

    def train_step(p, opt_state, t):
        loss, grads = jax.value_and_grad(loss_fn)(p, t)
        updates, opt_state = tx.update(grads, opt_state, p)
        return optax.apply_updates(p, updates), opt_state, loss

    train_step = jax.jit(train_step, donate_argnums=(0, 1))
    state = {"p": params, "o": tx.init(params)}
    t = jnp.asarray(tokens)

    def step():
        state["p"], state["o"], loss = train_step(state["p"], state["o"], t)
        loss.block_until_ready()

    logits = np.asarray(fwd(params, t))
    f_time = _time(lambda: fwd(params, t).block_until_ready(), repeats)
    return logits, f_time, _time(step, repeats)


def bench_torch(model, tokens, repeats):
    import torch

    t = torch.tensor(tokens, dtype=torch.long)
    model.eval()
    with torch.no_grad():
        logits = model(t).logits.numpy()

    def fwd():
        with torch.no_grad():
            model(t)

    f_time = _time(fwd, repeats)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        opt.zero_grad(set_to_none=True)
        out = model(t).logits[:, :-1]
        loss = torch.nn.functional.cross_entropy(
            out.reshape(-1, out.shape[-1]), t[:, 1:].reshape(-1)
        )
        loss.backward()
        opt.step()

    return logits, f_time, _time(step, repeats)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="one small size, 3 repeats")
    ap.add_argument("--sizes", default="d2,d4,d8", help=f"comma list of {sorted(SIZES)}")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "bfloat16"],
        help="JAX compute dtype (fp32 master weights); torch stays fp32",
    )
    ap.add_argument(
        "--attention",
        default="xla",
        choices=["xla", "cudnn"],
        help="JAX attention implementation (cudnn: GPU with bf16)",
    )
    ap.add_argument("--no_torch", action="store_true", help="JAX rows only (MFU on a device)")
    ap.add_argument("--out", default="bench_out/bench_model.json")
    args = ap.parse_args(argv)
    sizes = ["d2"] if args.quick else args.sizes.split(",")
    repeats = 3 if args.quick else args.repeats
    bad = [s for s in sizes if s not in SIZES]
    if bad:
        raise SystemExit(f"--sizes has unknown {bad}; allowed {sorted(SIZES)}.")
    try:
        if args.no_torch:
            raise ImportError("--no_torch")
        import torch  # noqa: F401

        have_torch = True
    except ImportError:
        have_torch = False
        print("torch is not installed: torch columns skipped (pip install torch==2.13.0 for them).")
    peak = gemm_peak_flop_s(args.dtype, have_torch)
    print("GEMM 1024^3 " + ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in peak.items()))
    rows = []
    for name in sizes:
        cfg = SIZES[name]()
        tokens = np.random.default_rng(0).integers(0, cfg.vocab_size, (args.batch, args.seq))
        ntok = args.batch * args.seq
        row = {
            "size": name,
            "params": flops.param_counts(cfg, heads=False)["total"],
            "batch": args.batch,
            "seq": args.seq,
        }
        with tempfile.TemporaryDirectory() as path:
            if have_torch:
                tmodel = _torch_model(cfg, path)
            else:
                hf.save_pretrained(Transformer(cfg, rngs=nnx.Rngs(0)), path)
            j_logits, jf, jt = bench_jax(
                cfg, path, tokens, repeats, dtype=args.dtype, attention_impl=args.attention
            )
            train_flops = flops.train_flops_per_token(cfg, args.seq, lm_head=True) * ntok
            row |= {
                "jax_forward_tok_s": ntok / jf,
                "jax_train_tok_s": ntok / jt,
                "jax_train_tflop_s": train_flops / jt / 1e12,
            }
            if have_torch:
                t_logits, tf, tt = bench_torch(tmodel, tokens, repeats)
                row |= {
                    "torch_forward_tok_s": ntok / tf,
                    "torch_train_tok_s": ntok / tt,
                    "forward_ratio": tf / jf,
                    "train_ratio": tt / jt,
                    # The ratio if every FLOP of our step ran at the faster framework's GEMM rate:
                    "train_ratio_ceiling": max(peak.values()) * tt / train_flops,
                    "max_abs_logit_diff": float(np.abs(j_logits - t_logits).max()),
                }
        rows.append(row)
        print(_fmt_row(row), flush=True)
    result = {
        "device": jax.devices()[0].device_kind,
        "jax": jax.__version__,
        "cpu_count": os.cpu_count(),
        "gemm_peak_flop_s": peak,
        "rows": rows,
    }
    if have_torch:
        import torch

        result |= {"torch": torch.__version__, "torch_threads": torch.get_num_threads()}
    common.write_json(result, args.out)
    print(f"wrote {args.out}")
    return result


def _fmt_row(r: dict) -> str:
    s = (
        f"{r['size']:>13} {r['params'] / 1e6:7.2f}M B={r['batch']} L={r['seq']} | fwd jax "
        f"{r['jax_forward_tok_s']:9.0f} tok/s"
    )
    if "torch_forward_tok_s" in r:
        s += f" torch {r['torch_forward_tok_s']:9.0f} ({r['forward_ratio']:.2f}x)"
    s += f" | train jax {r['jax_train_tok_s']:8.0f} tok/s"
    if "torch_train_tok_s" in r:
        s += (
            f" torch {r['torch_train_tok_s']:8.0f} ({r['train_ratio']:.2f}x,"
            f" ceiling {r['train_ratio_ceiling']:.2f}x)"
            f" | max|dlogit| {r['max_abs_logit_diff']:.1e}"
        )
    return s


if __name__ == "__main__":
    main()
