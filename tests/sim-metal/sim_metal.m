/*
 * sim_metal.m: a simulated Metal driver with a model of the IOGPUFamily
 * "prepare count underflow" kernel panic, for metal-guard's end-to-end tests.
 *
 * This is NOT Apple's code and does not claim to be how IOGPUFamily works. It
 * models what the community measured and described (mlx#3186, mlx#3346,
 * mlx#3689, omlx PR #648, MoltenVK PR #2762): see README.md for each rule and
 * its source. The Objective-C classes use Metal's real selectors so that an
 * injected library can hook them exactly as it would on macOS.
 *
 * Build: clang -fobjc-runtime=gcc -fblocks -shared -fPIC sim_metal.m
 *        -lobjc -lBlocksRuntime -lpthread -o libsim_metal.so
 */
#include <Block.h>
#include <errno.h>
#include <fcntl.h>
#include <objc/runtime.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sim_metal.h"

#define SIM_EXPORT __attribute__((visibility("default")))

/* ------------------------------------------------------------------------ */
/* Configuration                                                             */
/* ------------------------------------------------------------------------ */

struct sim_config {
  uint64_t gpu_delay_ns;     /* SIM_METAL_GPU_DELAY_US: GPU time per command buffer */
  uint64_t complete_lag_ns;  /* SIM_METAL_COMPLETE_LAG_US: late completion records */
  uint64_t working_set;      /* SIM_METAL_WORKING_SET_BYTES */
  uint64_t max_buffer;       /* SIM_METAL_MAX_BUFFER_BYTES */
  uint64_t large_alloc;      /* SIM_METAL_LARGE_ALLOC_BYTES: first-fit region threshold */
  int trace;                 /* SIM_METAL_TRACE=1: one stderr line per driver event */
  const char *panic_dir;     /* METALGUARD_SIM_PANIC_DIR */
};

static struct sim_config g_cfg;

static uint64_t env_u64(const char *name, uint64_t fallback) {
  const char *v = getenv(name);
  if (v == NULL || *v == '\0') return fallback;
  char *end = NULL;
  errno = 0;
  unsigned long long parsed = strtoull(v, &end, 10);
  if (errno != 0 || end == v || *end != '\0') {
    fprintf(stderr, "sim-metal: ignoring %s=%s (not a whole number); using %llu\n", name, v,
            (unsigned long long)fallback);
    return fallback;
  }
  return (uint64_t)parsed;
}

static void load_config(void) {
  g_cfg.gpu_delay_ns = env_u64("SIM_METAL_GPU_DELAY_US", 2000) * 1000ull;
  g_cfg.complete_lag_ns = env_u64("SIM_METAL_COMPLETE_LAG_US", 100000) * 1000ull;
  g_cfg.working_set = env_u64("SIM_METAL_WORKING_SET_BYTES", 4ull << 30);
  g_cfg.max_buffer = env_u64("SIM_METAL_MAX_BUFFER_BYTES", g_cfg.working_set * 2);
  g_cfg.large_alloc = env_u64("SIM_METAL_LARGE_ALLOC_BYTES", 1ull << 20);
  g_cfg.trace = env_u64("SIM_METAL_TRACE", 0) != 0;
  g_cfg.panic_dir = getenv("METALGUARD_SIM_PANIC_DIR");
}

static void trace(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void trace(const char *fmt, ...) {
  if (!g_cfg.trace) return;
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  fprintf(stderr, "sim-metal: %s\n", line);
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void abstime_after(struct timespec *ts, uint64_t deadline_mono_ns) {
  /* Condition variables below use CLOCK_MONOTONIC. */
  ts->tv_sec = (time_t)(deadline_mono_ns / 1000000000ull);
  ts->tv_nsec = (long)(deadline_mono_ns % 1000000000ull);
}

static void sleep_until(uint64_t deadline) {
  struct timespec ts;
  abstime_after(&ts, deadline);
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
  }
}

/* ------------------------------------------------------------------------ */
/* Small growable arrays                                                     */
/* ------------------------------------------------------------------------ */

struct vec {
  void **items;
  size_t len;
  size_t cap;
};

static void vec_push(struct vec *v, void *item) {
  if (v->len == v->cap) {
    size_t cap = v->cap ? v->cap * 2 : 8;
    void **grown = realloc(v->items, cap * sizeof(void *));
    if (grown == NULL) {
      fprintf(stderr, "sim-metal: out of host memory\n");
      abort();
    }
    v->items = grown;
    v->cap = cap;
  }
  v->items[v->len++] = item;
}

static int vec_contains(const struct vec *v, const void *item) {
  for (size_t i = 0; i < v->len; i++)
    if (v->items[i] == item) return 1;
  return 0;
}

/* Removes the first occurrence; returns whether one was found. */
static int vec_remove(struct vec *v, const void *item) {
  for (size_t i = 0; i < v->len; i++) {
    if (v->items[i] == item) {
      memmove(&v->items[i], &v->items[i + 1], (v->len - i - 1) * sizeof(void *));
      v->len--;
      return 1;
    }
  }
  return 0;
}

static void vec_free(struct vec *v) {
  free(v->items);
  v->items = NULL;
  v->len = v->cap = 0;
}

/* ------------------------------------------------------------------------ */
/* The simulated kernel: one lock over all IOGPU bookkeeping                 */
/* ------------------------------------------------------------------------ */

@class SimIOGPUMetalBuffer, SimIOGPUMetalCommandBuffer, SimIOGPUMetalResidencySet;

/* A late completion record (see README, "late completion records"). */
struct late_record {
  uint64_t gpu_va;
  uint64_t object_id;
  uint64_t due_ns;
};

/* A free range of the first-fit large-allocation region. */
struct va_range {
  uint64_t start;
  uint64_t len;
};

enum panic_kind {
  PANIC_PREPARE_UNDERFLOW,   /* IOGPUMemory.cpp:550 */
  PANIC_PENDING_MEMORY_SET,  /* IOGPUGroupMemory.cpp:219 */
  PANIC_REMOVE_NOT_FOUND,    /* IOGPUGroupMemory.cpp:323 */
};

static struct kernel {
  pthread_mutex_t lock;
  pthread_cond_t gpu_cv;        /* work for the GPU thread */
  pthread_cond_t completion_cv; /* work for the completion thread */
  pthread_cond_t record_cv;     /* work for the record-retirement thread */
  pthread_cond_t done_cv;       /* a command buffer reached user-visible completion */

  uint64_t next_object_id;
  uint64_t next_cb_seq;
  uint64_t small_va_next;       /* bump allocator: small VAs are never reused */
  uint64_t large_va_top;        /* first-fit region: end of the used part */
  struct va_range *large_free;  /* sorted by start, coalesced */
  size_t large_free_len, large_free_cap;
  struct vec live_large;        /* live buffers placed in the large region */
  struct vec live_sets;         /* live residency sets */

  struct vec gpu_fifo;          /* committed, not yet executed */
  struct vec completion_fifo;   /* executed, handlers not yet run */
  struct late_record *records;
  size_t records_len, records_cap;
  uint64_t gpu_busy_until;
  SimIOGPUMetalCommandBuffer *executing; /* popped by the GPU thread, not yet complete */
  uint64_t inflight;            /* committed, GPU not finished */
  uint64_t live_bytes;

  int started;
} K = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .next_object_id = 1,
    .next_cb_seq = 1,
    .small_va_next = 0x0000000100000000ull,
    .large_va_top = 0x0000100000000000ull,
};

static pthread_once_t g_start_once = PTHREAD_ONCE_INIT;

static void kernel_panic(enum panic_kind kind, const char *cause, ...)
    __attribute__((noreturn, format(printf, 2, 3)));

