//! Our completion handler as an Apple-ABI block (the clang Block ABI, which
//! Apple's libSystem and libBlocksRuntime share): laid out like a stack
//! block literal and copied once to the heap with `_Block_copy`, never
//! hand-crafted as a heap block. It captures nothing (the command buffer
//! arrives as its argument), so one copy serves every command buffer: the
//! driver's own `Block_copy` on `addCompletedHandler:` just takes a
//! reference, and our copy lives for the whole process.

use crate::objc_runtime::Id;
use std::ffi::{c_char, c_int, c_ulong, c_void, CStr};
use std::sync::OnceLock;

/// `BLOCK_HAS_SIGNATURE` (Block_private.h).
const BLOCK_HAS_SIGNATURE: c_int = 1 << 30;

/// The invoke function of a `void (^)(id<MTLCommandBuffer>)` block.
pub type CompletionInvoke = unsafe extern "C-unwind" fn(block: *mut c_void, command_buffer: Id);

#[repr(C)]
struct BlockDescriptor {
    reserved: c_ulong,
    size: c_ulong,
    /// Present because flags carry `BLOCK_HAS_SIGNATURE` and no copy/dispose helpers.
    signature: *const c_char,
}

// SAFETY: the descriptor is immutable static data (a size and a pointer to
// a string literal), read by the blocks runtime from any thread.
unsafe impl Sync for BlockDescriptor {}

#[repr(C)]
struct BlockLiteral {
    isa: *const c_void,
    flags: c_int,
    reserved: c_int,
    invoke: CompletionInvoke,
    descriptor: *const BlockDescriptor,
}

/// `v16@?0@8`: returns void, takes the block and one object (LP64).
const SIGNATURE: &CStr = c"v16@?0@8";

static DESCRIPTOR: BlockDescriptor = BlockDescriptor {
    reserved: 0,
    size: std::mem::size_of::<BlockLiteral>() as c_ulong,
    signature: SIGNATURE.as_ptr(),
};

/// The heap copy, as an address (blocks are shared across threads).
static HEAP_BLOCK: OnceLock<Option<usize>> = OnceLock::new();

fn blocks_symbol(name: &CStr) -> *mut c_void {
    // Global scope first, then a runtime loaded in a local scope (ctypes).
    let p = crate::symbol_lookup::any_loaded_symbol(name, std::ptr::null());
    if !p.is_null() {
        return p;
    }
    #[cfg(target_os = "linux")]
    {
        // The driver normally loaded libBlocksRuntime already; if not, load it.
        // SAFETY: dlopen of a system library by soname; the handle is kept
        // for the life of the process (never dlclosed).
        let h = unsafe {
            libc::dlopen(
                c"libBlocksRuntime.so.0".as_ptr(),
                libc::RTLD_NOW | libc::RTLD_GLOBAL,
            )
        };
        if !h.is_null() {
            // SAFETY: valid handle and NUL-terminated name.
            return unsafe { libc::dlsym(h, name.as_ptr()) };
        }
    }
    std::ptr::null_mut()
}

/// The heap block that calls `invoke`, created on first use. `None` when
/// the process has no blocks runtime (then no handler is added anywhere).
pub fn completion_block(invoke: CompletionInvoke) -> Option<*mut c_void> {
    HEAP_BLOCK
        .get_or_init(|| {
            let isa = blocks_symbol(c"_NSConcreteStackBlock");
            let copy = blocks_symbol(c"_Block_copy");
            if isa.is_null() || copy.is_null() {
                return None;
            }
            // SAFETY: `_Block_copy` has the C signature `void *(const void *)`.
            let block_copy: unsafe extern "C" fn(*const c_void) -> *mut c_void =
                unsafe { std::mem::transmute::<*mut c_void, _>(copy) };
            let literal = BlockLiteral {
                isa,
                flags: BLOCK_HAS_SIGNATURE,
                reserved: 0,
                invoke,
                descriptor: &DESCRIPTOR,
            };
            // SAFETY: `literal` has the stack-block layout of the Block ABI
            // (isa = _NSConcreteStackBlock, no copy/dispose helpers, a
            // descriptor whose size is the literal's), and lives until
            // `_Block_copy` returns a malloc'd copy of it.
            let heap = unsafe { block_copy(&literal as *const BlockLiteral as *const c_void) };
            (!heap.is_null()).then_some(heap as usize)
        })
        .map(|p| p as *mut c_void)
}
