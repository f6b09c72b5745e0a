/*
 * A stand-in for the NVIDIA driver library (libcuda.so.1) for the CUDA
 * backend's tests on machines without a GPU. It models only what the guard
 * relies on, the way the real driver does it:
 *   - cuGetProcAddress_v2 / cuGetProcAddress, honouring the per-thread
 *     default-stream flag (distinct _ptsz functions), and handing back for
 *     "cuGetProcAddress" an internal getter that is NOT the exported symbol
 *     (so the guard has to wrap the getter the driver hands back too);
 *   - device memory accounting against a total (FAKE_CUDA_TOTAL_MEM_MB,
 *     default 8192): addresses are handed out from a counter, no memory is
 *     touched; over the total the driver itself answers
 *     CUDA_ERROR_OUT_OF_MEMORY (2); a freed block's address is handed out
 *     again for the next request of the same size, as the driver's pools do;
 *   - host functions run, in order, on a separate callback thread after
 *     FAKE_CUDA_HOSTFN_DELAY_MS (default 0); cuStreamSynchronize waits for
 *     them.
 * fakeCudaCalls(name) reports how often each entry point was reached, so a
 * test can tell the guard forwarded (or refused) a call.
 * Not NVIDIA's code: only the signatures of cuda.h.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef int CUresult;
typedef unsigned long long CUdeviceptr;
typedef void (*CUhostFn)(void *);

#define CUDA_SUCCESS 0
#define CUDA_ERROR_INVALID_VALUE 1
#define CUDA_ERROR_OUT_OF_MEMORY 2
#define CUDA_ERROR_NOT_FOUND 500
#define PER_THREAD 2ull

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static unsigned long long live_bytes;
static unsigned long long next_address = 0x700000000000ull;

/* Per-address sizes, a small linear table: tests allocate a few dozen. */
#define MAX_LIVE 4096
static CUdeviceptr live_addr[MAX_LIVE];
static unsigned long long live_size[MAX_LIVE];

struct call_count { const char *name; unsigned long n; };
static struct call_count calls[64];

static void count_call(const char *name) {
    pthread_mutex_lock(&lock);
    for (int i = 0; i < 64; i++) {
        if (calls[i].name == NULL) { calls[i].name = name; calls[i].n = 1; break; }
        if (strcmp(calls[i].name, name) == 0) { calls[i].n++; break; }
    }
    pthread_mutex_unlock(&lock);
}

unsigned long fakeCudaCalls(const char *name) {
    unsigned long n = 0;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < 64 && calls[i].name; i++)
        if (strcmp(calls[i].name, name) == 0) n = calls[i].n;
    pthread_mutex_unlock(&lock);
    return n;
}

unsigned long long fakeCudaLiveBytes(void) { return live_bytes; }

static unsigned long long total_bytes(void) {
    const char *mb = getenv("FAKE_CUDA_TOTAL_MEM_MB");
    unsigned long long m = mb ? strtoull(mb, NULL, 10) : 8192;
    return m << 20;
}

/* Freed blocks, reused for a request of the same size (last freed first),
 * the way the driver's stream-ordered pools hand addresses back out. */
#define REUSE 256
static CUdeviceptr reuse_addr[REUSE];
static unsigned long long reuse_size[REUSE];
static int reuse_n;

static CUresult take(CUdeviceptr *out, size_t bytes) {
    if (out == NULL || bytes == 0) return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&lock);
    if (live_bytes + bytes > total_bytes()) { pthread_mutex_unlock(&lock); return CUDA_ERROR_OUT_OF_MEMORY; }
    int slot = -1;
    for (int i = 0; i < MAX_LIVE; i++) if (live_addr[i] == 0) { slot = i; break; }
    if (slot < 0) { pthread_mutex_unlock(&lock); return CUDA_ERROR_OUT_OF_MEMORY; }
    CUdeviceptr a = 0;
    for (int i = reuse_n - 1; i >= 0; i--) {
        if (reuse_size[i] == bytes) {
            a = reuse_addr[i];
            reuse_addr[i] = reuse_addr[reuse_n - 1];
            reuse_size[i] = reuse_size[reuse_n - 1];
            reuse_n--;
            break;
        }
    }
    if (a == 0) {
        a = next_address;
        next_address += (bytes + 0xffff) & ~0xffffull;
    }
    live_addr[slot] = a;
    live_size[slot] = bytes;
    live_bytes += bytes;
    *out = a;
    pthread_mutex_unlock(&lock);
    return CUDA_SUCCESS;
}

static CUresult give_back(CUdeviceptr a) {
    pthread_mutex_lock(&lock);
    for (int i = 0; i < MAX_LIVE; i++) {
        if (live_addr[i] == a && a != 0) {
            live_bytes -= live_size[i];
            if (reuse_n < REUSE) {
                reuse_addr[reuse_n] = a;
                reuse_size[reuse_n] = live_size[i];
                reuse_n++;
            }
            live_addr[i] = 0;
            pthread_mutex_unlock(&lock);
            return CUDA_SUCCESS;
        }
    }
    pthread_mutex_unlock(&lock);
    return CUDA_ERROR_INVALID_VALUE;
}

