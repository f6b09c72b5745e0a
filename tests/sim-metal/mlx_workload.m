/*
 * mlx_workload.m: drives the simulated Metal driver the way MLX does
 * (../shared/reference/mlx-metal-hooks.md §1): device from MTLCopyAllDevices,
 * a 1 MiB heap for tiny buffers, every buffer Shared|HazardTrackingUntracked,
 * a buffer cache that recycles and trims, command buffers from
 * commandBufferWithUnretainedReferences, completion handlers that free
 * temporaries, and (with a wired limit) a residency set with
 * addAllocation:/removeAllocation: + commit around every buffer.
 *
 * Usage: mlx_workload <workload> [--key value ...]
 *   load-unload       repeated model load/unload, back to back
 *   concurrent-trim   two request streams; cache trims free buffers in flight
 *   residency-churn   residency-set churn with a raised wired limit
 *   oversize-prefill  one allocation above the working set (nil is a caught error)
 *   exit-inflight     exit with GPU work in flight
 *   steady            the same calls used safely (control: never panics)
 * Common options: --retained 1 asks for retained command buffers instead;
 * --break-superclass 1 replaces a superclass method at the end (self-test of
 * the inherited-method check, which then exits 3).
 * Per workload, the flags that model each guard lever by hand:
 *   load-unload --pause-ms N, residency-churn --defer 1 or --wired-limit-mb 0,
 *   exit-inflight --drain 1.
 * Exit 0 when the workload finishes, 2 on bad usage, 3 when a driver
 * superclass's method was replaced during the run (the inherited-method trap).
 */
#include <objc/runtime.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sim_metal.h"

#define MLX_OPTIONS (MTLResourceStorageModeShared | MTLResourceHazardTrackingModeUntracked)
#define PAGE 16384ul

/* ------------------------------------------------------------------------ */
/* Options                                                                   */
/* ------------------------------------------------------------------------ */

static int g_argc;
static char **g_argv;

static unsigned long opt(const char *key, unsigned long fallback) {
  for (int i = 2; i + 1 < g_argc; i++) {
    if (g_argv[i][0] == '-' && g_argv[i][1] == '-' && strcmp(g_argv[i] + 2, key) == 0) {
      char *end = NULL;
      unsigned long v = strtoul(g_argv[i + 1], &end, 10);
      if (end == g_argv[i + 1] || *end != '\0') {
        fprintf(stderr, "mlx_workload: --%s needs a whole number, got '%s'\n", key, g_argv[i + 1]);
        exit(2);
      }
      return v;
    }
  }
  return fallback;
}

/* ------------------------------------------------------------------------ */
/* An MLX-like allocator (MetalAllocator + BufferCache + ResidencySets)      */
/* ------------------------------------------------------------------------ */

static id<SimMTLDevice> g_device;
static id g_heap;
static id<SimMTLResidencySet> g_residency; /* nil: wired limit 0 (MLX's default) */

static pthread_mutex_t g_alloc_lock = PTHREAD_MUTEX_INITIALIZER;
#define CACHE_MAX 4096
static id g_cache[CACHE_MAX];
static size_t g_cache_len;

static void device_init(void) {
  id<SimNSArrayMethods> devices = MTLCopyAllDevices();
  if (devices != nil && [devices count] > 0) {
    g_device = [[devices objectAtIndex:0] retain];
  }
  if (devices != nil) [devices release];
  if (g_device == nil) g_device = MTLCreateSystemDefaultDevice();
  if (g_device == nil) {
    fprintf(stderr, "mlx_workload: no Metal device\n");
    exit(1);
  }
  Class heap_desc_class = objc_getClass("MTLHeapDescriptor");
  id<SimMTLDescriptors> desc = [[heap_desc_class alloc] init];
  [desc setSize:1 << 20];
  g_heap = [g_device newHeapWithDescriptor:desc];
  [(id<SimMTLObjectMethods>)desc release];
}

