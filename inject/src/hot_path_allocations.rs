//! Proof that the real hooks keep their promises on the hot path: no heap
//! allocation, and no lock held across the original call.
//!
//! A fake Objective-C runtime (fixed tables: selectors, classes, methods)
//! and a fake driver (device, queue, command buffers, buffers, a residency
//! set) are installed in a child process of this test binary, one per
//! configuration (`METALGUARD_RESIDENCY` = `defer` / `off`, `METALGUARD_MODE`
//! = `defensive` / `observer`). The guard hooks the fake classes exactly as
//! it hooks Metal's (`device_entry::on_device_created`, `class_addMethod`),
//! and the test sends messages through the method table, so every call runs
//! the production hook, which calls the fake original. Then:
//!
//! - a counting global allocator (per thread; the fake driver's own work is
//!   not counted) sees zero allocations on the application thread over
//!   hundreds of allocate / bind / commit / complete / remove / re-add /
//!   free rounds, after a warm-up round (first sightings of each class);
//! - every fake original IMP checks that its thread holds none of the
//!   library's locks (`fork_safe_lock::locks_held_by_this_thread`, which
//!   every lock of the library maintains), on the application thread, the
//!   completion threads and the reaper thread alike.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::process::Command;

struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    /// Inside the fake driver: its allocations are not the guard's.
    static IN_DRIVER: Cell<bool> = const { Cell::new(false) };
}

fn count_one() {
    let _ = IN_DRIVER.try_with(|d| {
        if !d.get() {
            let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        }
    });
}

// SAFETY: forwards every call to the system allocator unchanged; the
// counters are const-initialised thread-locals (no allocation to reach them).
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTER: CountingAllocator = CountingAllocator;

fn allocations() -> u64 {
    ALLOCATIONS.with(|c| c.get())
}

/// Runs `f` as the fake driver: not counted.
fn in_driver<T>(f: impl FnOnce() -> T) -> T {
    let was = IN_DRIVER.with(|d| d.replace(true));
    let v = f();
    IN_DRIVER.with(|d| d.set(was));
    v
}

/// The fake runtime and driver.
mod fake {
    use crate::objc_runtime::{Class, FakeRuntimeFunctions, Id, Imp, Method, Sel};
    use std::ffi::{c_char, c_void, CStr};
    use std::sync::atomic::{
        AtomicBool, AtomicI64, AtomicPtr, AtomicU64, AtomicUsize, Ordering::*,
    };

    /// Fake originals that ran while their thread held a library lock.
    pub static LOCK_VIOLATIONS: AtomicU64 = AtomicU64::new(0);
    pub static REMOVALS_PERFORMED: AtomicU64 = AtomicU64::new(0);

    fn check_no_lock() {
        if crate::fork_safe_lock::locks_held_by_this_thread() != 0 {
            LOCK_VIOLATIONS.fetch_add(1, SeqCst);
        }
    }

    pub struct FakeClass {
        name: &'static CStr,
    }

    pub static DEVICE: FakeClass = FakeClass {
        name: c"FakeDevice",
    };
    pub static QUEUE: FakeClass = FakeClass { name: c"FakeQueue" };
    pub static COMMAND_BUFFER: FakeClass = FakeClass {
        name: c"FakeCommandBuffer",
    };
    pub static BUFFER: FakeClass = FakeClass {
        name: c"FakeBuffer",
    };
    pub static RESIDENCY_SET: FakeClass = FakeClass {
        name: c"FakeResidencySet",
    };
    pub static ODD_QUEUE: FakeClass = FakeClass {
        name: c"FakeOddQueue",
    };

    /// Whether the odd queue's `commandBuffer` is still the fake's own.
    pub fn odd_queue_left_alone() -> bool {
        let cls = &ODD_QUEUE as *const FakeClass as Class;
        find(cls, sel(c"commandBuffer"))
            .is_some_and(|m| std::ptr::eq(m.imp.load(Acquire) as Imp, set_commit as Imp))
    }

