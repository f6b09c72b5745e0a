/* probe_driver.m: see probe.h. */
#include "probe.h"
#include <Block.h>
#include <objc/runtime.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static long g_base_allocations;
static long g_live_buffers;
static long g_in_flight;

long probe_base_allocations(void) { return __atomic_load_n(&g_base_allocations, __ATOMIC_SEQ_CST); }
long probe_live_buffers(void) { return __atomic_load_n(&g_live_buffers, __ATOMIC_SEQ_CST); }
long probe_in_flight(void) { return __atomic_load_n(&g_in_flight, __ATOMIC_SEQ_CST); }

static long env_long(const char *name, long fallback) {
  const char *v = getenv(name);
  return v && *v ? atol(v) : fallback;
}

__attribute__((objc_root_class))
@interface ProbeObject {
  Class isa;
  long _rc;
}
@end

@implementation ProbeObject
+ (id)alloc {
  ProbeObject *o = (ProbeObject *)class_createInstance(self, 0);
  o->_rc = 1;
  return o;
}
+ (id)new { return [[self alloc] init]; }
- (id)init { return self; }
- (id)retain {
  __atomic_fetch_add(&_rc, 1, __ATOMIC_RELAXED);
  return self;
}
- (void)release {
  if (__atomic_fetch_sub(&_rc, 1, __ATOMIC_ACQ_REL) == 1) [self dealloc];
}
- (void)dealloc { object_dispose(self); }
@end

@interface ProbeBuffer : ProbeObject {
@public
  NSUInteger _length;
}
- (NSUInteger)length;
@end
@implementation ProbeBuffer
- (NSUInteger)length { return _length; }
- (void)dealloc {
  __atomic_fetch_sub(&g_live_buffers, 1, __ATOMIC_SEQ_CST);
  [super dealloc];
}
@end

static id make_buffer(NSUInteger length) {
  ProbeBuffer *b = [ProbeBuffer alloc];
  b->_length = length;
  __atomic_fetch_add(&g_live_buffers, 1, __ATOMIC_SEQ_CST);
  return b;
}

@interface ProbeCommandBuffer : ProbeObject {
@public
  BOOL _retained;
  ProbeHandler _handlers[8];
  int _nhandlers;
  int _completed;
}
@end

static void *gpu_thread(void *arg) {
  ProbeCommandBuffer *cb = (ProbeCommandBuffer *)arg;
  usleep((useconds_t)(env_long("PROBE_GPU_MS", 20) * 1000));
  __atomic_store_n(&cb->_completed, 1, __ATOMIC_SEQ_CST);
  for (int i = 0; i < cb->_nhandlers; i++) {
    cb->_handlers[i](cb);
    Block_release(cb->_handlers[i]);
  }
  cb->_nhandlers = 0;
  __atomic_fetch_sub(&g_in_flight, 1, __ATOMIC_SEQ_CST);
  [cb release];
  return NULL;
}

@implementation ProbeCommandBuffer
- (void)addCompletedHandler:(ProbeHandler)handler {
  if (_nhandlers < 8) _handlers[_nhandlers++] = Block_copy(handler);
}
- (void)commit {
  [self retain];
  __atomic_fetch_add(&g_in_flight, 1, __ATOMIC_SEQ_CST);
  pthread_t t;
  pthread_create(&t, NULL, gpu_thread, self);
  pthread_detach(t);
}
- (void)waitUntilCompleted {
  while (!__atomic_load_n(&_completed, __ATOMIC_SEQ_CST)) usleep(1000);
}
- (BOOL)retainedReferences { return _retained; }
- (void)dealloc {
  for (int i = 0; i < _nhandlers; i++) Block_release(_handlers[i]);
  [super dealloc];
}
@end

@interface ProbeQueue : ProbeObject
@end
@implementation ProbeQueue
- (id)commandBuffer {
  ProbeCommandBuffer *cb = [ProbeCommandBuffer new];
  cb->_retained = YES;
  return cb;
}
- (id)commandBufferWithUnretainedReferences {
  ProbeCommandBuffer *cb = [ProbeCommandBuffer new];
  cb->_retained = NO;
  return cb;
}
@end