/* User-space misuse (what Metal's own assertions or a crash would stop). */
static void client_fault(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void client_fault(const char *fmt, ...) {
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  fprintf(stderr, "sim-metal: client error (no kernel panic): %s\n", line);
  struct rlimit no_core = {0, 0};
  setrlimit(RLIMIT_CORE, &no_core);
  abort();
}

/* ------------------------------------------------------------------------ */
/* Panic reports in Apple's .ips layout                                      */
/* ------------------------------------------------------------------------ */

static size_t json_escape(char *out, size_t cap, const char *in) {
  size_t n = 0;
  for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
    char buf[8];
    const char *piece = buf;
    switch (*p) {
      case '"': piece = "\\\""; break;
      case '\\': piece = "\\\\"; break;
      case '/': piece = "\\/"; break;
      case '\n': piece = "\\n"; break;
      case '\t': piece = "\\t"; break;
      default:
        if (*p < 0x20) {
          snprintf(buf, sizeof buf, "\\u%04x", *p);
        } else {
          buf[0] = (char)*p;
          buf[1] = '\0';
        }
    }
    size_t len = strlen(piece);
    if (n + len + 1 >= cap) break;
    memcpy(out + n, piece, len);
    n += len;
  }
  out[n] = '\0';
  return n;
}

static void read_proc_name(char *out, size_t cap) {
  snprintf(out, cap, "unknown");
  FILE *f = fopen("/proc/self/comm", "r");
  if (f == NULL) return;
  if (fgets(out, (int)cap, f) != NULL) out[strcspn(out, "\n")] = '\0';
  fclose(f);
}

static long resident_pages(void) {
  long size = 0, resident = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  if (f == NULL) return 0;
  if (fscanf(f, "%ld %ld", &size, &resident) != 2) resident = 0;
  fclose(f);
  return resident;
}

static int count_threads(void) {
  FILE *f = fopen("/proc/self/status", "r");
  if (f == NULL) return 1;
  char line[256];
  int threads = 1;
  while (fgets(line, sizeof line, f) != NULL)
    if (sscanf(line, "Threads: %d", &threads) == 1) break;
  fclose(f);
  return threads;
}

static void kernel_panic(enum panic_kind kind, const char *cause_fmt, ...) {
  char cause[512];
  va_list ap;
  va_start(ap, cause_fmt);
  vsnprintf(cause, sizeof cause, cause_fmt, ap);
  va_end(ap);

  const char *message;
  const char *source;
  const char *caller;
  switch (kind) {
    case PANIC_PENDING_MEMORY_SET:
      message = "Memory object unexpectedly not found in fPendingMemorySet";
      source = "IOGPUGroupMemory.cpp:219";
      caller = "0xfffffe00529e4738";
      break;
    case PANIC_REMOVE_NOT_FOUND:
      message = "IOGPUGroupMemory::remove_memory_object() memory object not found";
      source = "IOGPUGroupMemory.cpp:323";
      caller = "0xfffffe0052a1c3f0";
      break;
    case PANIC_PREPARE_UNDERFLOW:
    default:
      message = "completeMemory() prepare count underflow";
      source = "IOGPUMemory.cpp:550";
      caller = "0xfffffe00513bbe28";
      break;
  }

  static const char os_build[] = "25E253";
  static const char os_version[] = "macOS 26.4.1 (25E253)";
  static const char kernel_version[] =
      "Darwin Kernel Version 25.4.0: Thu Mar 19 19:31:09 PDT 2026; "
      "root:xnu-12377.101.15~1/RELEASE_ARM64_T8132";

  time_t wall = time(NULL);
  struct tm utc;
  gmtime_r(&wall, &utc);
  char stamp[64], file_stamp[32];
  strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S.00 +0000", &utc);
  strftime(file_stamp, sizeof file_stamp, "%Y-%m-%d-%H%M%S", &utc);

  char proc[64];
  read_proc_name(proc, sizeof proc);
  unsigned cpu = (unsigned)(getpid() % 10);
  uint64_t seed = now_ns() ^ ((uint64_t)getpid() << 32);
  char incident[40];
  snprintf(incident, sizeof incident, "%08X-%04X-4%03X-8%03X-%012llX", (unsigned)(seed >> 3),
           (unsigned)(seed >> 11) & 0xffff, (unsigned)(seed >> 19) & 0xfff,
           (unsigned)(seed >> 27) & 0xfff, (unsigned long long)(seed & 0xffffffffffffull));

  char panic_text[2048];
  snprintf(panic_text, sizeof panic_text,
           "panic(cpu %u caller %s): \"%s\" @%s\n"
           "Debugger message: panic\n"
           "Memory ID: 0x6\n"
           "OS release type: User\n"
           "OS version: %s\n"
           "Kernel version: %s\n"
           "Paniclog version: 15\n"
           "Panicked task 0xfffffe1e4174a418: %ld pages, %d threads: pid %d: %s\n"
           "Panicked thread: 0xfffffe2a33b0c000, backtrace: 0xfffffe6ab8b7b510, tid: %ld\n"
           "  Kernel Extensions in backtrace:\n"
           "    com.apple.iokit.IOGPUFamily(130.13)[1CC2AF3D-E6EF-3DC2-B32B-8DBD8CAA09B7]"
           "@0xfffffe00513a0000->0xfffffe00513ebfff\n",
           cpu, caller, message, source, os_build, kernel_version,
           resident_pages(), count_threads(), (int)getpid(), proc,
           (long)getpid());

  char esc_panic[4096], esc_kernel[512], esc_cause[1024];
  json_escape(esc_panic, sizeof esc_panic, panic_text);
  json_escape(esc_kernel, sizeof esc_kernel, kernel_version);
  json_escape(esc_cause, sizeof esc_cause, cause);

  char report[8192];
  int len = snprintf(report, sizeof report,
                     "{\"bug_type\":\"210\",\"timestamp\":\"%s\",\"os_version\":\"%s\","
                     "\"roots_installed\":0,\"incident_id\":\"%s\"}\n"
                     "{\n"
                     "  \"build\" : \"%s\",\n"
                     "  \"product\" : \"SimulatedMac1,1\",\n"
                     "  \"socId\" : \"8132\",\n"
                     "  \"incident\" : \"%s\",\n"
                     "  \"crashReporterKey\" : \"sim-metal\",\n"
                     "  \"kernel\" : \"%s\",\n"
                     "  \"date\" : \"%s\",\n"
                     "  \"panicString\" : \"%s\",\n"
                     "  \"simulatedBy\" : \"sim-metal (metal-guard test driver): %s\"\n"
                     "}\n",
                     stamp, os_version, incident, os_version, incident, esc_kernel, stamp,
                     esc_panic, esc_cause);
  if (len < 0 || (size_t)len >= sizeof report) len = (int)strlen(report);

  char path[4096] = "";
  if (g_cfg.panic_dir != NULL && *g_cfg.panic_dir != '\0') {
    mkdir(g_cfg.panic_dir, 0700);
    for (int seq = 1; seq < 10000; seq++) {
      snprintf(path, sizeof path, "%s/panic-full-%s.%04d.ips", g_cfg.panic_dir, file_stamp, seq);
      int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
      if (fd < 0) {
        if (errno == EEXIST) continue;
        fprintf(stderr, "sim-metal: cannot write panic report %s: %s\n", path, strerror(errno));
        path[0] = '\0';
        break;
      }
      ssize_t off = 0;
      while (off < len) {
        ssize_t w = write(fd, report + off, (size_t)(len - off));
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;
        off += w;
      }
      fsync(fd);
      close(fd);
      int dfd = open(g_cfg.panic_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
      }
      break;
    }
  }
  fprintf(stderr,
          "sim-metal: SIMULATED KERNEL PANIC: \"%s\" @%s\n"
          "sim-metal: cause: %s\n"
          "sim-metal: report: %s\n",
          message, source, cause, path[0] ? path : "(METALGUARD_SIM_PANIC_DIR unset: not written)");
  if (path[0] == '\0') fputs(report, stderr);
  /* The machine would reboot here; the process stands in for it. */
  struct rlimit no_core = {0, 0};
  setrlimit(RLIMIT_CORE, &no_core);
  abort();
}

