/*
 * churn.m: the overhead benchmark's client. Times a loop of Metal calls
 * against the simulated driver (tests/sim-metal) and prints ns per
 * iteration. The benchmark runs it with and without the guard preloaded.
 *
 * Usage: churn alloc|cycle ITERATIONS
 *   alloc  newBufferWithLength:options: + release (hooks: allocation, dealloc)
 *   cycle  allocate, bind, commit, complete, free: newBufferWithLength:options:,
 *          commandBufferWithUnretainedReferences, setBuffer:offset:atIndex:,
 *          commit, waitUntilCompleted, release (hooks: allocation, command
 *          buffer creation + our completion handler, commit,
 *          waitUntilCompleted, dealloc)
 *   residency  addAllocation:, commit, removeAllocation:, commit on a residency
 *          set, over 64 buffers in turn (hooks: the three residency hooks; with
 *          the default METALGUARD_RESIDENCY=defer, the removal is queued for
 *          the reaper and the next add of that buffer cancels it)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <objc/runtime.h>

#include "sim_metal.h"

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: churn alloc|cycle|residency ITERATIONS\n");
    return 2;
  }
  long n = atol(argv[2]);
  id<SimMTLDevice> dev = MTLCreateSystemDefaultDevice();
  if (dev == nil) {
    fprintf(stderr, "churn: no device\n");
    return 1;
  }
  id<SimMTLCommandQueue> queue = [dev newCommandQueue];
  MTLResourceOptions opts = MTLResourceStorageModeShared | MTLResourceHazardTrackingModeUntracked;
  /* Warm-up: first calls install hooks and start threads. */
  for (int i = 0; i < 100; i++) {
    id b = [dev newBufferWithLength:4096 options:opts];
    id<SimMTLCommandBuffer> cb = [[queue commandBufferWithUnretainedReferences] retain];
    id<SimMTLComputeCommandEncoder> enc = [cb computeCommandEncoder];
    [enc setBuffer:b offset:0 atIndex:0];
    [enc endEncoding];
    [cb commit];
    [cb waitUntilCompleted];
    [cb release];
    [b release];
  }
  double t0 = now_ns();
  if (strcmp(argv[1], "alloc") == 0) {
    for (long i = 0; i < n; i++) {
      id b = [dev newBufferWithLength:4096 options:opts];
      [b release];
    }
  } else if (strcmp(argv[1], "cycle") == 0) {
    for (long i = 0; i < n; i++) {
      id b = [dev newBufferWithLength:4096 options:opts];
      /* +0 from the driver: retained for as long as we use it, as MLX does. */
      id<SimMTLCommandBuffer> cb = [[queue commandBufferWithUnretainedReferences] retain];
      id<SimMTLComputeCommandEncoder> enc = [cb computeCommandEncoder];
      [enc setBuffer:b offset:0 atIndex:0];
      [enc endEncoding];
      [cb commit];
      [cb waitUntilCompleted];
      [cb release];
      [b release];
    }
  } else if (strcmp(argv[1], "residency") == 0) {
    Class set_desc_class = objc_getClass("MTLResidencySetDescriptor");
    id<SimMTLDescriptors> desc = [[set_desc_class alloc] init];
    [desc setInitialCapacity:64];
    id error = nil;
    id<SimMTLResidencySet> set = [dev newResidencySetWithDescriptor:desc error:&error];
    if (set == nil) {
      fprintf(stderr, "churn: no residency set\n");
      return 1;
    }
    id bufs[64];
    for (int i = 0; i < 64; i++) bufs[i] = [dev newBufferWithLength:4096 options:opts];
    /* Warm-up of the residency hooks (and the reaper's start). */
    for (int i = 0; i < 64; i++) {
      [set addAllocation:bufs[i]];
      [set commit];
      [set removeAllocation:bufs[i]];
      [set commit];
    }
    t0 = now_ns();
    for (long i = 0; i < n; i++) {
      id b = bufs[i & 63];
      [set addAllocation:b];
      [set commit];
      [set removeAllocation:b];
      [set commit];
    }
  } else {
    fprintf(stderr, "churn: unknown mode %s\n", argv[1]);
    return 2;
  }
  double t1 = now_ns();
  printf("ns_per_iter=%.1f\n", (t1 - t0) / (double)n);
  /* The queue and the device live until exit, as in MLX (a function-static
   * device): the driver's threads still use them while the process ends. */
  return 0;
}
