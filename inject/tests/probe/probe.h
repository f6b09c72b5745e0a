/*
 * probe.h: a deliberately tiny Metal-shaped driver for the hook-mechanics
 * tests of libmetal_guard_inject (not a model of the driver bug: that is
 * tests/sim-metal). Selectors are Metal's; classes are arranged to exercise
 * the hooking rules: an abstract base class owns the methods and concrete
 * sibling classes inherit them (the inherited-method trap), and a wrapper
 * device forwards to an inner one (nested calls, as a validation layer does).
 *
 * Compile with: clang -fobjc-runtime=gcc -fblocks
 */
#ifndef PROBE_H
#define PROBE_H
#include <stdint.h>
#include <objc/objc.h>

typedef unsigned long NSUInteger;
typedef void (^ProbeHandler)(id commandBuffer);

@protocol ProbeMethods
+ (id)new;
- (id)retain;
- (void)release;
- (NSUInteger)length;
- (id)newBufferWithLength:(NSUInteger)length options:(NSUInteger)options;
- (id)newBufferWithBytes:(const void *)bytes length:(NSUInteger)length options:(NSUInteger)options;
- (id)newCommandQueue;
- (id)newResidencySetWithDescriptor:(id)descriptor error:(id *)error;
- (uint64_t)recommendedMaxWorkingSetSize;
- (id)commandBuffer;
- (id)commandBufferWithUnretainedReferences;
- (void)addCompletedHandler:(ProbeHandler)handler;
- (void)commit;
- (void)waitUntilCompleted;
- (BOOL)retainedReferences;
- (void)addAllocation:(id)allocation;
- (void)removeAllocation:(id)allocation;
- (NSUInteger)allocationCount;
- (NSUInteger)count;
- (id)objectAtIndex:(NSUInteger)index;
@end

id MTLCreateSystemDefaultDevice(void);
id MTLCopyAllDevices(void);
/* Calls that reached the base class's allocation method. */
long probe_base_allocations(void);
/* Live buffers (allocated and not yet deallocated). */
long probe_live_buffers(void);
/* Command buffers committed and not yet completed. */
long probe_in_flight(void);
/* Make an instance of a sibling device class the entry points never return. */
id probe_sibling_device(void);
#endif