static void wire_up(unsigned long wired_limit_mb) {
  if (wired_limit_mb == 0) return;
  uint64_t max_rec = [g_device recommendedMaxWorkingSetSize];
  if ((uint64_t)wired_limit_mb << 20 > max_rec) {
    fprintf(stderr, "mlx_workload: [set_wired_limit] %lu MiB is above max_recommended_working_set_size\n",
            wired_limit_mb);
    exit(2);
  }
  Class set_desc_class = objc_getClass("MTLResidencySetDescriptor");
  id<SimMTLDescriptors> desc = [[set_desc_class alloc] init];
  [desc setInitialCapacity:64];
  id error = nil;
  g_residency = [g_device newResidencySetWithDescriptor:desc error:&error];
  [(id<SimMTLObjectMethods>)desc release];
  if (g_residency == nil) {
    fprintf(stderr, "mlx_workload: Unable to construct residency set\n");
    exit(1);
  }
  [g_residency requestResidency];
}

/* Returns nil after printing MLX's message: the caller treats it as the
 * RuntimeError Python code would catch. */
static id mlx_malloc(size_t size) {
  if (size == 0) return nil;
  if (size > [g_device maxBufferLength]) {
    fprintf(stderr,
            "[metal::malloc] Attempting to allocate %zu bytes which is greater than the maximum "
            "allowed buffer size of %lu bytes.\n",
            size, (unsigned long)[g_device maxBufferLength]);
    return nil;
  }
  if (size > PAGE) size = (size + PAGE - 1) / PAGE * PAGE;
  pthread_mutex_lock(&g_alloc_lock);
  for (size_t i = 0; i < g_cache_len; i++) {
    if ([(id<SimMTLBuffer>)g_cache[i] length] == size) {
      id buf = g_cache[i];
      g_cache[i] = g_cache[--g_cache_len];
      pthread_mutex_unlock(&g_alloc_lock);
      return buf;
    }
  }
  pthread_mutex_unlock(&g_alloc_lock);
  id buf = nil;
  if (size < 256) buf = [g_heap newBufferWithLength:size options:MLX_OPTIONS];
  if (buf == nil) buf = [g_device newBufferWithLength:size options:MLX_OPTIONS];
  if (buf == nil) {
    fprintf(stderr, "[malloc] Unable to allocate %zu bytes.\n", size);
    return nil;
  }
  if (g_residency != nil) {
    pthread_mutex_lock(&g_alloc_lock);
    [g_residency addAllocation:buf];
    [g_residency commit];
    pthread_mutex_unlock(&g_alloc_lock);
  }
  return buf;
}

/* The buffer really goes: unwire, then release (MetalAllocator::free). */
static void mlx_release_buffer(id buf) {
  if (g_residency != nil) {
    pthread_mutex_lock(&g_alloc_lock);
    [g_residency removeAllocation:buf];
    [g_residency commit];
    pthread_mutex_unlock(&g_alloc_lock);
  }
  [(id<SimMTLObjectMethods>)buf release];
}

/* The array is gone; its buffer goes back to the cache. */
static void mlx_free(id buf) {
  if (buf == nil) return;
  pthread_mutex_lock(&g_alloc_lock);
  if (g_cache_len < CACHE_MAX) {
    g_cache[g_cache_len++] = buf;
    pthread_mutex_unlock(&g_alloc_lock);
    return;
  }
  pthread_mutex_unlock(&g_alloc_lock);
  mlx_release_buffer(buf);
}

/* mx.clear_cache(). */
static void mlx_clear_cache(void) {
  pthread_mutex_lock(&g_alloc_lock);
  size_t n = g_cache_len;
  id *taken = malloc((n ? n : 1) * sizeof(id));
  memcpy(taken, g_cache, n * sizeof(id));
  g_cache_len = 0;
  pthread_mutex_unlock(&g_alloc_lock);
  for (size_t i = 0; i < n; i++) mlx_release_buffer(taken[i]);
  free(taken);
}

/* ------------------------------------------------------------------------ */
/* A stream: one queue, one open command buffer (MLX's CommandEncoder)       */
/* ------------------------------------------------------------------------ */

struct stream {
  id<SimMTLCommandQueue> queue;
  id<SimMTLCommandBuffer> last; /* retained: the last committed buffer */
};

