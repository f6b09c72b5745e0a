"""One timed MLX workload on the GPU (bench/gpu-overhead/run.sh runs it
unguarded and guarded, alternating). Prints one JSON line:
{"matmul_per_s": ..., "tokens_per_s": ..., "churn_per_s": ...}.

- matmul loop: 4096x4096 bf16 products, evaluated one by one.
- generation-like loop: a 12-layer, 1024-wide decoder with a growing
  key/value cache, one token at a time, evaluated every token (many small
  commits and allocations).
- allocation churn: MLX's buffer cache switched off, so every array is a
  cuMemAllocAsync + cuMemFreeAsync through the guard (the worst case for
  per-call overhead; buffers of 1 MiB, below the cadence detector's size).
Weights are random, made here.
"""

import argparse
import json
import time

import mlx.core as mx


def best_of(chunks, measure):
    """The best throughput of `chunks` timed repetitions (drops transient hiccups)."""
    return max(measure() for _ in range(chunks))


def matmul_loop(iters):
    a = mx.random.normal((4096, 4096)).astype(mx.bfloat16)
    b = mx.random.normal((4096, 4096)).astype(mx.bfloat16)
    mx.eval(a, b)
    for _ in range(10):
        mx.eval(a @ b)

    def once():
        start = time.perf_counter()
        for _ in range(iters):
            mx.eval(a @ b)
        mx.synchronize()
        return iters / (time.perf_counter() - start)

    return best_of(3, once)


def generation_loop(tokens, layers=12, dim=1024, heads=16):
    head_dim = dim // heads
    w = [
        {
            name: (mx.random.normal((dim, dim)) * dim**-0.5).astype(mx.float16)
            for name in ("q", "k", "v", "o", "up", "down")
        }
        for _ in range(layers)
    ]
    mx.eval(w)

    def run(n):
        x = mx.random.normal((1, 1, dim)).astype(mx.float16)
        caches = [(None, None) for _ in range(layers)]
        for _ in range(n):
            h = x
            for i, lw in enumerate(w):
                q = (h @ lw["q"]).reshape(1, 1, heads, head_dim).transpose(0, 2, 1, 3)
                k = (h @ lw["k"]).reshape(1, 1, heads, head_dim).transpose(0, 2, 1, 3)
                v = (h @ lw["v"]).reshape(1, 1, heads, head_dim).transpose(0, 2, 1, 3)
                ck, cv = caches[i]
                ck = k if ck is None else mx.concatenate([ck, k], axis=2)
                cv = v if cv is None else mx.concatenate([cv, v], axis=2)
                caches[i] = (ck, cv)
                att = mx.softmax((q @ ck.transpose(0, 1, 3, 2)) * head_dim**-0.5, axis=-1) @ cv
                h = h + att.transpose(0, 2, 1, 3).reshape(1, 1, dim) @ lw["o"]
                h = h + mx.maximum(h @ lw["up"], 0) @ lw["down"]
                h = h * mx.rsqrt(mx.mean(h * h, axis=-1, keepdims=True) + 1e-5)
            x = h
            mx.eval(x, [c for pair in caches for c in pair])
        return x

    run(16)

    def once():
        start = time.perf_counter()
        run(tokens)
        mx.synchronize()
        return tokens / (time.perf_counter() - start)

    return best_of(3, once)


def churn_loop(iters):
    mx.set_cache_limit(0)
    base = mx.ones((256, 1024))
    mx.eval(base)
    for i in range(50):
        mx.eval(base + i)
    def once():
        start = time.perf_counter()
        for i in range(iters):
            mx.eval(base + i)
        mx.synchronize()
        return iters / (time.perf_counter() - start)

    rate = best_of(3, once)
    mx.set_cache_limit(1 << 40)
    return rate


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--matmul-iters", type=int, default=1000)
    p.add_argument("--tokens", type=int, default=192)
    p.add_argument("--churn-iters", type=int, default=3000)
    a = p.parse_args()
    mx.set_default_device(mx.gpu)
    mx.random.seed(0)
    result = {
        "matmul_per_s": matmul_loop(a.matmul_iters),
        "tokens_per_s": generation_loop(a.tokens),
        "churn_per_s": churn_loop(a.churn_iters),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