    pub fn odd_queue_class() -> Class {
        &ODD_QUEUE as *const FakeClass as Class
    }

    /// Every fake object; the class pointer is the first word (GCC's
    /// runtime layout, which `ObjcRuntime::class_of` reads).
    #[repr(C)]
    pub struct FakeObject {
        isa: *const FakeClass,
        refcount: AtomicI64,
        length: u64,
        completed: AtomicBool,
        handler: AtomicPtr<c_void>,
        members: AtomicI64,
    }

    pub fn new_object(class: &'static FakeClass, length: u64) -> Id {
        super::in_driver(|| {
            Box::into_raw(Box::new(FakeObject {
                isa: class,
                refcount: AtomicI64::new(1),
                length,
                completed: AtomicBool::new(false),
                handler: AtomicPtr::new(std::ptr::null_mut()),
                members: AtomicI64::new(0),
            })) as Id
        })
    }

    fn object(obj: Id) -> &'static FakeObject {
        // SAFETY: every `Id` the fake driver hands out is a leaked
        // `FakeObject` (never freed).
        unsafe { &*(obj as *const FakeObject) }
    }

    // ---- selectors ----

    const SELECTORS: usize = 64;
    static SEL_NAMES: [AtomicPtr<c_char>; SELECTORS] =
        [const { AtomicPtr::new(std::ptr::null_mut()) }; SELECTORS];
    static SEL_COUNT: AtomicUsize = AtomicUsize::new(0);
    static SEL_INSERT: AtomicBool = AtomicBool::new(false);

    unsafe extern "C" fn sel_register_name(name: *const c_char) -> Sel {
        // SAFETY: callers pass NUL-terminated names that live for ever
        // (C-string literals).
        let wanted = unsafe { CStr::from_ptr(name) };
        let find = || {
            (0..SEL_COUNT.load(Acquire)).find(|&i| {
                // SAFETY: published names are live C strings.
                let have = unsafe { CStr::from_ptr(SEL_NAMES[i].load(Acquire)) };
                have == wanted
            })
        };
        if let Some(i) = find() {
            return &SEL_NAMES[i] as *const _ as Sel;
        }
        while SEL_INSERT.swap(true, Acquire) {
            std::hint::spin_loop();
        }
        let i = find().unwrap_or_else(|| {
            let i = SEL_COUNT.load(Acquire);
            SEL_NAMES[i].store(name as *mut c_char, Release);
            SEL_COUNT.store(i + 1, Release);
            i
        });
        SEL_INSERT.store(false, Release);
        &SEL_NAMES[i] as *const _ as Sel
    }

    pub fn sel(name: &'static CStr) -> Sel {
        // SAFETY: a C-string literal.
        unsafe { sel_register_name(name.as_ptr()) }
    }

    // ---- methods ----

    struct MethodEntry {
        class: AtomicPtr<c_void>,
        sel: AtomicPtr<c_void>,
        imp: AtomicPtr<c_void>,
        types: AtomicPtr<c_char>,
    }

    const METHODS: usize = 128;
    static TABLE: [MethodEntry; METHODS] = [const {
        MethodEntry {
            class: AtomicPtr::new(std::ptr::null_mut()),
            sel: AtomicPtr::new(std::ptr::null_mut()),
            imp: AtomicPtr::new(std::ptr::null_mut()),
            types: AtomicPtr::new(std::ptr::null_mut()),
        }
    }; METHODS];
    static METHOD_COUNT: AtomicUsize = AtomicUsize::new(0);
    static METHOD_INSERT: AtomicBool = AtomicBool::new(false);

    fn find(cls: Class, sel: Sel) -> Option<&'static MethodEntry> {
        TABLE[..METHOD_COUNT.load(Acquire)]
            .iter()
            .find(|m| m.class.load(Acquire) == cls && std::ptr::eq(m.sel.load(Acquire) as Sel, sel))
    }

    fn add(cls: Class, sel: Sel, imp: Imp, types: *const c_char) -> bool {
        while METHOD_INSERT.swap(true, Acquire) {
            std::hint::spin_loop();
        }
        let added = find(cls, sel).is_none();
        if added {
            let i = METHOD_COUNT.load(Acquire);
            TABLE[i].class.store(cls, Release);
            TABLE[i].sel.store(sel as *mut c_void, Release);
            TABLE[i].imp.store(imp as *mut c_void, Release);
            TABLE[i].types.store(types as *mut c_char, Release);
            METHOD_COUNT.store(i + 1, Release);
        }
        METHOD_INSERT.store(false, Release);
        added
    }

    unsafe extern "C" fn class_get_method_implementation(cls: Class, sel: Sel) -> Imp {
        find(cls, sel).map_or(std::ptr::null(), |m| m.imp.load(Acquire) as Imp)
    }
    unsafe extern "C" fn class_get_instance_method(cls: Class, sel: Sel) -> Method {
        find(cls, sel).map_or(std::ptr::null_mut(), |m| m as *const MethodEntry as Method)
    }
    unsafe extern "C" fn class_add_method(
        cls: Class,
        sel: Sel,
        imp: Imp,
        types: *const c_char,
    ) -> u8 {
        // The fake classes have no superclass: a method found is the class's own.
        add(cls, sel, imp, types) as u8
    }
    unsafe extern "C" fn method_set_implementation(m: Method, imp: Imp) -> Imp {
        // SAFETY: `m` came from `class_get_instance_method`: a table entry.
        let m = unsafe { &*(m as *const MethodEntry) };
        m.imp.swap(imp as *mut c_void, AcqRel) as Imp
    }
    unsafe extern "C" fn method_get_type_encoding(m: Method) -> *const c_char {
        // SAFETY: `m` came from `class_get_instance_method`: a table entry.
        unsafe { &*(m as *const MethodEntry) }.types.load(Acquire)
    }
    unsafe extern "C" fn class_get_superclass(_: Class) -> Class {
        std::ptr::null_mut()
    }
    unsafe extern "C" fn class_get_name(cls: Class) -> *const c_char {
        // SAFETY: every class the fake runtime hands out is a `FakeClass`.
        unsafe { &*(cls as *const FakeClass) }.name.as_ptr()
    }
    unsafe extern "C" fn class_responds_to_selector(cls: Class, sel: Sel) -> u8 {
        find(cls, sel).is_some() as u8
    }

    /// The IMP `obj`'s class has for `sel` now (our hook, once installed).
    pub fn imp(obj: Id, sel: Sel) -> Imp {
        let cls = object(obj).isa as Class;
        find(cls, sel)
            .map(|m| m.imp.load(Acquire) as Imp)
            .expect("the fake class implements it")
    }

    // ---- the fake driver's methods ----

    type Plain = unsafe extern "C-unwind" fn(Id, Sel) -> Id;
    type WithObject = unsafe extern "C-unwind" fn(Id, Sel, Id);
    type VoidPlain = unsafe extern "C-unwind" fn(Id, Sel);

    unsafe extern "C-unwind" fn device_new_buffer(_: Id, _: Sel, length: usize, _: usize) -> Id {
        check_no_lock();
        new_object(&BUFFER, length as u64)
    }
    unsafe extern "C-unwind" fn device_working_set(_: Id, _: Sel) -> u64 {
        64 << 30
    }
    unsafe extern "C-unwind" fn device_new_queue(_: Id, _: Sel) -> Id {
        check_no_lock();
        new_object(&QUEUE, 0)
    }
    unsafe extern "C-unwind" fn device_new_set(_: Id, _: Sel, _: Id, _: *mut Id) -> Id {
        check_no_lock();
        new_object(&RESIDENCY_SET, 0)
    }
    unsafe extern "C-unwind" fn queue_command_buffer(_: Id, _: Sel) -> Id {
        check_no_lock();
        new_object(&COMMAND_BUFFER, 0)
    }
    unsafe extern "C-unwind" fn cb_add_handler(this: Id, _: Sel, block: *mut c_void) {
        check_no_lock();
        // The guard's block is a process-long heap block: keeping the
        // pointer stands in for the driver's `Block_copy`.
        object(this).handler.store(block, Release);
    }
    unsafe extern "C-unwind" fn cb_commit(this: Id, _: Sel) {
        check_no_lock();
        let cb = this as usize;
        // The "GPU": a thread of its own runs the completion handler.
        super::in_driver(|| {
            std::thread::spawn(move || {
                let this = cb as Id;
                let block = object(this).handler.load(Acquire);
                if !block.is_null() {
                    // SAFETY: a block literal: isa, flags, reserved, invoke
                    // (the third word), descriptor; `invoke` has the
                    // completion handler's signature `void (block, id)`.
                    unsafe {
                        let invoke: unsafe extern "C-unwind" fn(*mut c_void, Id) =
                            std::mem::transmute(*(block as *const usize).add(2));
                        invoke(block, this);
                    }
                }
                object(this).completed.store(true, Release);
            });
        });
    }
    unsafe extern "C-unwind" fn cb_wait(this: Id, _: Sel) {
        check_no_lock();
        while !object(this).completed.load(Acquire) {
            std::thread::yield_now();
        }
    }
    unsafe extern "C-unwind" fn buffer_length(this: Id, _: Sel) -> u64 {
        check_no_lock();
        object(this).length
    }
    unsafe extern "C-unwind" fn retain(this: Id, _: Sel) -> Id {
        check_no_lock();
        object(this).refcount.fetch_add(1, AcqRel);
        this
    }
    unsafe extern "C-unwind" fn release(this: Id, _: Sel) {
        check_no_lock();
        let dealloc = sel(c"dealloc");
        if object(this).refcount.fetch_sub(1, AcqRel) != 1 {
            return;
        }
        if let Some(m) = find(object(this).isa as Class, dealloc) {
            // SAFETY: the class's current `dealloc` (the guard's hook on
            // buffers): `void (id, SEL)`.
            unsafe {
                let f: VoidPlain = std::mem::transmute(m.imp.load(Acquire));
                f(this, dealloc);
            }
        }
    }
    unsafe extern "C-unwind" fn dealloc(_: Id, _: Sel) {
        check_no_lock();
    }
    unsafe extern "C-unwind" fn set_add(this: Id, _: Sel, _: Id) {
        check_no_lock();
        object(this).members.fetch_add(1, AcqRel);
    }
    unsafe extern "C-unwind" fn set_remove(this: Id, _: Sel, _: Id) {
        check_no_lock();
        object(this).members.fetch_sub(1, AcqRel);
        REMOVALS_PERFORMED.fetch_add(1, AcqRel);
    }
    unsafe extern "C-unwind" fn set_commit(_: Id, _: Sel) {
        check_no_lock();
    }

    pub fn members(set: Id) -> i64 {
        object(set).members.load(Acquire)
    }

    /// Installs the runtime and the driver's classes; the device.
    pub fn install() -> Id {
        assert!(crate::objc_runtime::ObjcRuntime::install_fake(
            FakeRuntimeFunctions {
                sel_register_name,
                class_get_method_implementation,
                class_get_instance_method,
                class_add_method,
                method_set_implementation,
                method_get_type_encoding,
                class_get_superclass,
                class_get_name,
                class_responds_to_selector,
            }
        ));
        let c = |k: &'static FakeClass| k as *const FakeClass as Class;
        // Encodings as GCC's runtime writes them (NSUInteger is `L`).
        let m = |k: &'static FakeClass, name: &'static CStr, imp: Imp, types: &'static CStr| {
            assert!(add(c(k), sel(name), imp, types.as_ptr()))
        };
        m(
            &DEVICE,
            c"newBufferWithLength:options:",
            device_new_buffer as Imp,
            c"@32@0:8L16L24",
        );
        m(
            &DEVICE,
            c"recommendedMaxWorkingSetSize",
            device_working_set as Imp,
            c"Q16@0:8",
        );
        m(
            &DEVICE,
            c"newCommandQueue",
            device_new_queue as Imp,
            c"@16@0:8",
        );
        m(
            &DEVICE,
            c"newResidencySetWithDescriptor:error:",
            device_new_set as Imp,
            c"@32@0:8@16^@24",
        );
        m(
            &QUEUE,
            c"commandBuffer",
            queue_command_buffer as Imp,
            c"@16@0:8",
        );
        m(
            &QUEUE,
            c"commandBufferWithUnretainedReferences",
            queue_command_buffer as Imp,
            c"@16@0:8",
        );
        m(
            &COMMAND_BUFFER,
            c"addCompletedHandler:",
            cb_add_handler as Imp,
            c"v24@0:8@?16",
        );
        m(&COMMAND_BUFFER, c"commit", cb_commit as Imp, c"v16@0:8");
        m(
            &COMMAND_BUFFER,
            c"waitUntilCompleted",
            cb_wait as Imp,
            c"v16@0:8",
        );
        m(&BUFFER, c"length", buffer_length as Imp, c"L16@0:8");
        m(&BUFFER, c"dealloc", dealloc as Imp, c"v16@0:8");
        m(
            &RESIDENCY_SET,
            c"addAllocation:",
            set_add as Imp,
            c"v24@0:8@16",
        );
        m(
            &RESIDENCY_SET,
            c"removeAllocation:",
            set_remove as Imp,
            c"v24@0:8@16",
        );
        m(&RESIDENCY_SET, c"commit", set_commit as Imp, c"v16@0:8");
        // A queue class whose `commandBuffer` has another signature (a void
        // return): the guard must leave it unhooked.
        m(&ODD_QUEUE, c"commandBuffer", set_commit as Imp, c"v16@0:8");
        for k in [&DEVICE, &QUEUE, &COMMAND_BUFFER, &BUFFER, &RESIDENCY_SET] {
            m(k, c"retain", retain as Imp, c"@16@0:8");
            m(k, c"release", release as Imp, c"v16@0:8");
        }
        new_object(&DEVICE, 0)
    }

    // ---- message sends, through the method table (the hooks) ----

    pub fn send_id(obj: Id, name: &'static CStr) -> Id {
        let s = sel(name);
        // SAFETY: the selectors sent this way are `id (id, SEL)`.
        unsafe { std::mem::transmute::<Imp, Plain>(imp(obj, s))(obj, s) }
    }
    pub fn send_void(obj: Id, name: &'static CStr) {
        let s = sel(name);
        // SAFETY: `commit`, `waitUntilCompleted`, `release`: `void (id, SEL)`.
        unsafe { std::mem::transmute::<Imp, VoidPlain>(imp(obj, s))(obj, s) }
    }
    pub fn send_object(obj: Id, name: &'static CStr, arg: Id) {
        let s = sel(name);
        // SAFETY: `addAllocation:` / `removeAllocation:`: `void (id, SEL, id)`.
        unsafe { std::mem::transmute::<Imp, WithObject>(imp(obj, s))(obj, s, arg) }
    }
    pub fn new_buffer(device: Id, length: usize) -> Id {
        let s = sel(c"newBufferWithLength:options:");
        type New = unsafe extern "C-unwind" fn(Id, Sel, usize, usize) -> Id;
        // SAFETY: `newBufferWithLength:options:`: `id (id, SEL, NSUInteger, NSUInteger)`.
        unsafe { std::mem::transmute::<Imp, New>(imp(device, s))(device, s, length, 0) }
    }
    pub fn new_residency_set(device: Id) -> Id {
        let s = sel(c"newResidencySetWithDescriptor:error:");
        type New = unsafe extern "C-unwind" fn(Id, Sel, Id, *mut Id) -> Id;
        // SAFETY: `id (id, SEL, id, id *)`.
        unsafe {
            std::mem::transmute::<Imp, New>(imp(device, s))(
                device,
                s,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        }
    }
}