static void stream_init(struct stream *s) {
  s->queue = [g_device newCommandQueue];
  if (g_residency != nil) {
    id sets[1] = {g_residency};
    [s->queue addResidencySets:sets count:1];
  }
  s->last = nil;
}

/* Encode one kernel over `bound`, free `temps` when it completes (as MLX's
 * completion handlers drop the arrays they captured), and commit. */
static int g_retained; /* --retained 1: what MLX PR #3462 proposed */

static void stream_eval(struct stream *s, id *bound, size_t nbound, id *temps, size_t ntemps) {
  id<SimMTLCommandBuffer> cb =
      g_retained ? [s->queue commandBuffer] : [s->queue commandBufferWithUnretainedReferences];
  id<SimMTLComputeCommandEncoder> enc = [cb computeCommandEncoder];
  for (size_t i = 0; i < nbound; i++) [enc setBuffer:bound[i] offset:0 atIndex:i];
  for (size_t i = 0; i < ntemps; i++) [enc setBuffer:temps[i] offset:0 atIndex:nbound + i];
  [enc endEncoding];
  id *captured = NULL;
  if (ntemps > 0) {
    captured = malloc(ntemps * sizeof(id));
    memcpy(captured, temps, ntemps * sizeof(id));
  }
  size_t ncaptured = ntemps;
  [cb addCompletedHandler:^(id done) {
    (void)done;
    for (size_t i = 0; i < ncaptured; i++) mlx_free(captured[i]);
    free(captured);
  }];
  [cb retain];
  [cb commit];
  if (s->last != nil) [s->last release];
  s->last = cb;
}

/* mx.synchronize() on this stream. */
static void stream_synchronize(struct stream *s) {
  if (s->last == nil) return;
  [s->last waitUntilCompleted];
  [s->last release];
  s->last = nil;
}

static void stream_destroy(struct stream *s) {
  stream_synchronize(s);
  [s->queue release];
}

static void touch(id buf) {
  unsigned char *p = [(id<SimMTLBuffer>)buf contents];
  if (p != NULL) p[0] = 1;
}

/* ------------------------------------------------------------------------ */
/* Workloads                                                                 */
/* ------------------------------------------------------------------------ */

/* Load a model, run a few decode steps, unload it, and load it again at once
 * (the oMLX back-to-back benchmark pattern). */
static int workload_load_unload(void) {
  unsigned long cycles = opt("cycles", 8);
  unsigned long nweights = opt("weights", 8);
  unsigned long weight_bytes = opt("weight-mb", 4) << 20;
  unsigned long steps = opt("steps", 10);
  unsigned long pause_ms = opt("pause-ms", 0); /* what a cadence guard would impose */
  struct stream s;
  stream_init(&s);
  id *weights = calloc(nweights, sizeof(id));
  for (unsigned long c = 0; c < cycles; c++) {
    printf("load-unload: cycle %lu: load %lu x %lu MiB\n", c + 1, nweights, weight_bytes >> 20);
    fflush(stdout);
    for (unsigned long i = 0; i < nweights; i++) {
      weights[i] = mlx_malloc(weight_bytes);
      if (weights[i] == nil) {
        fprintf(stderr, "load-unload: load failed (caught)\n");
        return 1;
      }
      touch(weights[i]);
    }
    stream_eval(&s, weights, nweights, NULL, 0); /* upload/warm-up */
    for (unsigned long step = 0; step < steps; step++) {
      id temps[2] = {mlx_malloc(64 << 10), mlx_malloc(32 << 10)};
      stream_eval(&s, weights, nweights, temps, 2);
    }
    stream_synchronize(&s);
    /* Unload: the weights' arrays go, then mx.clear_cache(). */
    for (unsigned long i = 0; i < nweights; i++) mlx_free(weights[i]);
    mlx_clear_cache();
    printf("load-unload: cycle %lu: unloaded\n", c + 1);
    fflush(stdout);
    if (pause_ms > 0) usleep(pause_ms * 1000);
  }
  free(weights);
  stream_destroy(&s);
  return 0;
}

struct trim_stream_args {
  int index;
  unsigned long steps;
  unsigned long kv_bytes;
};

