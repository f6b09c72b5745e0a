# macOS: the tiny MLX program.
def main():
    try:
        import mlx.core as mx

        RESULT["mlx_version"] = getattr(mx, "__version__", None)
        a = mx.random.normal((256, 256))
        mx.eval(a)
        RESULT["steps"].append("allocate")
        b = a @ a
        mx.eval(b)
        # One entry checked against a sum done element by element.
        expected = mx.sum(a[3, :] * a[:, 5])
        if not mx.allclose(b[3, 5], expected, rtol=1e-3, atol=1e-3).item():
            raise AssertionError("a @ a gave a wrong result")
        RESULT["steps"].append("compute")
        del a, b, expected
        RESULT["steps"].append("free")
        mx.clear_cache()
        RESULT["steps"].append("clear_cache")
    except Exception as e:  # noqa: BLE001
        RESULT["error"] = describe(e)
        return

    def allocate(nbytes):
        big = mx.zeros((nbytes // 4,), dtype=mx.float32)
        mx.eval(big)
        del big

    oversize(allocate)
    mx.clear_cache()


main()
emit()
