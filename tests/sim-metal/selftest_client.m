/*
 * selftest_client.m: libmlx_selftest_client.so, the "MLX" of
 * `metal-guard selftest` on Linux. Python loads it with ctypes and calls the
 * functions below; they drive the simulated Metal driver with the same calls
 * MLX makes (device from MTLCopyAllDevices, a small heap, buffers
 * Shared|HazardTrackingUntracked with a buffer cache, command buffers from
 * commandBufferWithUnretainedReferences, a residency set with
 * addAllocation:/removeAllocation: + commit around every buffer).
 *
 * Because this library links libsim_metal.so, the driver's entry points are
 * bound by the dynamic linker, as MLX's are, so a preloaded guard sees them.
 * A refused or failed allocation returns NULL after printing MLX's message;
 * the Python side raises RuntimeError from it, as MLX does.
 *
 * Not thread-safe: one Python thread calls it.
 */
#include <objc/runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim_metal.h"

#define MLX_OPTIONS (MTLResourceStorageModeShared | MTLResourceHazardTrackingModeUntracked)
#define EXPORT __attribute__((visibility("default")))
#define CACHE_MAX 256

static id<SimMTLDevice> g_device;
static id g_heap;
static id<SimMTLResidencySet> g_residency;
static id<SimMTLCommandQueue> g_queue;
static id g_cache[CACHE_MAX];
static size_t g_cache_len;

/* Device, heap, queue and (wired_limit_mb > 0) a residency set attached to
 * the queue. Returns 0, or -1 when no device is available. */
EXPORT int mgst_init(unsigned long wired_limit_mb) {
  if (g_device != nil) return 0;
  id<SimNSArrayMethods> devices = MTLCopyAllDevices();
  if (devices != nil && [devices count] > 0) g_device = [[devices objectAtIndex:0] retain];
  if (devices != nil) [devices release];
  if (g_device == nil) g_device = MTLCreateSystemDefaultDevice();
  if (g_device == nil) return -1;
  Class heap_desc_class = objc_getClass("MTLHeapDescriptor");
  id<SimMTLDescriptors> heap_desc = [[heap_desc_class alloc] init];
  [heap_desc setSize:1 << 20];
  g_heap = [g_device newHeapWithDescriptor:heap_desc];
  [(id<SimMTLObjectMethods>)heap_desc release];
  g_queue = [g_device newCommandQueue];
  if (wired_limit_mb > 0) {
    Class set_desc_class = objc_getClass("MTLResidencySetDescriptor");
    id<SimMTLDescriptors> set_desc = [[set_desc_class alloc] init];
    [set_desc setInitialCapacity:16];
    id error = nil;
    g_residency = [g_device newResidencySetWithDescriptor:set_desc error:&error];
    [(id<SimMTLObjectMethods>)set_desc release];
    if (g_residency != nil) {
      [g_residency requestResidency];
      id sets[1] = {g_residency};
      [g_queue addResidencySets:sets count:1];
    }
  }
  return 0;
}

/* recommendedMaxWorkingSetSize, or 0 before mgst_init. */
EXPORT unsigned long long mgst_working_set(void) {
  return g_device == nil ? 0 : [g_device recommendedMaxWorkingSetSize];
}

/* MetalAllocator::malloc: cache, heap for tiny sizes, else the device.
 * NULL (after MLX's message) when the device returns nil. */
EXPORT void *mgst_malloc(size_t size) {
  if (g_device == nil || size == 0) return NULL;
  if (size > [g_device maxBufferLength]) {
    fprintf(stderr,
            "[metal::malloc] Attempting to allocate %zu bytes which is greater than the maximum "
            "allowed buffer size of %lu bytes.\n",
            size, (unsigned long)[g_device maxBufferLength]);
    return NULL;
  }
  for (size_t i = 0; i < g_cache_len; i++) {
    if ([(id<SimMTLBuffer>)g_cache[i] length] == size) {
      id buf = g_cache[i];
      g_cache[i] = g_cache[--g_cache_len];
      return buf;
    }
  }
  id buf = nil;
  if (size < 256 && g_heap != nil) buf = [g_heap newBufferWithLength:size options:MLX_OPTIONS];
  if (buf == nil) buf = [g_device newBufferWithLength:size options:MLX_OPTIONS];
  if (buf == nil) {
    fprintf(stderr, "[malloc] Unable to allocate %zu bytes.\n", size);
    return NULL;
  }
  if (g_residency != nil) {
    [g_residency addAllocation:buf];
    [g_residency commit];
  }
  return buf;
}

/* The buffer's memory (shared storage), for filling inputs and reading results. */
EXPORT void *mgst_contents(void *buffer) {
  return buffer == NULL ? NULL : [(id<SimMTLBuffer>)(id)buffer contents];
}

static void release_buffer(id buf) {
  if (g_residency != nil) {
    [g_residency removeAllocation:buf];
    [g_residency commit];
  }
  [(id<SimMTLObjectMethods>)buf release];
}

/* The array is gone: its buffer goes back to the cache (or away when full). */
EXPORT void mgst_free(void *buffer) {
  if (buffer == NULL) return;
  if (g_cache_len < CACHE_MAX) {
    g_cache[g_cache_len++] = (id)buffer;
    return;
  }
  release_buffer((id)buffer);
}

/* mx.clear_cache(): every cached buffer really goes. Returns how many. */
EXPORT size_t mgst_clear_cache(void) {
  size_t n = g_cache_len;
  for (size_t i = 0; i < n; i++) release_buffer(g_cache[i]);
  g_cache_len = 0;
  return n;
}

/* out = a @ a for an n x n float32 matrix: one command buffer that binds both
 * buffers, committed and waited for (mx.eval). The simulated GPU does no
 * arithmetic, so the product is computed on the shared memory once the
 * command buffer has completed, where MLX would read the GPU's result. */
EXPORT int mgst_matmul(void *a, void *out, size_t n) {
  if (g_queue == nil || a == NULL || out == NULL) return -1;
  id<SimMTLCommandBuffer> cb = [g_queue commandBufferWithUnretainedReferences];
  id<SimMTLComputeCommandEncoder> enc = [cb computeCommandEncoder];
  [enc setBuffer:(id)a offset:0 atIndex:0];
  [enc setBuffer:(id)out offset:0 atIndex:1];
  [enc endEncoding];
  [cb retain];
  [cb commit];
  [cb waitUntilCompleted];
  int ok = [cb status] == MTLCommandBufferStatusCompleted ? 0 : -2;
  [cb release];
  const float *x = [(id<SimMTLBuffer>)(id)a contents];
  float *y = [(id<SimMTLBuffer>)(id)out contents];
  for (size_t i = 0; i < n; i++) {
    for (size_t j = 0; j < n; j++) {
      float sum = 0.0f;
      for (size_t k = 0; k < n; k++) sum += x[i * n + k] * x[k * n + j];
      y[i * n + j] = sum;
    }
  }
  return ok;
}

/* Everything back to the driver (MLX's teardown at exit). */
EXPORT void mgst_shutdown(void) {
  mgst_clear_cache();
  if (g_residency != nil) {
    [g_queue removeResidencySet:g_residency];
    [g_residency endResidency];
    [(id<SimMTLObjectMethods>)g_residency release];
    g_residency = nil;
  }
  if (g_queue != nil) [g_queue release];
  if (g_heap != nil) [(id<SimMTLObjectMethods>)g_heap release];
  if (g_device != nil) [g_device release];
  g_queue = nil;
  g_heap = nil;
  g_device = nil;
}