static void *trim_stream_main(void *arg) {
  struct trim_stream_args *a = arg;
  struct stream s;
  stream_init(&s);
  for (unsigned long step = 0; step < a->steps; step++) {
    id kv = mlx_malloc(a->kv_bytes);
    id act = mlx_malloc(a->kv_bytes / 2);
    id out = mlx_malloc(a->kv_bytes / 4);
    id bound[2] = {kv, act};
    id temps[1] = {out};
    stream_eval(&s, bound, 2, temps, 1);
    /* The graph no longer references the intermediates once encoded: MLX
     * recycles them into the shared cache while the GPU still runs. */
    mlx_free(act);
    mlx_free(kv);
    /* The prompt cache overflows: mlx-lm calls mx.clear_cache() after each
     * prefill chunk while the next async_eval is in flight. */
    mlx_clear_cache();
    if (step % 8 == 0) {
      printf("concurrent-trim: stream %d step %lu\n", a->index, step);
      fflush(stdout);
    }
  }
  stream_destroy(&s);
  return NULL;
}

static int workload_concurrent_trim(void) {
  unsigned long streams = opt("streams", 2);
  if (streams == 0 || streams > 16) streams = 2;
  pthread_t threads[16];
  struct trim_stream_args args[16];
  for (unsigned long i = 0; i < streams; i++) {
    args[i] = (struct trim_stream_args){(int)i, opt("steps", 40), opt("kv-kb", 256) << 10};
    pthread_create(&threads[i], NULL, trim_stream_main, &args[i]);
  }
  for (unsigned long i = 0; i < streams; i++) pthread_join(threads[i], NULL);
  mlx_clear_cache();
  return 0;
}

/* mlx-lm's server with the wired limit raised: every buffer is added to the
 * residency set on allocation and removed on release, and the cache evicts
 * the previous request's KV blocks while the next step is in flight. */
static int workload_residency_churn(void) {
  unsigned long steps = opt("steps", 30);
  unsigned long blocks = opt("blocks", 4);
  unsigned long block_bytes = opt("block-kb", 128) << 10;
  unsigned long defer = opt("defer", 0);
  wire_up(opt("wired-limit-mb", 1024));
  struct stream s;
  stream_init(&s);
  id *prev = calloc(blocks, sizeof(id));
  id *cur = calloc(blocks, sizeof(id));
  for (unsigned long step = 0; step < steps; step++) {
    for (unsigned long i = 0; i < blocks; i++) cur[i] = mlx_malloc(block_bytes);
    /* The previous step has finished on the GPU (its result was read). */
    stream_synchronize(&s);
    stream_eval(&s, cur, blocks, NULL, 0);
    /* Cache overflow: the previous request's blocks really go (removal from
     * the residency set + commit, then release) while this step runs. */
    if (step > 0) {
      if (defer) stream_synchronize(&s); /* what a deferred removal waits for */
      for (unsigned long i = 0; i < blocks; i++) mlx_release_buffer(prev[i]);
    }
    id *t = prev;
    prev = cur;
    cur = t;
    if (step % 8 == 0) {
      printf("residency-churn: step %lu\n", step);
      fflush(stdout);
    }
  }
  stream_synchronize(&s);
  for (unsigned long i = 0; i < blocks; i++) mlx_release_buffer(prev[i]);
  mlx_clear_cache();
  free(prev);
  free(cur);
  stream_destroy(&s);
  return 0;
}

/* A long prompt arrives while a decode step is in flight: its prefill asks for
 * one buffer above the working set. nil is caught like MLX's RuntimeError. */