/// One allocate / bind / commit / complete / remove (and re-add) / free
/// round, as MLX does it, through the hooks.
fn round(device: Id, queue: Id, set: Id, i: usize) {
    let small = fake::new_buffer(device, 4096);
    let large = fake::new_buffer(device, 64 << 20);
    fake::send_object(set, c"addAllocation:", small);
    fake::send_void(set, c"commit");
    let cb = fake::send_id(queue, c"commandBufferWithUnretainedReferences");
    fake::send_void(cb, c"commit");
    fake::send_void(cb, c"waitUntilCompleted");
    fake::send_object(set, c"removeAllocation:", small);
    if i.is_multiple_of(2) {
        // Re-added before the reaper got to it: the queued removal is
        // cancelled; then removed for good.
        fake::send_object(set, c"addAllocation:", small);
        fake::send_object(set, c"removeAllocation:", small);
    }
    fake::send_void(set, c"commit");
    fake::send_void(cb, c"release");
    fake::send_void(small, c"release");
    fake::send_void(large, c"release");
}

use crate::objc_runtime::Id;

const CHILD: &str = "METALGUARD_HOT_PATH_TEST_CHILD";
/// The child fills the removal ring's window instead.
const RING_FULL: &str = "METALGUARD_HOT_PATH_TEST_RING_FULL";

