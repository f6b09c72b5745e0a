//! The slice of the CUDA driver API (`cuda.h`) the backend touches: result
//! codes, handle types, the `cuGetProcAddress` flags and the function-pointer
//! types of every entry point we wrap. Declared by hand so the library needs
//! no CUDA headers or toolkit to build; each signature matches `cuda.h` of
//! CUDA 12/13 on LP64 Linux.

use std::ffi::{c_char, c_int, c_uint, c_void};

/// `CUresult`.
pub type CuResult = c_int;
/// `CUDA_SUCCESS`.
pub const CUDA_SUCCESS: CuResult = 0;
/// `CUDA_ERROR_OUT_OF_MEMORY`: what a refused allocation returns, so the
/// caller's own out-of-memory path runs (MLX raises `RuntimeError`).
pub const CUDA_ERROR_OUT_OF_MEMORY: CuResult = 2;
/// `CUDA_ERROR_NOT_INITIALIZED`: returned only if a wrapper is reached before
/// the original it wraps was recorded, which the hand-out order rules out.
pub const CUDA_ERROR_NOT_INITIALIZED: CuResult = 3;

/// `CUdeviceptr` (64-bit on every platform CUDA 12+ supports).
pub type CuDevicePtr = u64;
/// `CUdevice`.
pub type CuDevice = c_int;
/// `CUstream`, `CUgraphExec`, `CUmemoryPool`: opaque handles.
pub type CuStream = *mut c_void;
pub type CuGraphExec = *mut c_void;
pub type CuMemoryPool = *mut c_void;
/// `CUhostFn`.
pub type CuHostFn = Option<unsafe extern "C" fn(user_data: *mut c_void)>;

/// `CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM`: the caller wants the
/// per-thread-default-stream (`_ptds`/`_ptsz`) variant of a stream function.
pub const CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM: u64 = 1 << 1;

/// The CUDA version from which `cuGetProcAddress("cuGetProcAddress")` hands
/// back the five-argument `cuGetProcAddress_v2`.
pub const GET_PROC_ADDRESS_V2_SINCE: c_int = 12000;
/// The CUDA version from which `cuMemAlloc`, `cuMemFree`, `cuMemAllocHost`
/// and `cuDeviceTotalMem` resolve to their 64-bit `_v2` forms.
pub const V2_MEMORY_API_SINCE: c_int = 3020;

pub type GetProcAddressV1Fn = unsafe extern "C" fn(
    symbol: *const c_char,
    pfn: *mut *mut c_void,
    cuda_version: c_int,
    flags: u64,
) -> CuResult;
pub type GetProcAddressV2Fn = unsafe extern "C" fn(
    symbol: *const c_char,
    pfn: *mut *mut c_void,
    cuda_version: c_int,
    flags: u64,
    symbol_status: *mut c_int,
) -> CuResult;

pub type MemAllocFn = unsafe extern "C" fn(dptr: *mut CuDevicePtr, bytes: usize) -> CuResult;
pub type MemAllocAsyncFn =
    unsafe extern "C" fn(dptr: *mut CuDevicePtr, bytes: usize, stream: CuStream) -> CuResult;
pub type MemAllocFromPoolAsyncFn = unsafe extern "C" fn(
    dptr: *mut CuDevicePtr,
    bytes: usize,
    pool: CuMemoryPool,
    stream: CuStream,
) -> CuResult;
pub type MemAllocManagedFn =
    unsafe extern "C" fn(dptr: *mut CuDevicePtr, bytes: usize, flags: c_uint) -> CuResult;
pub type MemAllocHostFn = unsafe extern "C" fn(pp: *mut *mut c_void, bytes: usize) -> CuResult;
pub type MemHostAllocFn =
    unsafe extern "C" fn(pp: *mut *mut c_void, bytes: usize, flags: c_uint) -> CuResult;
pub type MemFreeFn = unsafe extern "C" fn(dptr: CuDevicePtr) -> CuResult;
pub type MemFreeAsyncFn = unsafe extern "C" fn(dptr: CuDevicePtr, stream: CuStream) -> CuResult;
pub type MemFreeHostFn = unsafe extern "C" fn(p: *mut c_void) -> CuResult;
pub type LaunchHostFuncFn =
    unsafe extern "C" fn(stream: CuStream, func: CuHostFn, user_data: *mut c_void) -> CuResult;
pub type GraphLaunchFn = unsafe extern "C" fn(exec: CuGraphExec, stream: CuStream) -> CuResult;
pub type StreamSynchronizeFn = unsafe extern "C" fn(stream: CuStream) -> CuResult;
pub type DeviceTotalMemFn = unsafe extern "C" fn(bytes: *mut usize, device: CuDevice) -> CuResult;
pub type CtxGetDeviceFn = unsafe extern "C" fn(device: *mut CuDevice) -> CuResult;