/* ------------------------------------------------------------------------ */
/* GPU virtual addresses                                                     */
/* ------------------------------------------------------------------------ */

static uint64_t round_page(uint64_t n) { return (n + 16383) & ~16383ull; }

/* Called with K.lock held. */
static uint64_t va_alloc(uint64_t len, int large) {
  len = round_page(len ? len : 1);
  if (!large) {
    uint64_t va = K.small_va_next;
    K.small_va_next += len;
    return va;
  }
  for (size_t i = 0; i < K.large_free_len; i++) {
    struct va_range *r = &K.large_free[i];
    if (r->len >= len) {
      uint64_t va = r->start;
      r->start += len;
      r->len -= len;
      if (r->len == 0) {
        memmove(r, r + 1, (K.large_free_len - i - 1) * sizeof *r);
        K.large_free_len--;
      }
      return va;
    }
  }
  uint64_t va = K.large_va_top;
  K.large_va_top += len;
  return va;
}

/* Called with K.lock held. */
static void va_free(uint64_t va, uint64_t len, int large) {
  if (!large) return;
  len = round_page(len ? len : 1);
  if (va + len == K.large_va_top) {
    K.large_va_top = va;
    /* Fold a free range that now touches the top. */
    while (K.large_free_len > 0) {
      struct va_range *last = &K.large_free[K.large_free_len - 1];
      if (last->start + last->len != K.large_va_top) break;
      K.large_va_top = last->start;
      K.large_free_len--;
    }
    return;
  }
  size_t i = 0;
  while (i < K.large_free_len && K.large_free[i].start < va) i++;
  if (K.large_free_len == K.large_free_cap) {
    size_t cap = K.large_free_cap ? K.large_free_cap * 2 : 16;
    struct va_range *grown = realloc(K.large_free, cap * sizeof *grown);
    if (grown == NULL) abort();
    K.large_free = grown;
    K.large_free_cap = cap;
  }
  memmove(&K.large_free[i + 1], &K.large_free[i], (K.large_free_len - i) * sizeof *K.large_free);
  K.large_free[i] = (struct va_range){va, len};
  K.large_free_len++;
  /* Coalesce with the next, then the previous neighbour. */
  if (i + 1 < K.large_free_len && K.large_free[i].start + K.large_free[i].len == K.large_free[i + 1].start) {
    K.large_free[i].len += K.large_free[i + 1].len;
    memmove(&K.large_free[i + 1], &K.large_free[i + 2], (K.large_free_len - i - 2) * sizeof *K.large_free);
    K.large_free_len--;
  }
  if (i > 0 && K.large_free[i - 1].start + K.large_free[i - 1].len == K.large_free[i].start) {
    K.large_free[i - 1].len += K.large_free[i].len;
    memmove(&K.large_free[i], &K.large_free[i + 1], (K.large_free_len - i - 1) * sizeof *K.large_free);
    K.large_free_len--;
  }
}

/* ------------------------------------------------------------------------ */
/* Root class: reference counting like NSObject (manual retain/release)       */
/* ------------------------------------------------------------------------ */

__attribute__((objc_root_class))
@interface SimMTLObject {
  Class isa;
  long _refcount;
}
+ (id)alloc;
+ (id)new;
+ (Class)class;
- (id)init;
- (id)retain;
- (void)release;
- (NSUInteger)retainCount;
- (void)dealloc;
@end

@implementation SimMTLObject
+ (id)alloc {
  SimMTLObject *obj = (SimMTLObject *)class_createInstance(self, 0);
  if (obj == nil) return nil;
  obj->_refcount = 1;
  return obj;
}
+ (id)new {
  return [[self alloc] init];
}
+ (Class)class {
  return self;
}
- (id)init {
  return self;
}
- (id)retain {
  __atomic_fetch_add(&_refcount, 1, __ATOMIC_RELAXED);
  return self;
}
- (void)release {
  long before = __atomic_fetch_sub(&_refcount, 1, __ATOMIC_ACQ_REL);
  if (before == 1) {
    [self dealloc];
  } else if (before <= 0) {
    client_fault("-[%s release]: over-released object %p", object_getClassName(self), (void *)self);
  }
}
- (NSUInteger)retainCount {
  return (NSUInteger)__atomic_load_n(&_refcount, __ATOMIC_RELAXED);
}
- (void)dealloc {
  object_dispose(self);
}
@end

/* ------------------------------------------------------------------------ */
/* Descriptors (Metal's public class names)                                  */
/* ------------------------------------------------------------------------ */

@interface MTLHeapDescriptor : SimMTLObject {
 @public
  NSUInteger _size;
  NSUInteger _storageMode;
}
- (void)setSize:(NSUInteger)size;
- (NSUInteger)size;
- (void)setStorageMode:(NSUInteger)mode;
- (void)setHazardTrackingMode:(NSUInteger)mode;
@end
@implementation MTLHeapDescriptor
- (void)setSize:(NSUInteger)size { _size = size; }
- (NSUInteger)size { return _size; }
- (void)setStorageMode:(NSUInteger)mode { _storageMode = mode; }
- (void)setHazardTrackingMode:(NSUInteger)mode { (void)mode; }
@end

@interface MTLCommandBufferDescriptor : SimMTLObject {
 @public
  BOOL _retainedReferences;
  NSUInteger _errorOptions;
}
- (void)setRetainedReferences:(BOOL)retained;
- (BOOL)retainedReferences;
- (void)setErrorOptions:(NSUInteger)options;
- (NSUInteger)errorOptions;
@end
@implementation MTLCommandBufferDescriptor
- (id)init {
  _retainedReferences = YES; /* Metal's default */
  return self;
}
- (void)setRetainedReferences:(BOOL)retained { _retainedReferences = retained; }
- (BOOL)retainedReferences { return _retainedReferences; }
- (void)setErrorOptions:(NSUInteger)options { _errorOptions = options; }
- (NSUInteger)errorOptions { return _errorOptions; }
@end

@interface MTLResidencySetDescriptor : SimMTLObject {
 @public
  NSUInteger _initialCapacity;
}
- (void)setInitialCapacity:(NSUInteger)capacity;
- (NSUInteger)initialCapacity;
- (void)setLabel:(id)label;
@end
@implementation MTLResidencySetDescriptor
- (void)setInitialCapacity:(NSUInteger)capacity { _initialCapacity = capacity; }
- (NSUInteger)initialCapacity { return _initialCapacity; }
- (void)setLabel:(id)label { (void)label; }
@end

/* ------------------------------------------------------------------------ */
/* Buffers (memory objects)                                                  */
/* ------------------------------------------------------------------------ */

@class SimIOGPUMetalHeap;

@interface SimIOGPUMetalResource : SimMTLObject {
 @public
  uint64_t _objectId;
  uint64_t _gpuVA;
  NSUInteger _length;
  MTLResourceOptions _options;
  /* IOGPU bookkeeping (K.lock): */
  long _prepareCount;   /* prepares by committed, not yet GPU-completed work */
  int _destroyed;       /* released to zero: the memory object is gone */
  int _evicted;         /* torn down by the kernel while prepared (OOM, exit) */
  int _large;           /* placed in the first-fit region */
}
@end
@implementation SimIOGPUMetalResource
@end

@interface SimIOGPUMetalBuffer : SimIOGPUMetalResource {
 @public
  void *_contents;          /* lazily mapped, or the caller's memory (no-copy) */
  size_t _mappedLength;
  int _noCopy;
  MTLNoCopyDeallocator _deallocator;
  SimIOGPUMetalHeap *_heap; /* retained; nil for device buffers */
}
- (NSUInteger)length;
- (void *)contents;
- (uint64_t)gpuAddress;
@end

@interface SimAGXG16XFamilyBuffer : SimIOGPUMetalBuffer
@end