@interface ProbeResidencySet : ProbeObject {
  id _allocations[64];
  NSUInteger _count;
  pthread_mutex_t _lock;
}
@end
@implementation ProbeResidencySet
- (id)init {
  pthread_mutex_init(&_lock, NULL);
  return self;
}
- (void)addAllocation:(id)allocation {
  pthread_mutex_lock(&_lock);
  if (_count < 64) _allocations[_count++] = [allocation retain];
  pthread_mutex_unlock(&_lock);
}
- (void)removeAllocation:(id)allocation {
  pthread_mutex_lock(&_lock);
  for (NSUInteger i = 0; i < _count; i++) {
    if (_allocations[i] == allocation) {
      [allocation release];
      _allocations[i] = _allocations[--_count];
      break;
    }
  }
  pthread_mutex_unlock(&_lock);
}
- (void)commit {}
- (NSUInteger)allocationCount { return _count; }
@end

/* The base class owns every device method; concrete classes inherit. */
@interface ProbeBaseDevice : ProbeObject
@end
@implementation ProbeBaseDevice
- (id)newBufferWithLength:(NSUInteger)length options:(NSUInteger)options {
  __atomic_fetch_add(&g_base_allocations, 1, __ATOMIC_SEQ_CST);
  return make_buffer(length);
}
- (id)newBufferWithBytes:(const void *)bytes length:(NSUInteger)length options:(NSUInteger)options {
  __atomic_fetch_add(&g_base_allocations, 1, __ATOMIC_SEQ_CST);
  return make_buffer(length);
}
- (id)newCommandQueue { return [ProbeQueue new]; }
- (id)newResidencySetWithDescriptor:(id)descriptor error:(id *)error { return [ProbeResidencySet new]; }
- (uint64_t)recommendedMaxWorkingSetSize { return (uint64_t)env_long("PROBE_WORKING_SET", 1L << 30); }
@end

@interface ProbeDeviceA : ProbeBaseDevice
@end
@implementation ProbeDeviceA
@end
@interface ProbeDeviceB : ProbeBaseDevice
@end
@implementation ProbeDeviceB
@end

/* A validation-layer-like wrapper that forwards to an inner device. */
@interface ProbeWrapperDevice : ProbeObject {
@public
  id _inner;
}
@end
@implementation ProbeWrapperDevice
- (id)newBufferWithLength:(NSUInteger)length options:(NSUInteger)options {
  return [_inner newBufferWithLength:length options:options];
}
- (id)newCommandQueue { return [_inner newCommandQueue]; }
- (uint64_t)recommendedMaxWorkingSetSize { return [_inner recommendedMaxWorkingSetSize]; }
@end

@interface ProbeArray : ProbeObject {
@public
  id _items[2];
  NSUInteger _count;
}
@end
@implementation ProbeArray
- (NSUInteger)count { return _count; }
- (id)objectAtIndex:(NSUInteger)index { return index < _count ? _items[index] : nil; }
@end

static id g_device;
static id g_inner;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void make_devices(void) {
  g_inner = [ProbeDeviceA new];
  if (env_long("PROBE_WRAPPED", 0)) {
    ProbeWrapperDevice *w = [ProbeWrapperDevice new];
    w->_inner = g_inner;
    g_device = w;
  } else {
    g_device = g_inner;
  }
}

id MTLCreateSystemDefaultDevice(void) {
  pthread_once(&g_once, make_devices);
  return [g_device retain];
}

id MTLCopyAllDevices(void) {
  pthread_once(&g_once, make_devices);
  ProbeArray *a = [ProbeArray new];
  a->_items[a->_count++] = g_device;
  if (g_device != g_inner) a->_items[a->_count++] = g_inner;
  return a;
}

id probe_sibling_device(void) { return [ProbeDeviceB new]; }

__attribute__((destructor)) static void report_teardown(void) {
  if (env_long("PROBE_REPORT_TEARDOWN", 0))
    fprintf(stderr, "probe: in_flight_at_teardown=%ld\n", probe_in_flight());
}
