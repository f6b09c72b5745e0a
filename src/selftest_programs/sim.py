# Linux: the same steps through ctypes against the simulated Metal driver
# (sys.argv[1] is libmlx_selftest_client.so, linked against the driver).
def main():
    try:
        lib = ctypes.CDLL(sys.argv[1])
        lib.mgst_init.argtypes = [ctypes.c_ulong]
        lib.mgst_malloc.argtypes = [ctypes.c_size_t]
        lib.mgst_malloc.restype = ctypes.c_void_p
        lib.mgst_contents.argtypes = [ctypes.c_void_p]
        lib.mgst_contents.restype = ctypes.c_void_p
        lib.mgst_free.argtypes = [ctypes.c_void_p]
        lib.mgst_clear_cache.restype = ctypes.c_size_t
        lib.mgst_matmul.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]

        def malloc(nbytes):
            # What MLX's allocator does with nil from the device.
            buf = lib.mgst_malloc(nbytes)
            if not buf:
                raise RuntimeError("[malloc] Unable to allocate %d bytes." % nbytes)
            return buf

        # A wired limit, so the residency set is used as MLX uses it.
        if lib.mgst_init(64) != 0:
            raise RuntimeError("[metal::Device] no Metal device")
        n = 16
        a = malloc(n * n * 4)
        out = malloc(n * n * 4)
        x = (ctypes.c_float * (n * n)).from_address(lib.mgst_contents(a))
        for i in range(n * n):
            x[i] = (i % 7) - 3.0
        RESULT["steps"].append("allocate")
        if lib.mgst_matmul(a, out, n) != 0:
            raise RuntimeError("[metal] command buffer did not complete")
        y = (ctypes.c_float * (n * n)).from_address(lib.mgst_contents(out))
        expected = sum(x[3 * n + k] * x[k * n + 5] for k in range(n))
        if abs(y[3 * n + 5] - expected) > 1e-3:
            raise AssertionError("a @ a gave a wrong result")
        RESULT["steps"].append("compute")
        lib.mgst_free(a)
        lib.mgst_free(out)
        RESULT["steps"].append("free")
        if lib.mgst_clear_cache() != 2:
            raise AssertionError("clear_cache did not release both buffers")
        RESULT["steps"].append("clear_cache")
    except Exception as e:  # noqa: BLE001
        RESULT["error"] = describe(e)
        return

    def allocate(nbytes):
        lib.mgst_free(malloc(nbytes))

    oversize(allocate)
    lib.mgst_shutdown()


main()
emit()