CUresult cuInit(unsigned int flags) { (void)flags; count_call("cuInit"); return CUDA_SUCCESS; }
CUresult cuCtxGetDevice(int *dev) { count_call("cuCtxGetDevice"); *dev = 0; return CUDA_SUCCESS; }
CUresult cuDeviceTotalMem_v2(size_t *bytes, int dev) {
    count_call("cuDeviceTotalMem_v2");
    if (dev != 0) return CUDA_ERROR_INVALID_VALUE;
    *bytes = total_bytes();
    return CUDA_SUCCESS;
}

CUresult cuMemAlloc_v2(CUdeviceptr *p, size_t n) { count_call("cuMemAlloc_v2"); return take(p, n); }
CUresult cuMemAllocAsync(CUdeviceptr *p, size_t n, void *s) { (void)s; count_call("cuMemAllocAsync"); return take(p, n); }
CUresult cuMemAllocAsync_ptsz(CUdeviceptr *p, size_t n, void *s) { (void)s; count_call("cuMemAllocAsync_ptsz"); return take(p, n); }
CUresult cuMemAllocFromPoolAsync(CUdeviceptr *p, size_t n, void *pool, void *s) { (void)pool; (void)s; count_call("cuMemAllocFromPoolAsync"); return take(p, n); }
CUresult cuMemAllocFromPoolAsync_ptsz(CUdeviceptr *p, size_t n, void *pool, void *s) { (void)pool; (void)s; count_call("cuMemAllocFromPoolAsync_ptsz"); return take(p, n); }
CUresult cuMemAllocManaged(CUdeviceptr *p, size_t n, unsigned f) { (void)f; count_call("cuMemAllocManaged"); return take(p, n); }
CUresult cuMemAllocHost_v2(void **p, size_t n) { count_call("cuMemAllocHost_v2"); return take((CUdeviceptr *)p, n); }
CUresult cuMemHostAlloc(void **p, size_t n, unsigned f) { (void)f; count_call("cuMemHostAlloc"); return take((CUdeviceptr *)p, n); }
CUresult cuMemFree_v2(CUdeviceptr p) { count_call("cuMemFree_v2"); return give_back(p); }
CUresult cuMemFreeAsync(CUdeviceptr p, void *s) { (void)s; count_call("cuMemFreeAsync"); return give_back(p); }
CUresult cuMemFreeAsync_ptsz(CUdeviceptr p, void *s) { (void)s; count_call("cuMemFreeAsync_ptsz"); return give_back(p); }
CUresult cuMemFreeHost(void *p) { count_call("cuMemFreeHost"); return give_back((CUdeviceptr)p); }
CUresult cuGraphLaunch(void *g, void *s) { (void)g; (void)s; count_call("cuGraphLaunch"); return CUDA_SUCCESS; }
CUresult cuGraphLaunch_ptsz(void *g, void *s) { (void)g; (void)s; count_call("cuGraphLaunch_ptsz"); return CUDA_SUCCESS; }

/* Host-function queue, run by one callback thread. */
#define QUEUE 1024
static CUhostFn q_fn[QUEUE];
static void *q_data[QUEUE];
static unsigned q_head, q_tail;
static int worker_started;
static pthread_t worker;

static void *callback_thread(void *arg) {
    (void)arg;
    const char *d = getenv("FAKE_CUDA_HOSTFN_DELAY_MS");
    long delay_ms = d ? atol(d) : 0;
    for (;;) {
        pthread_mutex_lock(&lock);
        while (q_head == q_tail) pthread_cond_wait(&cond, &lock);
        CUhostFn fn = q_fn[q_head % QUEUE];
        void *data = q_data[q_head % QUEUE];
        pthread_mutex_unlock(&lock);
        if (delay_ms > 0) {
            struct timespec ts = { delay_ms / 1000, (delay_ms % 1000) * 1000000L };
            nanosleep(&ts, NULL);
        }
        fn(data);
        pthread_mutex_lock(&lock);
        q_head++;
        pthread_cond_broadcast(&cond);
        pthread_mutex_unlock(&lock);
    }
    return NULL;
}

static CUresult launch_host(CUhostFn fn, void *data) {
    if (fn == NULL) return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&lock);
    if (!worker_started) {
        worker_started = 1;
        pthread_create(&worker, NULL, callback_thread, NULL);
        pthread_detach(worker);
    }
    if (q_tail - q_head >= QUEUE) { pthread_mutex_unlock(&lock); return CUDA_ERROR_OUT_OF_MEMORY; }
    q_fn[q_tail % QUEUE] = fn;
    q_data[q_tail % QUEUE] = data;
    q_tail++;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
    return CUDA_SUCCESS;
}

