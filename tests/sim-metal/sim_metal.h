/*
 * sim_metal.h: the client-side view of the simulated Metal driver.
 *
 * The simulated driver (libsim_metal.so, sim_metal.m) registers Objective-C
 * classes on GCC's libobjc whose selectors are Metal's real ones. A client
 * (the MLX-like workload, or anything else) sends those selectors to `id`
 * values; this header only declares their signatures so clang can compile
 * the message sends. Nothing here is Apple's code: it models community
 * reports of the IOGPUFamily driver bug (see README.md).
 *
 * Compile clients with: clang -fobjc-runtime=gcc -fblocks
 */
#ifndef SIM_METAL_H
#define SIM_METAL_H

#include <stddef.h>
#include <stdint.h>
#include <objc/objc.h>

typedef unsigned long NSUInteger;
typedef uint64_t MTLResourceOptions;

/* Metal's option bits, as in MTLResource.h. */
#define MTLResourceStorageModeShared ((MTLResourceOptions)0 << 4)
#define MTLResourceStorageModePrivate ((MTLResourceOptions)2 << 4)
#define MTLResourceHazardTrackingModeUntracked ((MTLResourceOptions)1 << 8)

/* MTLCommandBufferStatus values. */
enum {
  MTLCommandBufferStatusNotEnqueued = 0,
  MTLCommandBufferStatusEnqueued = 1,
  MTLCommandBufferStatusCommitted = 2,
  MTLCommandBufferStatusScheduled = 3,
  MTLCommandBufferStatusCompleted = 4,
  MTLCommandBufferStatusError = 5,
};

typedef void (^MTLCommandBufferHandler)(id commandBuffer);
typedef void (^MTLNoCopyDeallocator)(void *pointer, NSUInteger length);

/* Memory management (every simulated object). */
@protocol SimMTLObjectMethods
- (id)retain;
- (void)release;
- (NSUInteger)retainCount;
@end

/* MTLDevice */
@protocol SimMTLDevice <SimMTLObjectMethods>
- (id)newBufferWithLength:(NSUInteger)length options:(MTLResourceOptions)options;
- (id)newBufferWithBytes:(const void *)pointer
                  length:(NSUInteger)length
                 options:(MTLResourceOptions)options;
- (id)newBufferWithBytesNoCopy:(void *)pointer
                        length:(NSUInteger)length
                       options:(MTLResourceOptions)options
                   deallocator:(MTLNoCopyDeallocator)deallocator;
- (id)newHeapWithDescriptor:(id)descriptor;
- (id)newCommandQueue;
- (id)newCommandQueueWithMaxCommandBufferCount:(NSUInteger)count;
- (id)newResidencySetWithDescriptor:(id)descriptor error:(id *)error;
- (uint64_t)recommendedMaxWorkingSetSize;
- (NSUInteger)maxBufferLength;
@end

/* MTLHeap (the buffer selector is the device's). */
@protocol SimMTLHeap <SimMTLObjectMethods>
- (NSUInteger)size;
- (NSUInteger)usedSize;
@end

/* MTLHeapDescriptor, MTLCommandBufferDescriptor, MTLResidencySetDescriptor. */
@protocol SimMTLDescriptors
+ (id)alloc;
- (id)init;
- (void)setSize:(NSUInteger)size;
- (void)setRetainedReferences:(BOOL)retained;
- (BOOL)retainedReferences;
- (void)setErrorOptions:(NSUInteger)options;
- (void)setInitialCapacity:(NSUInteger)capacity;
@end

/* MTLCommandQueue */
@protocol SimMTLCommandQueue <SimMTLObjectMethods>
- (id)commandBuffer;
- (id)commandBufferWithUnretainedReferences;
- (id)commandBufferWithDescriptor:(id)descriptor;
- (void)addResidencySet:(id)residencySet;
- (void)addResidencySets:(const id *)residencySets count:(NSUInteger)count;
- (void)removeResidencySet:(id)residencySet;
@end

/* MTLCommandBuffer */
@protocol SimMTLCommandBuffer <SimMTLObjectMethods>
- (id)computeCommandEncoder;
- (void)addCompletedHandler:(MTLCommandBufferHandler)block;
- (void)commit;
- (void)waitUntilCompleted;
- (NSUInteger)status;
- (BOOL)retainedReferences;
@end

/* MTLComputeCommandEncoder */
@protocol SimMTLComputeCommandEncoder <SimMTLObjectMethods>
- (void)setBuffer:(id)buffer offset:(NSUInteger)offset atIndex:(NSUInteger)index;
- (void)endEncoding;
@end

/* MTLBuffer */
@protocol SimMTLBuffer <SimMTLObjectMethods>
- (NSUInteger)length;
- (void *)contents;
- (uint64_t)gpuAddress;
@end

/* MTLResidencySet */
@protocol SimMTLResidencySet <SimMTLObjectMethods>
- (void)addAllocation:(id)allocation;
- (void)removeAllocation:(id)allocation;
- (void)commit;
- (void)requestResidency;
- (void)endResidency;
- (NSUInteger)allocationCount;
@end

/* The array MTLCopyAllDevices returns (an NSArray stand-in). */
@protocol SimNSArrayMethods <SimMTLObjectMethods>
- (NSUInteger)count;
- (id)objectAtIndex:(NSUInteger)index;
@end

/* The two C entry points, as Metal exports them. Both follow the Create/Copy
 * rule: the caller owns the result and releases it. */
id MTLCreateSystemDefaultDevice(void);
id MTLCopyAllDevices(void);

#endif /* SIM_METAL_H */
