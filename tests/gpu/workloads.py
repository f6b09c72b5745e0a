"""MLX workloads for the CUDA GPU suite (tests/gpu/run.sh).

Each subcommand is one process; run.sh starts it with the guard preloaded
and checks its breadcrumbs afterwards (check.py). Weights are made here with
mlx.random and saved with mx.save_safetensors: nothing is downloaded.
"""

import argparse
import os
import sys
import tempfile
import time


def gpu():
    import mlx.core as mx

    mx.set_default_device(mx.gpu)
    return mx


def probe(_args):
    try:
        mx = gpu()
        a = mx.ones((256, 256))
        mx.eval(a @ a)
        print(f"probe: MLX {mx.__version__} on {mx.default_device()}")
        return 0
    except Exception as e:  # noqa: BLE001 - any failure means "no usable GPU"
        print(f"probe: MLX cannot run on a CUDA GPU here: {e}")
        return 1


def make_weights(mx, path, layers, dim):
    weights = {
        f"layer{i}": (mx.random.normal((dim, dim)) * (1.0 / dim**0.5)).astype(mx.float16)
        for i in range(layers)
    }
    mx.eval(weights)
    mx.save_safetensors(path, weights)
    return sum(w.nbytes for w in weights.values())


def load_cycles(args):
    mx = gpu()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.safetensors")
        size = make_weights(mx, path, args.layers, args.dim)
        mx.clear_cache()
        print(f"load_cycles: weights {size} bytes in {args.layers} layers")
        for cycle in range(args.cycles):
            weights = mx.load(path)
            x = mx.random.normal((64, args.dim)).astype(mx.float16)
            for i in range(args.layers):
                x = mx.maximum(x @ weights[f"layer{i}"], 0)
            mx.eval(x)
            peak = mx.get_peak_memory()
            del weights, x
            # MLX frees on its completion thread; wait for it so the unload
            # reaches the driver now rather than landing in MLX's buffer cache.
            mx.synchronize()
            mx.clear_cache()
            print(f"cycle {cycle}: loaded, ran, unloaded; peak={peak} active_after={mx.get_active_memory()}")
            time.sleep(args.gap)
    print("load_cycles: ok")
    return 0


def kv_growth(args):
    mx = gpu()
    heads, head_dim = args.heads, args.head_dim
    k = mx.zeros((1, heads, 0, head_dim), dtype=mx.float16)
    v = mx.zeros((1, heads, 0, head_dim), dtype=mx.float16)
    for step in range(args.steps):
        new_k = mx.random.normal((1, heads, args.chunk, head_dim)).astype(mx.float16)
        new_v = mx.random.normal((1, heads, args.chunk, head_dim)).astype(mx.float16)
        k = mx.concatenate([k, new_k], axis=2)
        v = mx.concatenate([v, new_v], axis=2)
        q = mx.random.normal((1, heads, 1, head_dim)).astype(mx.float16)
        scores = mx.softmax((q @ k.transpose(0, 1, 3, 2)) * head_dim**-0.5, axis=-1)
        out = scores @ v
        mx.eval(out, k, v)
    print(f"kv_growth: {args.steps} steps, cache {k.nbytes + v.nbytes} bytes, peak={mx.get_peak_memory()}")
    print("kv_growth: ok")
    return 0


def oversize(args):
    mx = gpu()
    a = mx.ones((1024, 1024))
    mx.eval(a @ a)
    try:
        cols = 1 << 20
        big = mx.zeros((args.bytes // (4 * cols), cols), dtype=mx.float32)
        mx.eval(big)
        print(f"oversize: {args.bytes} bytes allocated (not refused)")
        del big
    except RuntimeError as e:
        print(f"oversize: caught RuntimeError: {e}")
    b = mx.random.normal((2048, 2048))
    total = (b @ b).sum()
    mx.eval(total)
    print(f"oversize: process goes on, later GPU work ran (sum={total.item():.1f})")
    return 0


def inflight_exit(args):
    mx = gpu()
    a = mx.random.normal((args.dim, args.dim))
    mx.eval(a)
    x = a
    scale = 1.0 / args.dim**0.5
    for _ in range(args.depth):
        x = (x @ a) * scale
    mx.async_eval(x)
    print(f"inflight_exit: queued {args.depth} matmuls of {args.dim}x{args.dim}, exiting without waiting")
    sys.stdout.flush()
    if args.libc_exit:
        # exit(3) straight away: no interpreter teardown, only the C exit
        # handlers (the guard's drain among them) and static destructors.
        import ctypes

        ctypes.CDLL(None).exit(0)
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("probe").set_defaults(fn=probe)
    s = sub.add_parser("load_cycles")
    s.add_argument("--cycles", type=int, default=6)
    s.add_argument("--layers", type=int, default=8)
    s.add_argument("--dim", type=int, default=4096)
    s.add_argument("--gap", type=float, default=0.5, help="seconds between unload and the next load")
    s.set_defaults(fn=load_cycles)
    s = sub.add_parser("kv_growth")
    s.add_argument("--steps", type=int, default=256)
    s.add_argument("--chunk", type=int, default=16)
    s.add_argument("--heads", type=int, default=32)
    s.add_argument("--head-dim", type=int, default=128)
    s.set_defaults(fn=kv_growth)
    s = sub.add_parser("oversize")
    s.add_argument("--bytes", type=int, required=True)
    s.set_defaults(fn=oversize)
    s = sub.add_parser("inflight_exit")
    s.add_argument("--dim", type=int, default=8192)
    s.add_argument("--depth", type=int, default=1500)
    s.add_argument("--libc-exit", action="store_true", help="leave through exit(3), skipping Python's teardown")
    s.set_defaults(fn=inflight_exit)
    args = p.parse_args()
    start = time.time()
    rc = args.fn(args)
    if args.cmd != "probe":
        print(f"{args.cmd}: python part took {time.time() - start:.2f}s")
    return rc


if __name__ == "__main__":
    sys.exit(main())
