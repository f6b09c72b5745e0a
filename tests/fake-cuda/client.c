/*
 * Drives the driver the way a statically linked CUDA runtime does:
 * dlopen("libcuda.so.1") + dlsym("cuGetProcAddress_v2"), then that getter
 * asked for "cuGetProcAddress", then everything else through what it handed
 * back. Usage: fake_cuda_client SCENARIO [ARG]; prints one "key=value" line
 * per observation for the test to check.
 *   basic       one allocation of each kind, frees, a graph, a host function, a sync
 *   ptds        the same with CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM
 *   direct      the memory functions looked up by dlsym, not the getter
 *   oversize N  cuMemAllocAsync(N bytes), then a 1 MiB allocation
 *   inflight K  queue K host functions and exit without synchronizing
 *   churn N     N allocate/free pairs (the hot path)
 *   cycles N MS N model-like load/unload cycles (4 x 32 MiB each), MS ms apart
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef int CUresult;
typedef unsigned long long CUdeviceptr;
typedef CUresult (*getter_v2_t)(const char *, void **, int, unsigned long long, int *);
typedef CUresult (*alloc_t)(CUdeviceptr *, size_t);
typedef CUresult (*alloc_async_t)(CUdeviceptr *, size_t, void *);
typedef CUresult (*alloc_pool_t)(CUdeviceptr *, size_t, void *, void *);
typedef CUresult (*alloc_managed_t)(CUdeviceptr *, size_t, unsigned);
typedef CUresult (*alloc_host_t)(void **, size_t);
typedef CUresult (*host_alloc_t)(void **, size_t, unsigned);
typedef CUresult (*free_t)(CUdeviceptr);
typedef CUresult (*free_async_t)(CUdeviceptr, void *);
typedef CUresult (*free_host_t)(void *);
typedef CUresult (*launch_host_t)(void *, void (*)(void *), void *);
typedef CUresult (*graph_launch_t)(void *, void *);
typedef CUresult (*sync_t)(void *);
typedef unsigned long (*calls_t)(const char *);
typedef unsigned long long (*live_t)(void);

/* Heap allocations made on the main thread while `counting` is set: the
 * executable's malloc family wins symbol resolution over libc's, so the
 * preloaded guard's allocations land here too. */
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
static __thread int counting;
static long heap_allocations;
void *malloc(size_t n) { if (counting) heap_allocations++; return __libc_malloc(n); }
void *calloc(size_t a, size_t b) { if (counting) heap_allocations++; return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { if (counting) heap_allocations++; return __libc_realloc(p, n); }
void *memalign(size_t a, size_t n) { if (counting) heap_allocations++; return __libc_memalign(a, n); }

static void *driver;
static getter_v2_t getter;
static unsigned long long flags;

static void *get(const char *name) {
    void *p = NULL;
    int status = 0;
    CUresult rc = getter(name, &p, 13000, flags, &status);
    if (rc != 0 || p == NULL) { printf("lookup_failed=%s rc=%d\n", name, rc); exit(3); }
    return p;
}

static volatile int host_fns_ran;
static void host_fn(void *data) {
    host_fns_ran++;
    printf("host_fn_ran=%ld\n", (long)(size_t)data);
    fflush(stdout);
}

static void host_fn_quiet(void *data) { (void)data; }

static void report_driver(void) {
    calls_t calls = (calls_t)dlsym(driver, "fakeCudaCalls");
    live_t live = (live_t)dlsym(driver, "fakeCudaLiveBytes");
    const char *names[] = { "cuMemAlloc_v2", "cuMemAllocAsync", "cuMemAllocAsync_ptsz",
        "cuMemAllocFromPoolAsync", "cuMemAllocManaged", "cuMemAllocHost_v2", "cuMemHostAlloc",
        "cuMemFree_v2", "cuMemFreeAsync", "cuMemFreeAsync_ptsz", "cuMemFreeHost",
        "cuLaunchHostFunc", "cuLaunchHostFunc_ptsz", "cuGraphLaunch", "cuGraphLaunch_ptsz",
        "cuStreamSynchronize", "cuStreamSynchronize_ptsz", "cuDeviceTotalMem_v2" };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        printf("driver_calls.%s=%lu\n", names[i], calls(names[i]));
    printf("driver_live_bytes=%llu\n", live());
}

int main(int argc, char **argv) {
    const char *scenario = argc > 1 ? argv[1] : "basic";
    setvbuf(stdout, NULL, _IOLBF, 0);
    driver = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!driver) { printf("dlopen_failed=%s\n", dlerror()); return 2; }
    if (strcmp(scenario, "ptds") == 0) flags = 2;

    getter_v2_t exported = (getter_v2_t)dlsym(driver, "cuGetProcAddress_v2");
    if (!exported) { printf("dlsym_failed\n"); return 2; }
    getter = exported;
    getter_v2_t handed_back = (getter_v2_t)get("cuGetProcAddress");
    getter = handed_back;
    printf("getter_chain=ok\n");

    if (strcmp(scenario, "basic") == 0 || strcmp(scenario, "ptds") == 0 || strcmp(scenario, "direct") == 0) {
        alloc_t mem_alloc; alloc_async_t alloc_async; alloc_pool_t alloc_pool; free_t mem_free;
        free_async_t free_async;
        if (strcmp(scenario, "direct") == 0) {
            mem_alloc = (alloc_t)dlsym(driver, "cuMemAlloc_v2");
            alloc_async = (alloc_async_t)dlsym(driver, "cuMemAllocAsync");
            alloc_pool = (alloc_pool_t)dlsym(driver, "cuMemAllocFromPoolAsync");
            mem_free = (free_t)dlsym(driver, "cuMemFree_v2");
            free_async = (free_async_t)dlsym(driver, "cuMemFreeAsync");
        } else {
            mem_alloc = (alloc_t)get("cuMemAlloc");
            alloc_async = (alloc_async_t)get("cuMemAllocAsync");
            alloc_pool = (alloc_pool_t)get("cuMemAllocFromPoolAsync");
            mem_free = (free_t)get("cuMemFree");
            free_async = (free_async_t)get("cuMemFreeAsync");
        }
        alloc_managed_t alloc_managed = (alloc_managed_t)get("cuMemAllocManaged");
        alloc_host_t alloc_host = (alloc_host_t)get("cuMemAllocHost");
        host_alloc_t host_alloc = (host_alloc_t)get("cuMemHostAlloc");
        free_host_t free_host = (free_host_t)get("cuMemFreeHost");
        launch_host_t launch = (launch_host_t)get("cuLaunchHostFunc");
        graph_launch_t graph = (graph_launch_t)get("cuGraphLaunch");
        sync_t sync = (sync_t)get("cuStreamSynchronize");

        CUdeviceptr a = 0, b = 0, c = 0, m = 0;
        void *h1 = NULL, *h2 = NULL;
        printf("alloc_rc=%d\n", mem_alloc(&a, 1 << 20));
        printf("alloc_async_rc=%d\n", alloc_async(&b, 2 << 20, NULL));
        printf("alloc_pool_rc=%d\n", alloc_pool(&c, 4 << 20, NULL, NULL));
        printf("alloc_managed_rc=%d\n", alloc_managed(&m, 1 << 20, 1));
        printf("alloc_host_rc=%d\n", alloc_host(&h1, 64 << 10));
        printf("host_alloc_rc=%d\n", host_alloc(&h2, 64 << 10, 0));
        printf("graph_rc=%d\n", graph((void *)1, NULL));
        printf("launch_rc=%d\n", launch(NULL, host_fn, (void *)7));
        printf("sync_rc=%d\n", sync(NULL));
        printf("host_fns_ran_after_sync=%d\n", host_fns_ran);
        printf("free_rc=%d\n", mem_free(a));
        printf("free_async_rc=%d\n", free_async(c, NULL));
        printf("free_managed_rc=%d\n", mem_free(m));
        printf("free_host_rc=%d\n", free_host(h1));
        printf("free_host2_rc=%d\n", free_host(h2));
        printf("double_free_rc=%d\n", mem_free(a));
        /* b (2 MiB) stays live until exit. */
    } else if (strcmp(scenario, "oversize") == 0) {
        unsigned long long n = argc > 2 ? strtoull(argv[2], NULL, 10) : (6ull << 30);
        alloc_async_t alloc_async = (alloc_async_t)get("cuMemAllocAsync");
        free_async_t free_async = (free_async_t)get("cuMemFreeAsync");
        CUdeviceptr big = 0, small = 0;
        CUresult rc = alloc_async(&big, n, NULL);
        printf("oversize_rc=%d\n", rc);
        if (rc == 0) free_async(big, NULL);
        printf("after_rc=%d\n", alloc_async(&small, 1 << 20, NULL));
        printf("after_free_rc=%d\n", free_async(small, NULL));
    } else if (strcmp(scenario, "inflight") == 0) {
        int k = argc > 2 ? atoi(argv[2]) : 3;
        launch_host_t launch = (launch_host_t)get("cuLaunchHostFunc");
        graph_launch_t graph = (graph_launch_t)get("cuGraphLaunch");
        for (int i = 0; i < k; i++) {
            graph((void *)1, NULL);
            launch(NULL, host_fn, (void *)(size_t)(i + 1));
        }
        printf("queued=%d\n", k);
        printf("exiting_with_in_flight=%d\n", k - host_fns_ran);
        return 0; /* exit() runs the guard's drain */
    } else if (strcmp(scenario, "churn") == 0) {
        long n = argc > 2 ? atol(argv[2]) : 100000;
        alloc_async_t alloc_async = (alloc_async_t)get("cuMemAllocAsync");
        free_async_t free_async = (free_async_t)get("cuMemFreeAsync");
        launch_host_t launch = (launch_host_t)get("cuLaunchHostFunc");
        graph_launch_t graph = (graph_launch_t)get("cuGraphLaunch");
        sync_t sync = (sync_t)get("cuStreamSynchronize");
        struct timespec t0, t1;
        for (int pass = 0; pass < 2; pass++) {
            /* pass 0 warms up (the first allocation asks the device's memory once). */
            long iters = pass == 0 ? 1000 : n;
            counting = pass;
            clock_gettime(CLOCK_MONOTONIC, &t0);
            for (long i = 0; i < iters; i++) {
                CUdeviceptr p = 0;
                if (alloc_async(&p, 4096 + (i % 7) * 4096, NULL) != 0) { counting = 0; printf("churn_failed=%ld\n", i); return 4; }
                free_async(p, NULL);
                if (i % 64 == 0) { graph((void *)1, NULL); launch(NULL, host_fn_quiet, NULL); }
            }
            sync(NULL);
            clock_gettime(CLOCK_MONOTONIC, &t1);
            counting = 0;
        }
        double ns = (t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec);
        printf("churn_done=%ld\n", n);
        printf("churn_ns_per_pair=%.1f\n", ns / n);
        printf("churn_heap_allocations=%ld\n", heap_allocations);
    } else if (strcmp(scenario, "cycles") == 0) {
        int n = argc > 2 ? atoi(argv[2]) : 3;
        long gap_ms = argc > 3 ? atol(argv[3]) : 200;
        alloc_async_t alloc_async = (alloc_async_t)get("cuMemAllocAsync");
        free_async_t free_async = (free_async_t)get("cuMemFreeAsync");
        for (int c = 0; c < n; c++) {
            CUdeviceptr w[4];
            for (int i = 0; i < 4; i++)
                if (alloc_async(&w[i], 32u << 20, NULL) != 0) { printf("cycle_failed=%d\n", c); return 4; }
            for (int i = 0; i < 4; i++) free_async(w[i], NULL);
            printf("cycle_done=%d\n", c);
            struct timespec ts = { gap_ms / 1000, (gap_ms % 1000) * 1000000L };
            nanosleep(&ts, NULL);
        }
    } else {
        printf("unknown_scenario=%s\n", scenario);
        return 2;
    }
    report_driver();
    return 0;
}