CUresult cuLaunchHostFunc(void *s, CUhostFn fn, void *data) { (void)s; count_call("cuLaunchHostFunc"); return launch_host(fn, data); }
CUresult cuLaunchHostFunc_ptsz(void *s, CUhostFn fn, void *data) { (void)s; count_call("cuLaunchHostFunc_ptsz"); return launch_host(fn, data); }

static CUresult sync_all(void) {
    pthread_mutex_lock(&lock);
    while (q_head != q_tail) pthread_cond_wait(&cond, &lock);
    pthread_mutex_unlock(&lock);
    return CUDA_SUCCESS;
}
CUresult cuStreamSynchronize(void *s) { (void)s; count_call("cuStreamSynchronize"); return sync_all(); }
CUresult cuStreamSynchronize_ptsz(void *s) { (void)s; count_call("cuStreamSynchronize_ptsz"); return sync_all(); }

struct entry { const char *name; void *legacy; void *per_thread; int v2_since; };

static CUresult getter_internal(const char *symbol, void **pfn, int version, unsigned long long flags, int *status);
static CUresult getter_internal_v1(const char *symbol, void **pfn, int version, unsigned long long flags);

static const struct entry table[] = {
    { "cuInit", (void *)cuInit, (void *)cuInit, 0 },
    { "cuCtxGetDevice", (void *)cuCtxGetDevice, (void *)cuCtxGetDevice, 0 },
    { "cuDeviceTotalMem", (void *)cuDeviceTotalMem_v2, (void *)cuDeviceTotalMem_v2, 3020 },
    { "cuMemAlloc", (void *)cuMemAlloc_v2, (void *)cuMemAlloc_v2, 3020 },
    { "cuMemAllocAsync", (void *)cuMemAllocAsync, (void *)cuMemAllocAsync_ptsz, 0 },
    { "cuMemAllocFromPoolAsync", (void *)cuMemAllocFromPoolAsync, (void *)cuMemAllocFromPoolAsync_ptsz, 0 },
    { "cuMemAllocManaged", (void *)cuMemAllocManaged, (void *)cuMemAllocManaged, 0 },
    { "cuMemAllocHost", (void *)cuMemAllocHost_v2, (void *)cuMemAllocHost_v2, 3020 },
    { "cuMemHostAlloc", (void *)cuMemHostAlloc, (void *)cuMemHostAlloc, 0 },
    { "cuMemFree", (void *)cuMemFree_v2, (void *)cuMemFree_v2, 3020 },
    { "cuMemFreeAsync", (void *)cuMemFreeAsync, (void *)cuMemFreeAsync_ptsz, 0 },
    { "cuMemFreeHost", (void *)cuMemFreeHost, (void *)cuMemFreeHost, 0 },
    { "cuLaunchHostFunc", (void *)cuLaunchHostFunc, (void *)cuLaunchHostFunc_ptsz, 0 },
    { "cuGraphLaunch", (void *)cuGraphLaunch, (void *)cuGraphLaunch_ptsz, 0 },
    { "cuStreamSynchronize", (void *)cuStreamSynchronize, (void *)cuStreamSynchronize_ptsz, 0 },
};

static CUresult getter_internal_v1(const char *symbol, void **pfn, int version, unsigned long long flags) {
    return getter_internal(symbol, pfn, version, flags, NULL);
}

static CUresult getter_internal(const char *symbol, void **pfn, int version, unsigned long long flags, int *status) {
    if (symbol == NULL || pfn == NULL) return CUDA_ERROR_INVALID_VALUE;
    if (strcmp(symbol, "cuGetProcAddress") == 0) {
        /* Like the real driver: the five-argument getter from CUDA 12.0 on. */
        *pfn = version >= 12000 ? (void *)getter_internal : (void *)getter_internal_v1;
        if (status) *status = 0;
        return CUDA_SUCCESS;
    }
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        if (strcmp(table[i].name, symbol) == 0) {
            if (version < table[i].v2_since) break;
            *pfn = (flags & PER_THREAD) ? table[i].per_thread : table[i].legacy;
            if (status) *status = 0;
            return CUDA_SUCCESS;
        }
    }
    *pfn = NULL;
    if (status) *status = 1; /* CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND */
    return CUDA_ERROR_NOT_FOUND;
}

CUresult cuGetProcAddress_v2(const char *symbol, void **pfn, int version, unsigned long long flags, int *status) {
    count_call("cuGetProcAddress_v2");
    return getter_internal(symbol, pfn, version, flags, status);
}

CUresult cuGetProcAddress(const char *symbol, void **pfn, int version, unsigned long long flags) {
    count_call("cuGetProcAddress");
    return getter_internal(symbol, pfn, version, flags, NULL);
}