@interface SimIOGPUMetalHeap : SimMTLObject {
 @public
  NSUInteger _size;
  NSUInteger _used;
}
- (NSUInteger)size;
- (NSUInteger)usedSize;
- (id)newBufferWithLength:(NSUInteger)length options:(MTLResourceOptions)options;
@end

@interface SimAGXG16XFamilyHeap : SimIOGPUMetalHeap
@end

/* Zombies: a freed buffer keeps its memory for a while so that a message sent
 * to it is reported as what it is (use after free) rather than as a random
 * crash, and so that a residency-set removal of it finds no memory object. */
#define ZOMBIE_RING 65536
static SimIOGPUMetalBuffer *g_zombies[ZOMBIE_RING];
static size_t g_zombie_next;

static void check_alive(SimIOGPUMetalResource *res, const char *what) {
  if (res != nil && __atomic_load_n(&res->_destroyed, __ATOMIC_ACQUIRE))
    client_fault("%s sent to deallocated buffer (id %llu, %s)", what,
                 (unsigned long long)res->_objectId, object_getClassName((id)res));
}

/* Called with K.lock held: the memory object of `buf` is destroyed. */
static void kernel_destroy_memory(SimIOGPUMetalBuffer *buf);

static SimIOGPUMetalBuffer *buffer_create(Class cls, NSUInteger length, MTLResourceOptions options) {
  SimIOGPUMetalBuffer *buf = [cls alloc];
  if (buf == nil) return nil;
  buf->_length = length;
  buf->_options = options;
  pthread_mutex_lock(&K.lock);
  buf->_objectId = K.next_object_id++;
  buf->_large = length >= g_cfg.large_alloc;
  buf->_gpuVA = va_alloc(length, buf->_large);
  if (buf->_large) vec_push(&K.live_large, buf);
  K.live_bytes += length;
  pthread_mutex_unlock(&K.lock);
  trace("alloc buffer id=%llu len=%lu va=0x%llx", (unsigned long long)buf->_objectId,
        (unsigned long)length, (unsigned long long)buf->_gpuVA);
  return buf;
}