/// The same removal requested again and again while the reaper waits (its
/// grace period never ends): the ring's window for that pair fills, and the
/// next removal is performed at once, on the caller's thread, without heap
/// allocation; the reaper performs the queued ones at exit.
fn full_ring(device: Id, set: Id, guard: &'static crate::guard::Guard) {
    use std::sync::atomic::Ordering::SeqCst;
    let buf = fake::new_buffer(device, 4096);
    fake::send_object(set, c"addAllocation:", buf);
    let window = crate::removal_ring::PROBE;
    for _ in 0..window {
        fake::send_object(set, c"removeAllocation:", buf);
    }
    assert_eq!(guard.pending_removals(), window as u64);
    assert_eq!(fake::REMOVALS_PERFORMED.load(SeqCst), 0, "all deferred");
    let before = allocations();
    fake::send_object(set, c"removeAllocation:", buf);
    assert_eq!(allocations() - before, 0, "the fallback allocates nothing");
    assert_eq!(guard.stats().removal_ring_full.load(SeqCst), 1);
    assert_eq!(
        fake::REMOVALS_PERFORMED.load(SeqCst),
        1,
        "performed at once"
    );
    assert_eq!(guard.pending_removals(), window as u64);
    assert_eq!(fake::LOCK_VIOLATIONS.load(SeqCst), 0);
    println!("hot_path_ok ring_full");
}