static int workload_oversize_prefill(void) {
  uint64_t working_set = [g_device recommendedMaxWorkingSetSize];
  unsigned long bytes = opt("bytes", (unsigned long)(working_set + working_set / 4));
  struct stream s;
  stream_init(&s);
  id weights[2] = {mlx_malloc(2 << 20), mlx_malloc(2 << 20)};
  /* The other request's decode steps are queued on the GPU. */
  for (unsigned long i = 0; i < opt("decode-steps", 150); i++) {
    id temps[1] = {mlx_malloc(64 << 10)};
    stream_eval(&s, weights, 2, temps, 1);
  }
  printf("oversize-prefill: requesting %lu bytes (working set %llu)\n", bytes,
         (unsigned long long)working_set);
  fflush(stdout);
  id prefill = mlx_malloc(bytes);
  if (prefill == nil) {
    printf("oversize-prefill: caught RuntimeError: [malloc] Unable to allocate %lu bytes.\n",
           (bytes + PAGE - 1) / PAGE * PAGE);
  } else {
    printf("oversize-prefill: allocated\n");
    mlx_free(prefill);
  }
  fflush(stdout);
  stream_synchronize(&s);
  mlx_free(weights[0]);
  mlx_free(weights[1]);
  mlx_clear_cache();
  stream_destroy(&s);
  return 0;
}

/* Queue work and leave: the process exits while the GPU still runs it. */
static int workload_exit_inflight(void) {
  unsigned long cbs = opt("command-buffers", 150);
  static struct stream s; /* never destroyed: exit does not wait */
  stream_init(&s);
  id weights[2] = {mlx_malloc(1 << 20), mlx_malloc(1 << 20)};
  for (unsigned long i = 0; i < cbs; i++) {
    id temps[1] = {mlx_malloc(64 << 10)};
    stream_eval(&s, weights, 2, temps, 1);
  }
  printf("exit-inflight: exiting with %lu command buffer(s) queued\n", cbs);
  fflush(stdout);
  if (opt("drain", 0)) stream_synchronize(&s); /* what an exit drain does */
  return 0;
}

/* Every call above, in the order that is safe under the model: synchronize
 * before trimming or unwiring, pause between loads. */
static int workload_steady(void) {
  wire_up(opt("wired-limit-mb", 256));
  struct stream s;
  stream_init(&s);
  for (unsigned long round = 0; round < opt("rounds", 3); round++) {
    id weights[4];
    for (int i = 0; i < 4; i++) weights[i] = mlx_malloc(2 << 20);
    for (int step = 0; step < 5; step++) {
      id temps[2] = {mlx_malloc(64 << 10), mlx_malloc(100)};
      stream_eval(&s, weights, 4, temps, 2);
    }
    /* Caller memory wrapped without a copy (MLX's make_buffer, from numpy),
     * and a small constant uploaded by copy. */
    size_t host_len = 64 << 10;
    void *host = NULL;
    if (posix_memalign(&host, PAGE, host_len) != 0) host = NULL;
    id wrapped = nil;
    if (host != NULL) {
      memset(host, 0, host_len);
      wrapped = [g_device newBufferWithBytesNoCopy:host
                                            length:host_len
                                           options:MLX_OPTIONS
                                       deallocator:^(void *pointer, NSUInteger length) {
                                         (void)length;
                                         free(pointer);
                                       }];
      if (wrapped == nil) free(host); /* MLX falls back to malloc + copy */
    }
    float constants[64] = {1.0f};
    id copied = [g_device newBufferWithBytes:constants length:sizeof constants options:MLX_OPTIONS];
    id extra[2] = {wrapped != nil ? wrapped : weights[0], copied != nil ? copied : weights[1]};
    stream_eval(&s, extra, 2, NULL, 0);
    stream_synchronize(&s);
    if (wrapped != nil) [(id<SimMTLObjectMethods>)wrapped release];
    if (copied != nil) [(id<SimMTLObjectMethods>)copied release];
    for (int i = 0; i < 4; i++) mlx_free(weights[i]);
    mlx_clear_cache();
    usleep(opt("pause-ms", 250) * 1000);
  }
  stream_destroy(&s);
  printf("steady: %lu rounds\n", opt("rounds", 3));
  return 0;
}

/* ------------------------------------------------------------------------ */
/* The inherited-method trap                                                 */
/* ------------------------------------------------------------------------ */

/* Methods the concrete classes inherit from a driver superclass. A swizzler
 * must override them on the concrete class (class_addMethod) and leave the
 * superclass alone: its IMPs here must not change during the run. */