@implementation SimIOGPUMetalBuffer
- (id)retain {
  check_alive(self, "retain");
  return [super retain];
}
- (void)release {
  check_alive(self, "release");
  [super release];
}
- (NSUInteger)length {
  check_alive(self, "length");
  return _length;
}
- (void *)contents {
  check_alive(self, "contents");
  if (_contents == NULL && _length > 0) {
    void *p = mmap(NULL, _length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (p == MAP_FAILED) return NULL;
    void *expected = NULL;
    if (__atomic_compare_exchange_n(&_contents, &expected, p, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
      _mappedLength = _length;
    } else {
      munmap(p, _length);
    }
  }
  return _contents;
}
- (uint64_t)gpuAddress {
  return _gpuVA;
}
/* No [super dealloc]: the object stays allocated as a zombie (see above). */
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wobjc-missing-super-calls"
- (void)dealloc {
  MTLNoCopyDeallocator deallocator = _deallocator;
  void *contents = _contents;
  pthread_mutex_lock(&K.lock);
  kernel_destroy_memory(self);
  if (_heap != nil) _heap->_used -= round_page(_length);
  SimIOGPUMetalBuffer *evicted = g_zombies[g_zombie_next];
  g_zombies[g_zombie_next] = self;
  g_zombie_next = (g_zombie_next + 1) % ZOMBIE_RING;
  pthread_mutex_unlock(&K.lock);
  trace("free buffer id=%llu", (unsigned long long)_objectId);

  if (_noCopy) {
    if (deallocator != NULL) {
      deallocator(contents, _length);
      Block_release(deallocator);
    }
  } else if (contents != NULL && _mappedLength > 0) {
    munmap(contents, _mappedLength);
  }
  _contents = NULL;
  _deallocator = NULL;
  if (_heap != nil) {
    SimIOGPUMetalHeap *heap = _heap;
    _heap = nil;
    [heap release];
  }
  /* The oldest zombie leaves the ring and its memory goes back to the host. */
  if (evicted != nil) object_dispose((id)evicted);
}
#pragma clang diagnostic pop
@end

@implementation SimAGXG16XFamilyBuffer
@end

@implementation SimIOGPUMetalHeap
- (NSUInteger)size { return _size; }
- (NSUInteger)usedSize { return _used; }
- (id)newBufferWithLength:(NSUInteger)length options:(MTLResourceOptions)options {
  NSUInteger need = round_page(length);
  pthread_mutex_lock(&K.lock);
  int fits = _used + need <= _size;
  if (fits) _used += need;
  pthread_mutex_unlock(&K.lock);
  if (!fits) return nil; /* heap full: Metal returns nil */
  SimIOGPUMetalBuffer *buf = buffer_create([SimAGXG16XFamilyBuffer class], length, options);
  if (buf == nil) return nil;
  buf->_heap = [self retain];
  return buf;
}
@end

@implementation SimAGXG16XFamilyHeap
@end

/* ------------------------------------------------------------------------ */
/* Residency sets (IOGPU group memory)                                       */
/* ------------------------------------------------------------------------ */

enum staged_op { STAGE_ADD = 1, STAGE_REMOVE = 2 };

struct pending_entry {
  uint64_t object_id;
  uint64_t cb_seq;
};

@interface SimIOGPUMetalResidencySet : SimMTLObject {
 @public
  struct vec _members;        /* committed allocations (not retained, see README) */
  struct vec _stagedObjects;  /* addAllocation:/removeAllocation: since the last commit */
  struct vec _stagedOps;      /* (void *)(intptr_t)STAGE_ADD or STAGE_REMOVE */
  struct pending_entry *_pending; /* fPendingMemorySet: prepared through this set */
  size_t _pendingLen, _pendingCap;
  int _resident;
}
- (void)addAllocation:(id)allocation;
- (void)removeAllocation:(id)allocation;
- (void)commit;
- (void)requestResidency;
- (void)endResidency;
- (NSUInteger)allocationCount;
- (BOOL)containsAllocation:(id)allocation;
@end

/* K.lock held. */
static void pending_add(SimIOGPUMetalResidencySet *set, uint64_t object_id, uint64_t seq) {
  if (set->_pendingLen == set->_pendingCap) {
    size_t cap = set->_pendingCap ? set->_pendingCap * 2 : 16;
    struct pending_entry *grown = realloc(set->_pending, cap * sizeof *grown);
    if (grown == NULL) abort();
    set->_pending = grown;
    set->_pendingCap = cap;
  }
  set->_pending[set->_pendingLen++] = (struct pending_entry){object_id, seq};
}

/* K.lock held. Removes one entry; returns whether it was there. */
static int pending_take(SimIOGPUMetalResidencySet *set, uint64_t object_id, uint64_t seq) {
  for (size_t i = 0; i < set->_pendingLen; i++) {
    if (set->_pending[i].object_id == object_id && set->_pending[i].cb_seq == seq) {
      set->_pending[i] = set->_pending[--set->_pendingLen];
      return 1;
    }
  }
  return 0;
}

/* K.lock held. The group drops every pending entry of the object: the
 * bookkeeping error behind "not found in fPendingMemorySet". */
static size_t pending_drop_object(SimIOGPUMetalResidencySet *set, uint64_t object_id) {
  size_t dropped = 0;
  for (size_t i = 0; i < set->_pendingLen;) {
    if (set->_pending[i].object_id == object_id) {
      set->_pending[i] = set->_pending[--set->_pendingLen];
      dropped++;
    } else {
      i++;
    }
  }
  return dropped;
}

@implementation SimIOGPUMetalResidencySet
- (void)addAllocation:(id)allocation {
  if (allocation == nil) return;
  check_alive((SimIOGPUMetalResource *)allocation, "addAllocation:");
  pthread_mutex_lock(&K.lock);
  vec_push(&_stagedObjects, allocation);
  vec_push(&_stagedOps, (void *)(intptr_t)STAGE_ADD);
  pthread_mutex_unlock(&K.lock);
}
- (void)removeAllocation:(id)allocation {
  if (allocation == nil) return;
  /* Staging a removal touches no memory object; the commit does. */
  pthread_mutex_lock(&K.lock);
  vec_push(&_stagedObjects, allocation);
  vec_push(&_stagedOps, (void *)(intptr_t)STAGE_REMOVE);
  pthread_mutex_unlock(&K.lock);
}
- (void)commit {
  pthread_mutex_lock(&K.lock);
  for (size_t i = 0; i < _stagedObjects.len; i++) {
    SimIOGPUMetalBuffer *buf = _stagedObjects.items[i];
    intptr_t op = (intptr_t)_stagedOps.items[i];
    if (op == STAGE_ADD) {
      if (buf->_destroyed)
        client_fault("residency set commit: added allocation id %llu was freed before the commit",
                     (unsigned long long)buf->_objectId);
      if (!vec_contains(&_members, buf)) vec_push(&_members, buf);
    } else {
      if (buf->_destroyed) {
        kernel_panic(PANIC_REMOVE_NOT_FOUND,
                     "residency set commit removed allocation id %llu whose memory object was "
                     "already freed",
                     (unsigned long long)buf->_objectId);
      }
      if (!vec_remove(&_members, buf)) continue; /* not a member: nothing to do */
      size_t dropped = pending_drop_object(self, buf->_objectId);
      trace("residency commit: removed id=%llu (%zu pending preparations dropped)",
            (unsigned long long)buf->_objectId, dropped);
    }
  }
  _stagedObjects.len = 0;
  _stagedOps.len = 0;
  pthread_mutex_unlock(&K.lock);
}
- (void)requestResidency {
  pthread_mutex_lock(&K.lock);
  _resident = 1;
  pthread_mutex_unlock(&K.lock);
}
- (void)endResidency {
  pthread_mutex_lock(&K.lock);
  _resident = 0;
  pthread_mutex_unlock(&K.lock);
}
- (NSUInteger)allocationCount {
  pthread_mutex_lock(&K.lock);
  NSUInteger n = _members.len;
  pthread_mutex_unlock(&K.lock);
  return n;
}
- (BOOL)containsAllocation:(id)allocation {
  pthread_mutex_lock(&K.lock);
  BOOL found = vec_contains(&_members, allocation) ? YES : NO;
  pthread_mutex_unlock(&K.lock);
  return found;
}
- (void)dealloc {
  pthread_mutex_lock(&K.lock);
  vec_remove(&K.live_sets, self);
  pthread_mutex_unlock(&K.lock);
  vec_free(&_members);
  vec_free(&_stagedObjects);
  vec_free(&_stagedOps);
  free(_pending);
  [super dealloc];
}
@end

/* K.lock held. */
static void kernel_destroy_memory(SimIOGPUMetalBuffer *buf) {
  buf->_destroyed = 1;
  K.live_bytes -= buf->_length;
  if (buf->_prepareCount > 0)
    trace("buffer id=%llu freed while prepared (count %ld)", (unsigned long long)buf->_objectId,
          buf->_prepareCount);
  /* Freeing a memory object that is still a committed member of a group
   * removes it from the group, pending preparations included. */
  for (size_t i = 0; i < K.live_sets.len; i++) {
    SimIOGPUMetalResidencySet *set = K.live_sets.items[i];
    if (vec_remove(&set->_members, buf)) pending_drop_object(set, buf->_objectId);
  }
  if (buf->_large) {
    vec_remove(&K.live_large, buf);
    /* A memory object torn down while prepared keeps its range until the
     * panic it is headed for; otherwise the range is free at once. */
    if (buf->_prepareCount == 0) va_free(buf->_gpuVA, buf->_length, 1);
  }
}

/* ------------------------------------------------------------------------ */
/* Command queues, command buffers, encoders                                 */
/* ------------------------------------------------------------------------ */

struct prep {
  SimIOGPUMetalBuffer *buf;
  SimIOGPUMetalResidencySet *set; /* NULL: bound to the command buffer */
};

@class SimIOGPUMetalCommandQueue;

@interface SimIOGPUMetalCommandEncoder : SimMTLObject {
 @public
  SimIOGPUMetalCommandBuffer *_commandBuffer; /* not retained: the buffer owns the encoder */
  int _ended;
}
- (void)endEncoding;
@end

@interface SimAGXG16XFamilyComputeContext : SimIOGPUMetalCommandEncoder
- (void)setBuffer:(id)buffer offset:(NSUInteger)offset atIndex:(NSUInteger)index;
@end

@interface SimIOGPUMetalCommandBuffer : SimMTLObject {
 @public
  SimIOGPUMetalCommandQueue *_queue; /* retained */
  uint64_t _seq;
  BOOL _retainedReferences;
  NSUInteger _status;
  int _committed;
  int _completed; /* user-visible completion done (handlers ran) */
  struct vec _encoders;   /* owned */
  struct vec _bound;      /* distinct buffers bound by encoders */
  struct vec _retained;   /* buffers this command buffer holds (retained mode) */
  struct vec _handlers;   /* copied blocks, in order of addition */
  struct prep *_preps;
  size_t _prepLen;
  uint64_t _commitNs;
}
- (void)addCompletedHandler:(MTLCommandBufferHandler)block;
- (void)commit;
- (void)waitUntilCompleted;
- (NSUInteger)status;
- (BOOL)retainedReferences;
- (id)error;
@end

@interface SimAGXG16XFamilyCommandBuffer : SimIOGPUMetalCommandBuffer
- (id)computeCommandEncoder;
@end

@interface SimIOGPUMetalCommandQueue : SimMTLObject {
 @public
  struct vec _sets;          /* attached residency sets, retained */
  struct vec _uncommitted;   /* command buffers handed out and not committed: owned */
  NSUInteger _maxCommandBuffers;
  NSUInteger _outstanding;
}
- (id)commandBuffer;
- (id)commandBufferWithUnretainedReferences;
- (id)commandBufferWithDescriptor:(id)descriptor;
- (void)addResidencySet:(id)residencySet;
- (void)addResidencySets:(const id *)residencySets count:(NSUInteger)count;
- (void)removeResidencySet:(id)residencySet;
@end

@interface SimAGXG16XFamilyCommandQueue : SimIOGPUMetalCommandQueue
@end

static void *gpu_thread_main(void *arg);
static void *completion_thread_main(void *arg);
static void *record_thread_main(void *arg);

static void start_threads(void) {
  load_config();
  pthread_condattr_t attr;
  pthread_condattr_init(&attr);
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  pthread_cond_init(&K.gpu_cv, &attr);
  pthread_cond_init(&K.completion_cv, &attr);
  pthread_cond_init(&K.record_cv, &attr);
  pthread_cond_init(&K.done_cv, &attr);
  pthread_condattr_destroy(&attr);
  pthread_t t;
  pthread_create(&t, NULL, gpu_thread_main, NULL);
  pthread_detach(t);
  pthread_create(&t, NULL, completion_thread_main, NULL);
  pthread_detach(t);
  pthread_create(&t, NULL, record_thread_main, NULL);
  pthread_detach(t);
  K.started = 1;
  trace("started: gpu_delay=%lluus complete_lag=%lluus working_set=%llu max_buffer=%llu",
        (unsigned long long)(g_cfg.gpu_delay_ns / 1000), (unsigned long long)(g_cfg.complete_lag_ns / 1000),
        (unsigned long long)g_cfg.working_set, (unsigned long long)g_cfg.max_buffer);
}

@implementation SimIOGPUMetalCommandEncoder
- (void)endEncoding {
  _ended = 1;
}
@end

@implementation SimAGXG16XFamilyComputeContext
- (void)setBuffer:(id)buffer offset:(NSUInteger)offset atIndex:(NSUInteger)index {
  (void)offset;
  (void)index;
  if (buffer == nil) return;
  SimIOGPUMetalBuffer *buf = buffer;
  check_alive((SimIOGPUMetalResource *)buf, "setBuffer:offset:atIndex:");
  SimIOGPUMetalCommandBuffer *cb = _commandBuffer;
  if (_ended) client_fault("setBuffer:offset:atIndex: after endEncoding");
  pthread_mutex_lock(&K.lock);
  int fresh = !vec_contains(&cb->_bound, buf);
  if (fresh) vec_push(&cb->_bound, buf);
  int hold = fresh && cb->_retainedReferences;
  if (hold) vec_push(&cb->_retained, buf);
  pthread_mutex_unlock(&K.lock);
  /* Retained references: the command buffer keeps each resource it uses
   * alive until it completes (Metal's documented behaviour). */
  if (hold) [buf retain];
}
@end

@implementation SimIOGPUMetalCommandBuffer
- (void)addCompletedHandler:(MTLCommandBufferHandler)block {
  if (block == NULL) return;
  MTLCommandBufferHandler copy = Block_copy(block);
  pthread_mutex_lock(&K.lock);
  if (_committed)
    client_fault("-[%s addCompletedHandler:]: failed assertion `Completed handler provided after "
                 "commit call'",
                 object_getClassName(self));
  vec_push(&_handlers, copy);
  pthread_mutex_unlock(&K.lock);
}

- (void)commit {
  pthread_mutex_lock(&K.lock);
  if (_committed) {
    pthread_mutex_unlock(&K.lock);
    client_fault("-[%s commit]: failed assertion `commit an already committed command buffer'",
                 object_getClassName(self));
  }
  _committed = 1;
  _seq = K.next_cb_seq++;
  _status = MTLCommandBufferStatusCommitted;
  _commitNs = now_ns();
  /* IOGPU prepares every memory object the work binds ... */
  size_t set_members = 0;
  for (size_t i = 0; i < _queue->_sets.len; i++)
    set_members += ((SimIOGPUMetalResidencySet *)_queue->_sets.items[i])->_members.len;
  _preps = calloc(_bound.len + set_members + 1, sizeof *_preps);
  if (_preps == NULL) abort();
  for (size_t i = 0; i < _bound.len; i++) {
    SimIOGPUMetalBuffer *buf = _bound.items[i];
    if (buf->_destroyed)
      client_fault("commit: a bound buffer (id %llu) was freed before commit",
                   (unsigned long long)buf->_objectId);
    buf->_prepareCount++;
    _preps[_prepLen++] = (struct prep){buf, NULL};
  }
  /* ... and every allocation of the residency sets attached to its queue. */
  for (size_t s = 0; s < _queue->_sets.len; s++) {
    SimIOGPUMetalResidencySet *set = _queue->_sets.items[s];
    for (size_t i = 0; i < set->_members.len; i++) {
      SimIOGPUMetalBuffer *buf = set->_members.items[i];
      buf->_prepareCount++;
      pending_add(set, buf->_objectId, _seq);
      _preps[_prepLen++] = (struct prep){buf, set};
    }
  }
  K.inflight++;
  vec_remove(&_queue->_uncommitted, self); /* the driver's reference moves to the GPU queue */
  vec_push(&K.gpu_fifo, self);
  pthread_cond_signal(&K.gpu_cv);
  trace("commit cb seq=%llu retained=%d bound=%zu prepared=%zu", (unsigned long long)_seq,
        (int)_retainedReferences, _bound.len, _prepLen);
  pthread_mutex_unlock(&K.lock);
}

- (void)waitUntilCompleted {
  pthread_mutex_lock(&K.lock);
  if (!_committed) {
    pthread_mutex_unlock(&K.lock);
    client_fault("waitUntilCompleted on a command buffer that was never committed");
  }
  while (!_completed) pthread_cond_wait(&K.done_cv, &K.lock);
  pthread_mutex_unlock(&K.lock);
}

- (NSUInteger)status {
  pthread_mutex_lock(&K.lock);
  NSUInteger s = _status;
  pthread_mutex_unlock(&K.lock);
  return s;
}

- (BOOL)retainedReferences {
  return _retainedReferences;
}

- (id)error {
  return nil;
}

- (void)dealloc {
  for (size_t i = 0; i < _encoders.len; i++) [(id)_encoders.items[i] release];
  for (size_t i = 0; i < _handlers.len; i++) Block_release(_handlers.items[i]);
  /* A retained command buffer that never ran still owns its references. */
  for (size_t i = 0; i < _retained.len; i++) [(id)_retained.items[i] release];
  vec_free(&_encoders);
  vec_free(&_bound);
  vec_free(&_retained);
  vec_free(&_handlers);
  free(_preps);
  [_queue release];
  [super dealloc];
}
@end

@implementation SimAGXG16XFamilyCommandBuffer
- (id)computeCommandEncoder {
  SimAGXG16XFamilyComputeContext *enc = [[SimAGXG16XFamilyComputeContext alloc] init];
  enc->_commandBuffer = self;
  pthread_mutex_lock(&K.lock);
  vec_push(&_encoders, enc);
  pthread_mutex_unlock(&K.lock);
  return enc; /* +0: owned by the command buffer, like an autoreleased encoder */
}
@end

static id queue_make_command_buffer(SimIOGPUMetalCommandQueue *queue, BOOL retained) {
  pthread_mutex_lock(&K.lock);
  /* newCommandQueueWithMaxCommandBufferCount: blocks callers at the cap. */
  while (queue->_outstanding >= queue->_maxCommandBuffers) pthread_cond_wait(&K.done_cv, &K.lock);
  queue->_outstanding++;
  pthread_mutex_unlock(&K.lock);
  SimAGXG16XFamilyCommandBuffer *cb = [[SimAGXG16XFamilyCommandBuffer alloc] init];
  cb->_queue = [queue retain];
  cb->_retainedReferences = retained;
  cb->_status = MTLCommandBufferStatusNotEnqueued;
  pthread_mutex_lock(&K.lock);
  vec_push(&queue->_uncommitted, cb);
  pthread_mutex_unlock(&K.lock);
  return cb; /* +0 for the caller: the driver owns it until it completes */
}

@implementation SimIOGPUMetalCommandQueue
- (id)commandBuffer {
  return queue_make_command_buffer(self, YES);
}
- (id)commandBufferWithUnretainedReferences {
  return queue_make_command_buffer(self, NO);
}
- (id)commandBufferWithDescriptor:(id)descriptor {
  BOOL retained = YES;
  if (descriptor != nil) retained = ((MTLCommandBufferDescriptor *)descriptor)->_retainedReferences;
  return queue_make_command_buffer(self, retained);
}
- (void)addResidencySet:(id)residencySet {
  if (residencySet == nil) return;
  pthread_mutex_lock(&K.lock);
  int fresh = !vec_contains(&_sets, residencySet);
  if (fresh) vec_push(&_sets, residencySet);
  pthread_mutex_unlock(&K.lock);
  if (fresh) [residencySet retain];
}
- (void)addResidencySets:(const id *)residencySets count:(NSUInteger)count {
  for (NSUInteger i = 0; i < count; i++) [self addResidencySet:residencySets[i]];
}
- (void)removeResidencySet:(id)residencySet {
  pthread_mutex_lock(&K.lock);
  int found = vec_remove(&_sets, residencySet);
  pthread_mutex_unlock(&K.lock);
  if (found) [residencySet release];
}
- (void)dealloc {
  /* Every command buffer holds its queue, so none is left here. */
  for (size_t i = 0; i < _sets.len; i++) [(id)_sets.items[i] release];
  vec_free(&_sets);
  vec_free(&_uncommitted);
  [super dealloc];
}
@end

@implementation SimAGXG16XFamilyCommandQueue
@end

/* ------------------------------------------------------------------------ */
/* The GPU, completion and record threads                                    */
/* ------------------------------------------------------------------------ */

/* K.lock held: the GPU finished `cb`; IOGPU completes its memory. */
static void kernel_complete(SimIOGPUMetalCommandBuffer *cb) {
  uint64_t due = now_ns() + g_cfg.complete_lag_ns;
  for (size_t i = 0; i < cb->_prepLen; i++) {
    struct prep p = cb->_preps[i];
    SimIOGPUMetalBuffer *buf = p.buf;
    if (p.set != NULL && !pending_take(p.set, buf->_objectId, cb->_seq)) {
      kernel_panic(PANIC_PENDING_MEMORY_SET,
                   "command buffer %llu completed allocation id %llu of a residency set, but the "
                   "allocation was removed from the set (or freed) while the command buffer was in "
                   "flight",
                   (unsigned long long)cb->_seq, (unsigned long long)buf->_objectId);
    }
    if (buf->_destroyed && buf->_prepareCount > 0) {
      kernel_panic(PANIC_PREPARE_UNDERFLOW,
                   "command buffer %llu completed buffer id %llu, which was freed while the GPU "
                   "still used it (unretained reference released in flight)",
                   (unsigned long long)cb->_seq, (unsigned long long)buf->_objectId);
    }
    if (buf->_evicted) {
      kernel_panic(PANIC_PREPARE_UNDERFLOW,
                   "command buffer %llu completed buffer id %llu, whose memory the kernel had "
                   "already reclaimed (%s)",
                   (unsigned long long)cb->_seq, (unsigned long long)buf->_objectId,
                   buf->_evicted == 2 ? "process exit with GPU work in flight"
                                      : "an allocation above the working set while work was in flight");
    }
    if (buf->_prepareCount <= 0) {
      kernel_panic(PANIC_PREPARE_UNDERFLOW,
                   "command buffer %llu completed buffer id %llu at prepare count 0: a late "
                   "completion record of a freed object landed on this reused memory",
                   (unsigned long long)cb->_seq, (unsigned long long)buf->_objectId);
    }
    buf->_prepareCount--;
    if (g_cfg.complete_lag_ns > 0 && buf->_large) {
      if (K.records_len == K.records_cap) {
        size_t cap = K.records_cap ? K.records_cap * 2 : 64;
        struct late_record *grown = realloc(K.records, cap * sizeof *grown);
        if (grown == NULL) abort();
        K.records = grown;
        K.records_cap = cap;
      }
      K.records[K.records_len++] = (struct late_record){buf->_gpuVA, buf->_objectId, due};
    }
  }
  if (K.records_len > 0) pthread_cond_signal(&K.record_cv);
}

static void *gpu_thread_main(void *arg) {
  (void)arg;
  pthread_mutex_lock(&K.lock);
  for (;;) {
    while (K.gpu_fifo.len == 0) pthread_cond_wait(&K.gpu_cv, &K.lock);
    SimIOGPUMetalCommandBuffer *cb = K.gpu_fifo.items[0];
    memmove(&K.gpu_fifo.items[0], &K.gpu_fifo.items[1], (K.gpu_fifo.len - 1) * sizeof(void *));
    K.gpu_fifo.len--;
    cb->_status = MTLCommandBufferStatusScheduled;
    uint64_t start = cb->_commitNs > K.gpu_busy_until ? cb->_commitNs : K.gpu_busy_until;
    uint64_t end = start + g_cfg.gpu_delay_ns;
    K.gpu_busy_until = end;
    K.executing = cb;
    pthread_mutex_unlock(&K.lock);
    sleep_until(end);
    pthread_mutex_lock(&K.lock);
    kernel_complete(cb);
    K.executing = nil;
    cb->_status = MTLCommandBufferStatusCompleted;
    K.inflight--;
    vec_push(&K.completion_fifo, cb);
    pthread_cond_signal(&K.completion_cv);
  }
  return NULL;
}

static void *completion_thread_main(void *arg) {
  (void)arg;
  pthread_mutex_lock(&K.lock);
  for (;;) {
    while (K.completion_fifo.len == 0) pthread_cond_wait(&K.completion_cv, &K.lock);
    SimIOGPUMetalCommandBuffer *cb = K.completion_fifo.items[0];
    memmove(&K.completion_fifo.items[0], &K.completion_fifo.items[1],
            (K.completion_fifo.len - 1) * sizeof(void *));
    K.completion_fifo.len--;
    pthread_mutex_unlock(&K.lock);

    /* Handlers run in the order they were added, on this thread only. */
    for (size_t i = 0; i < cb->_handlers.len; i++) {
      MTLCommandBufferHandler h = cb->_handlers.items[i];
      h(cb);
    }
    /* Then the command buffer lets go of the resources it retained. */
    struct vec retained = cb->_retained;
    cb->_retained = (struct vec){0};
    for (size_t i = 0; i < retained.len; i++) [(id)retained.items[i] release];
    vec_free(&retained);

    pthread_mutex_lock(&K.lock);
    cb->_completed = 1;
    cb->_queue->_outstanding--;
    pthread_cond_broadcast(&K.done_cv);
    pthread_mutex_unlock(&K.lock);
    trace("completed cb seq=%llu", (unsigned long long)cb->_seq);
    [cb release]; /* the driver's own reference */
    pthread_mutex_lock(&K.lock);
  }
  return NULL;
}

/* K.lock held: the kernel reclaims every memory object that in-flight work
 * has prepared (reason 1: out of memory, 2: the process exits). */
static size_t evict_inflight(int reason) {
  size_t n = 0;
  for (size_t i = 0; i <= K.gpu_fifo.len; i++) {
    SimIOGPUMetalCommandBuffer *cb = i < K.gpu_fifo.len ? K.gpu_fifo.items[i] : K.executing;
    if (cb == nil) continue;
    for (size_t j = 0; j < cb->_prepLen; j++, n++) cb->_preps[j].buf->_evicted = reason;
  }
  return n;
}

/* K.lock held. */
static SimIOGPUMetalBuffer *live_large_at(uint64_t va) {
  for (size_t i = 0; i < K.live_large.len; i++) {
    SimIOGPUMetalBuffer *buf = K.live_large.items[i];
    if (buf->_gpuVA == va) return buf;
  }
  return nil;
}

static void *record_thread_main(void *arg) {
  (void)arg;
  pthread_mutex_lock(&K.lock);
  for (;;) {
    while (K.records_len == 0) pthread_cond_wait(&K.record_cv, &K.lock);
    uint64_t earliest = K.records[0].due_ns;
    for (size_t i = 1; i < K.records_len; i++)
      if (K.records[i].due_ns < earliest) earliest = K.records[i].due_ns;
    uint64_t now = now_ns();
    if (earliest > now) {
      struct timespec ts;
      abstime_after(&ts, earliest);
      pthread_cond_timedwait(&K.record_cv, &K.lock, &ts);
      continue;
    }
    for (size_t i = 0; i < K.records_len;) {
      struct late_record rec = K.records[i];
      if (rec.due_ns > now) {
        i++;
        continue;
      }
      K.records[i] = K.records[--K.records_len];
      SimIOGPUMetalBuffer *occupant = live_large_at(rec.gpu_va);
      if (occupant == nil || occupant->_objectId == rec.object_id) continue; /* retires cleanly */
      /* The record's object was freed and its memory reused inside the
       * window: the stale completion lands on the new object. */
      if (occupant->_prepareCount <= 0) {
        kernel_panic(PANIC_PREPARE_UNDERFLOW,
                     "late completion record of freed buffer id %llu landed on buffer id %llu, "
                     "which reused its memory at 0x%llx within the completion window "
                     "(back-to-back load)",
                     (unsigned long long)rec.object_id, (unsigned long long)occupant->_objectId,
                     (unsigned long long)rec.gpu_va);
      }
      occupant->_prepareCount--;
      trace("late record of id=%llu decremented reused id=%llu", (unsigned long long)rec.object_id,
            (unsigned long long)occupant->_objectId);
    }
  }
  return NULL;
}

/* ------------------------------------------------------------------------ */
/* Device                                                                    */
/* ------------------------------------------------------------------------ */

@interface SimIOGPUMetalDevice : SimMTLObject
- (id)newCommandQueue;
- (id)newCommandQueueWithMaxCommandBufferCount:(NSUInteger)count;
- (id)newResidencySetWithDescriptor:(id)descriptor error:(id *)error;
- (uint64_t)recommendedMaxWorkingSetSize;
- (NSUInteger)maxBufferLength;
- (BOOL)hasUnifiedMemory;
@end

@interface SimAGXG16XFamilyDevice : SimIOGPUMetalDevice
- (id)newBufferWithLength:(NSUInteger)length options:(MTLResourceOptions)options;
- (id)newBufferWithBytes:(const void *)pointer length:(NSUInteger)length options:(MTLResourceOptions)options;
- (id)newBufferWithBytesNoCopy:(void *)pointer
                        length:(NSUInteger)length
                       options:(MTLResourceOptions)options
                   deallocator:(MTLNoCopyDeallocator)deallocator;
- (id)newHeapWithDescriptor:(id)descriptor;
@end

@implementation SimIOGPUMetalDevice
- (id)newCommandQueue {
  return [self newCommandQueueWithMaxCommandBufferCount:64];
}
- (id)newCommandQueueWithMaxCommandBufferCount:(NSUInteger)count {
  SimAGXG16XFamilyCommandQueue *queue = [[SimAGXG16XFamilyCommandQueue alloc] init];
  queue->_maxCommandBuffers = count ? count : 64;
  return queue;
}
- (id)newResidencySetWithDescriptor:(id)descriptor error:(id *)error {
  (void)descriptor;
  if (error != NULL) *error = nil;
  SimIOGPUMetalResidencySet *set = [[SimIOGPUMetalResidencySet alloc] init];
  pthread_mutex_lock(&K.lock);
  vec_push(&K.live_sets, set);
  pthread_mutex_unlock(&K.lock);
  return set;
}
- (uint64_t)recommendedMaxWorkingSetSize {
  return g_cfg.working_set;
}
- (NSUInteger)maxBufferLength {
  return (NSUInteger)g_cfg.max_buffer;
}
- (BOOL)hasUnifiedMemory {
  return YES;
}
@end

/* The kernel's out-of-memory path for one allocation above the working set. */
static int oom_path(NSUInteger length) {
  if ((uint64_t)length <= g_cfg.working_set) return 0;
  pthread_mutex_lock(&K.lock);
  size_t reclaimed = 0;
  if (K.inflight > 0) {
    /* To make room the kernel unwires memory that in-flight work has
     * prepared; the completion of that work then underflows. */
    reclaimed = evict_inflight(1);
  }
  pthread_mutex_unlock(&K.lock);
  fprintf(stderr,
          "sim-metal: allocation of %lu bytes exceeds the working set (%llu bytes): "
          "out-of-memory path%s\n",
          (unsigned long)length, (unsigned long long)g_cfg.working_set,
          reclaimed ? ", reclaiming memory prepared by in-flight work" : ", returning nil");
  return 1;
}

static SimIOGPUMetalBuffer *device_new_buffer(NSUInteger length, MTLResourceOptions options) {
  if (length == 0 || (uint64_t)length > g_cfg.max_buffer) return nil;
  if (oom_path(length)) return nil;
  return buffer_create([SimAGXG16XFamilyBuffer class], length, options);
}

@implementation SimAGXG16XFamilyDevice
- (id)newBufferWithLength:(NSUInteger)length options:(MTLResourceOptions)options {
  return device_new_buffer(length, options);
}
- (id)newBufferWithBytes:(const void *)pointer length:(NSUInteger)length options:(MTLResourceOptions)options {
  SimIOGPUMetalBuffer *buf = device_new_buffer(length, options);
  if (buf != nil && pointer != NULL) memcpy([buf contents], pointer, length);
  return buf;
}
- (id)newBufferWithBytesNoCopy:(void *)pointer
                        length:(NSUInteger)length
                       options:(MTLResourceOptions)options
                   deallocator:(MTLNoCopyDeallocator)deallocator {
  /* Metal requires page-aligned memory of a page-multiple length. */
  if (pointer == NULL || length == 0 || ((uintptr_t)pointer & 4095) != 0 || (length & 4095) != 0)
    return nil;
  if ((uint64_t)length > g_cfg.max_buffer) return nil;
  if (oom_path(length)) return nil;
  SimIOGPUMetalBuffer *buf = buffer_create([SimAGXG16XFamilyBuffer class], length, options);
  if (buf == nil) return nil;
  buf->_noCopy = 1;
  buf->_contents = pointer;
  buf->_deallocator = deallocator != NULL ? Block_copy(deallocator) : NULL;
  return buf;
}
- (id)newHeapWithDescriptor:(id)descriptor {
  if (descriptor == nil) return nil;
  MTLHeapDescriptor *desc = descriptor;
  if (desc->_size == 0) return nil;
  SimAGXG16XFamilyHeap *heap = [[SimAGXG16XFamilyHeap alloc] init];
  heap->_size = desc->_size;
  return heap;
}
@end

/* ------------------------------------------------------------------------ */
/* The array MTLCopyAllDevices returns                                       */
/* ------------------------------------------------------------------------ */

@interface SimNSArray : SimMTLObject {
 @public
  struct vec _objects; /* retained */
}
- (NSUInteger)count;
- (id)objectAtIndex:(NSUInteger)index;
@end

@implementation SimNSArray
- (NSUInteger)count {
  return _objects.len;
}
- (id)objectAtIndex:(NSUInteger)index {
  if (index >= _objects.len) client_fault("-[SimNSArray objectAtIndex:]: index %lu beyond bounds", (unsigned long)index);
  return _objects.items[index];
}
- (void)dealloc {
  for (size_t i = 0; i < _objects.len; i++) [(id)_objects.items[i] release];
  vec_free(&_objects);
  [super dealloc];
}
@end

/* ------------------------------------------------------------------------ */
/* C entry points and process teardown                                       */
/* ------------------------------------------------------------------------ */

static SimAGXG16XFamilyDevice *g_device;
static pthread_once_t g_device_once = PTHREAD_ONCE_INIT;

static void make_device(void) {
  pthread_once(&g_start_once, start_threads);
  g_device = [[SimAGXG16XFamilyDevice alloc] init]; /* the system's reference, never released */
}

SIM_EXPORT id MTLCreateSystemDefaultDevice(void) {
  pthread_once(&g_device_once, make_device);
  return [g_device retain];
}

SIM_EXPORT id MTLCopyAllDevices(void) {
  pthread_once(&g_device_once, make_device);
  SimNSArray *array = [[SimNSArray alloc] init];
  vec_push(&array->_objects, [g_device retain]);
  return array;
}

/* Process exit. This destructor runs after every atexit handler (glibc runs
 * ELF destructors last), so a guard that drains in-flight work from an
 * atexit handler, or from the destructor of a library loaded before this one,
 * has finished by now. If work is still in flight, the kernel reclaims the
 * task's memory objects while they are prepared; the GPU's completion of that
 * work then underflows. */
__attribute__((destructor)) static void sim_metal_process_exit(void) {
  if (!K.started) return;
  pthread_mutex_lock(&K.lock);
  uint64_t inflight = K.inflight;
  if (inflight > 0) evict_inflight(2);
  pthread_mutex_unlock(&K.lock);
  if (inflight == 0) return;
  fprintf(stderr, "sim-metal: process exiting with %llu command buffer(s) in flight\n",
          (unsigned long long)inflight);
  /* Give the GPU thread time to reach the completion (it panics there). */
  uint64_t deadline = now_ns() + 2000000000ull + 2 * inflight * g_cfg.gpu_delay_ns;
  while (now_ns() < deadline) {
    pthread_mutex_lock(&K.lock);
    uint64_t left = K.inflight;
    pthread_mutex_unlock(&K.lock);
    if (left == 0) break;
    usleep(1000);
  }
}