/// The child process's body (a no-op unless run as the child).
#[test]
fn hooks_in_this_process() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let device = fake::install();
    // The library's constructor made the guard from the environment the
    // parent test set.
    let guard = crate::guard::guard().expect("the constructor made the guard");
    crate::device_entry::on_device_created(device);
    let queue = fake::send_id(device, c"newCommandQueue");
    // Type encodings are checked at install: a method of another shape is
    // left unhooked (fail open), with a breadcrumb.
    let rt = crate::objc_runtime::ObjcRuntime::resolved().unwrap();
    crate::hooks::queue::install(guard, rt, fake::odd_queue_class());
    assert!(
        fake::odd_queue_left_alone(),
        "a mismatching method was hooked"
    );
    let set = fake::new_residency_set(device);
    if std::env::var_os(RING_FULL).is_some() {
        return full_ring(device, set, guard);
    }
    // Warm-up: first sightings of each class, the writer and reaper threads.
    for i in 0..4 {
        round(device, queue, set, i);
    }
    std::thread::sleep(std::time::Duration::from_millis(50));
    let before = allocations();
    let rounds = 400;
    for i in 0..rounds {
        round(device, queue, set, i);
    }
    let made = allocations() - before;
    let stats = guard.stats();
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::SeqCst);
    assert!(load(&stats.completions) >= rounds as u64, "completions ran");
    assert_eq!(load(&stats.hook_faults), 0);
    assert_eq!(made, 0, "heap allocations on the hot path");
    // Let the reaper finish (defer mode) and check what the set holds.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while guard.pending_removals() > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(guard.pending_removals(), 0, "the reaper drained the ring");
    let violations = fake::LOCK_VIOLATIONS.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        violations, 0,
        "an original ran while a library lock was held"
    );
    let residency = std::env::var("METALGUARD_RESIDENCY").unwrap();
    let observer = std::env::var("METALGUARD_MODE").unwrap() == "observer";
    let deferred = load(&stats.deferred_removals);
    let performed = fake::REMOVALS_PERFORMED.load(std::sync::atomic::Ordering::SeqCst);
    match (residency.as_str(), observer) {
        ("defer", false) => {
            assert!(deferred > 0, "removals went through the ring");
            assert_eq!(
                fake::members(set),
                0,
                "every removal was performed or cancelled"
            );
        }
        ("off", false) => {
            assert_eq!(fake::members(set), 0);
            assert_eq!(performed, 0, "nothing wired, nothing removed");
        }
        _ => {
            assert_eq!(deferred, 0, "observer mode changes nothing");
            assert_eq!(fake::members(set), 0);
        }
    }
    println!("hot_path_ok allocations={made} deferred={deferred} performed={performed}");
}