static const struct {
  const char *cls;
  const char *sel;
} kInherited[] = {
    {"SimIOGPUMetalDevice", "newCommandQueue"},
    {"SimIOGPUMetalDevice", "newCommandQueueWithMaxCommandBufferCount:"},
    {"SimIOGPUMetalDevice", "newResidencySetWithDescriptor:error:"},
    {"SimIOGPUMetalDevice", "recommendedMaxWorkingSetSize"},
    {"SimIOGPUMetalDevice", "maxBufferLength"},
    {"SimIOGPUMetalHeap", "newBufferWithLength:options:"},
    {"SimIOGPUMetalCommandQueue", "commandBuffer"},
    {"SimIOGPUMetalCommandQueue", "commandBufferWithUnretainedReferences"},
    {"SimIOGPUMetalCommandQueue", "commandBufferWithDescriptor:"},
    {"SimIOGPUMetalCommandBuffer", "addCompletedHandler:"},
    {"SimIOGPUMetalCommandBuffer", "commit"},
    {"SimIOGPUMetalCommandBuffer", "waitUntilCompleted"},
    {"SimIOGPUMetalBuffer", "retain"},
    {"SimIOGPUMetalBuffer", "release"},
    {"SimIOGPUMetalBuffer", "dealloc"},
    {"SimMTLObject", "retain"},
    {"SimMTLObject", "release"},
    {"SimMTLObject", "dealloc"},
};
#define N_INHERITED (sizeof kInherited / sizeof kInherited[0])
static IMP g_inherited_imps[N_INHERITED];

static IMP own_imp(size_t i) {
  Class cls = objc_getClass(kInherited[i].cls);
  if (cls == Nil) return NULL;
  Method m = class_getInstanceMethod(cls, sel_registerName(kInherited[i].sel));
  return m != NULL ? method_getImplementation(m) : NULL;
}

static void record_inherited_imps(void) {
  for (size_t i = 0; i < N_INHERITED; i++) g_inherited_imps[i] = own_imp(i);
}

/* Returns 0 when every superclass IMP is what it was at start. */
static int inherited_imps_changed(void) {
  int changed = 0;
  for (size_t i = 0; i < N_INHERITED; i++) {
    if (own_imp(i) != g_inherited_imps[i]) {
      fprintf(stderr,
              "mlx_workload: inherited-method trap: -[%s %s] was replaced on the superclass "
              "(hook the concrete class with class_addMethod instead)\n",
              kInherited[i].cls, kInherited[i].sel);
      changed = 1;
    }
  }
  return changed;
}

int main(int argc, char **argv) {
  g_argc = argc;
  g_argv = argv;
  const char *name = argc > 1 ? argv[1] : "";
  int (*run)(void) = NULL;
  if (strcmp(name, "load-unload") == 0) run = workload_load_unload;
  else if (strcmp(name, "concurrent-trim") == 0) run = workload_concurrent_trim;
  else if (strcmp(name, "residency-churn") == 0) run = workload_residency_churn;
  else if (strcmp(name, "oversize-prefill") == 0) run = workload_oversize_prefill;
  else if (strcmp(name, "exit-inflight") == 0) run = workload_exit_inflight;
  else if (strcmp(name, "steady") == 0) run = workload_steady;
  if (run == NULL) {
    fprintf(stderr,
            "usage: mlx_workload <load-unload|concurrent-trim|residency-churn|oversize-prefill|"
            "exit-inflight|steady> [--key value ...]\n");
    return 2;
  }
  g_retained = opt("retained", 0) != 0;
  record_inherited_imps(); /* before the first device: hooks are installed then */
  device_init();
  int rc = run();
  if (opt("break-superclass", 0)) {
    /* Self-test of the check below: what a careless swizzler would do. */
    Class base = objc_getClass("SimIOGPUMetalCommandBuffer");
    Method commit = class_getInstanceMethod(base, sel_registerName("commit"));
    Method wait = class_getInstanceMethod(base, sel_registerName("waitUntilCompleted"));
    method_setImplementation(commit, method_getImplementation(wait));
  }
  if (inherited_imps_changed()) return 3;
  if (rc == 0) printf("workload %s: done\n", name);
  fflush(stdout);
  return rc;
}