#[test]
fn the_real_hooks_allocate_nothing_and_hold_no_lock_across_the_original() {
    if std::env::var_os(CHILD).is_some() {
        return;
    }
    for (residency, mode) in [
        ("defer", "defensive"),
        ("off", "defensive"),
        ("defer", "observer"),
        ("off", "observer"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "--exact",
            "hot_path_allocations::hooks_in_this_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .env("METALGUARD_RESIDENCY", residency)
        .env("METALGUARD_MODE", mode)
        .env("METALGUARD_BREADCRUMB_PATH", dir.path().join("bc.log"))
        // Large buffers count towards a load, but never complete a burst.
        .env("METALGUARD_BURST_N", "1000000000")
        .env("METALGUARD_GATE", "off")
        .env("METALGUARD_RESIDENCY_GRACE_MS", "1")
        .env_remove("METALGUARD_DISABLED");
        let out = output_within(cmd, std::time::Duration::from_secs(120));
        let text = format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && text.contains("hot_path_ok"),
            "residency={residency} mode={mode}:\n{text}"
        );
    }
}

/// Runs the child, killing it after `limit` (a hang fails the test).
fn output_within(mut cmd: Command, limit: std::time::Duration) -> std::process::Output {
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "the child hung for {limit:?}:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn a_full_ring_performs_the_removal_at_once() {
    if std::env::var_os(CHILD).is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "hot_path_allocations::hooks_in_this_process",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD, "1")
    .env(RING_FULL, "1")
    .env("METALGUARD_RESIDENCY", "defer")
    .env("METALGUARD_MODE", "defensive")
    .env("METALGUARD_BREADCRUMB_PATH", dir.path().join("bc.log"))
    .env("METALGUARD_GATE", "off")
    .env("METALGUARD_RESIDENCY_GRACE_MS", "600000")
    .env("METALGUARD_RESIDENCY_MAX_DEFER_MS", "600000")
    .env("METALGUARD_EXIT_DRAIN_S", "0.2")
    .env_remove("METALGUARD_DISABLED");
    let out = output_within(cmd, std::time::Duration::from_secs(120));
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("hot_path_ok ring_full"),
        "{text}"
    );
}

#[test]
fn the_counter_counts() {
    let before = allocations();
    let v: Vec<u64> = Vec::with_capacity(16);
    assert!(allocations() > before);
    drop(v);
}
