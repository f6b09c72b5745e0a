//! The Objective-C runtime, reached through raw function pointers that work
//! on Apple's runtime and on GCC's libobjc alike.
//!
//! Nothing here calls `objc_msgSend` (GCC's runtime has none): a method is
//! called by taking its IMP with `class_getMethodImplementation` and calling
//! that, which is also valid on Apple's runtime. The functions are looked up
//! with `dlsym` when the first device appears (the driver has loaded the
//! runtime by then), so the library loads into processes without one (a
//! shell, `python -c pass`) and stays inert there.

use std::ffi::{c_char, c_void, CStr};
use std::sync::OnceLock;

/// An object pointer (`id`).
pub type Id = *mut c_void;
/// A class pointer (`Class`).
pub type Class = *mut c_void;
/// A selector (`SEL`).
pub type Sel = *const c_void;
/// A method implementation (`IMP`), as an untyped code pointer.
pub type Imp = *const c_void;
/// A method handle (`Method`).
pub type Method = *mut c_void;

type ObjectGetClass = unsafe extern "C" fn(Id) -> Class;
pub(crate) type SelRegisterName = unsafe extern "C" fn(*const c_char) -> Sel;
pub(crate) type ClassGetMethodImplementation = unsafe extern "C" fn(Class, Sel) -> Imp;
pub(crate) type ClassGetInstanceMethod = unsafe extern "C" fn(Class, Sel) -> Method;
pub(crate) type ClassAddMethod = unsafe extern "C" fn(Class, Sel, Imp, *const c_char) -> u8;
pub(crate) type MethodSetImplementation = unsafe extern "C" fn(Method, Imp) -> Imp;
pub(crate) type MethodGetTypeEncoding = unsafe extern "C" fn(Method) -> *const c_char;
pub(crate) type ClassGetSuperclass = unsafe extern "C" fn(Class) -> Class;
pub(crate) type ClassGetName = unsafe extern "C" fn(Class) -> *const c_char;
pub(crate) type ClassRespondsToSelector = unsafe extern "C" fn(Class, Sel) -> u8;

/// The runtime functions the hooks use.
pub struct ObjcRuntime {
    /// Apple's runtime exports it (isa may be tagged or non-pointer there);
    /// GCC's defines it inline in its header, as a read of the first word.
    object_get_class: Option<ObjectGetClass>,
    sel_register_name: SelRegisterName,
    class_get_method_implementation: ClassGetMethodImplementation,
    class_get_instance_method: ClassGetInstanceMethod,
    class_add_method: ClassAddMethod,
    method_set_implementation: MethodSetImplementation,
    method_get_type_encoding: MethodGetTypeEncoding,
    class_get_superclass: ClassGetSuperclass,
    class_get_name: ClassGetName,
    class_responds_to_selector: ClassRespondsToSelector,
}

static RUNTIME: OnceLock<Option<ObjcRuntime>> = OnceLock::new();

fn lookup(name: &CStr) -> Option<*mut c_void> {
    // Global scope first, then runtimes loaded in a local scope (ctypes).
    let p = crate::symbol_lookup::any_loaded_symbol(name, std::ptr::null());
    (!p.is_null()).then_some(p)
}

macro_rules! resolve {
    ($name:literal, $ty:ty) => {{
        let p = lookup($name)?;
        // SAFETY: the symbol is the runtime function of that name, whose C
        // signature is the one the target type spells out (objc/runtime.h,
        // identical on Apple's runtime and GCC's libobjc).
        unsafe { std::mem::transmute::<*mut c_void, $ty>(p) }
    }};
}

impl ObjcRuntime {
    fn resolve() -> Option<ObjcRuntime> {
        Some(ObjcRuntime {
            object_get_class: lookup(c"object_getClass").map(|p| {
                // SAFETY: `object_getClass` has the C signature `Class (id)`.
                unsafe { std::mem::transmute::<*mut c_void, ObjectGetClass>(p) }
            }),
            sel_register_name: resolve!(c"sel_registerName", SelRegisterName),
            class_get_method_implementation: resolve!(
                c"class_getMethodImplementation",
                ClassGetMethodImplementation
            ),
            class_get_instance_method: resolve!(c"class_getInstanceMethod", ClassGetInstanceMethod),
            class_add_method: resolve!(c"class_addMethod", ClassAddMethod),
            method_set_implementation: resolve!(
                c"method_setImplementation",
                MethodSetImplementation
            ),
            method_get_type_encoding: resolve!(c"method_getTypeEncoding", MethodGetTypeEncoding),
            class_get_superclass: resolve!(c"class_getSuperclass", ClassGetSuperclass),
            class_get_name: resolve!(c"class_getName", ClassGetName),
            class_responds_to_selector: resolve!(
                c"class_respondsToSelector",
                ClassRespondsToSelector
            ),
        })
    }

    /// Unit tests: makes `functions` (a fake runtime) the process's runtime;
    /// `false` if one was resolved already. Objects are read GCC-style
    /// (the class is the first word).
    #[cfg(test)]
    pub(crate) fn install_fake(functions: FakeRuntimeFunctions) -> bool {
        let f = functions;
        RUNTIME
            .set(Some(ObjcRuntime {
                object_get_class: None,
                sel_register_name: f.sel_register_name,
                class_get_method_implementation: f.class_get_method_implementation,
                class_get_instance_method: f.class_get_instance_method,
                class_add_method: f.class_add_method,
                method_set_implementation: f.method_set_implementation,
                method_get_type_encoding: f.method_get_type_encoding,
                class_get_superclass: f.class_get_superclass,
                class_get_name: f.class_get_name,
                class_responds_to_selector: f.class_responds_to_selector,
            }))
            .is_ok()
    }

    /// The runtime, once a process has one loaded; `None` otherwise.
    pub fn get() -> Option<&'static ObjcRuntime> {
        RUNTIME.get_or_init(Self::resolve).as_ref()
    }

    /// The runtime if it was already resolved (hot paths: no dlsym).
    #[inline]
    pub fn resolved() -> Option<&'static ObjcRuntime> {
        RUNTIME.get().and_then(Option::as_ref)
    }

    /// `object_getClass`; null for a null object.
    #[inline]
    pub fn class_of(&self, obj: Id) -> Class {
        if obj.is_null() {
            return std::ptr::null_mut();
        }
        match self.object_get_class {
            // SAFETY: `obj` is a live object handed to us by the runtime or
            // the driver (the caller's invariant).
            Some(f) => unsafe { f(obj) },
            // SAFETY: GCC's libobjc: an object's first word is its class
            // pointer (`struct objc_object { Class class_pointer; }`), which
            // is exactly what its inline `object_getClass` returns.
            None => unsafe { *(obj as *const Class) },
        }
    }

    pub fn sel(&self, name: &CStr) -> Sel {
        // SAFETY: a NUL-terminated selector name; the runtime interns it.
        unsafe { (self.sel_register_name)(name.as_ptr()) }
    }

    pub fn superclass(&self, cls: Class) -> Class {
        // SAFETY: `cls` is a registered class (from object_getClass or a
        // previous superclass walk).
        unsafe { (self.class_get_superclass)(cls) }
    }

    pub fn responds(&self, cls: Class, sel: Sel) -> bool {
        // SAFETY: registered class and interned selector.
        !cls.is_null() && unsafe { (self.class_responds_to_selector)(cls, sel) } != 0
    }

    /// The IMP `cls` resolves for `sel` today (own or inherited).
    pub fn imp(&self, cls: Class, sel: Sel) -> Imp {
        // SAFETY: registered class and interned selector; the runtime returns
        // the forwarding IMP when the class does not respond, which callers
        // rule out with `responds` first.
        unsafe { (self.class_get_method_implementation)(cls, sel) }
    }

    /// The type encoding of `cls`'s method for `sel` (own or inherited);
    /// `None` if there is no method or the runtime keeps no encoding.
    pub fn type_encoding(&self, cls: Class, sel: Sel) -> Option<&'static CStr> {
        // SAFETY: registered class and interned selector.
        let method = unsafe { (self.class_get_instance_method)(cls, sel) };
        if method.is_null() {
            return None;
        }
        // SAFETY: a method of a registered class; the runtime returns its
        // NUL-terminated encoding, which lives as long as the method (the
        // process: classes are never unloaded while we run).
        let p = unsafe { (self.method_get_type_encoding)(method) };
        // SAFETY: non-null, NUL-terminated, valid for the process.
        (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) })
    }

    /// The class name, for breadcrumbs.
    pub fn class_name(&self, cls: Class) -> String {
        if cls.is_null() {
            return "nil".into();
        }
        // SAFETY: registered class; class_getName returns a NUL-terminated
        // string that lives as long as the class.
        let p = unsafe { (self.class_get_name)(cls) };
        if p.is_null() {
            return "?".into();
        }
        // SAFETY: non-null, NUL-terminated, valid for the class's lifetime.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }

    /// Installs `hook` for `sel` on `cls` only, leaving superclasses and
    /// sibling classes untouched (the inherited-method trap): an inherited
    /// method gets an override with `class_addMethod`; only a method the
    /// class owns is replaced with `method_setImplementation`. `record`
    /// receives the IMP the class resolved before (the one the hook must
    /// call) before the hook goes live, so no call can reach the hook
    /// without its original being known.
    pub fn override_method(
        &self,
        cls: Class,
        sel: Sel,
        hook: Imp,
        record: impl FnOnce(Imp) -> bool,
    ) -> Result<Imp, SwizzleError> {
        // SAFETY: (whole block) `cls` is a registered class, `sel` interned,
        // `hook` a function with the method's C signature (the caller's
        // invariant, kept by the hook tables in `hook_table`).
        unsafe {
            let method = (self.class_get_instance_method)(cls, sel);
            if method.is_null() {
                return Err(SwizzleError::NotImplemented);
            }
            let original = (self.class_get_method_implementation)(cls, sel);
            if original.is_null() {
                return Err(SwizzleError::NotImplemented);
            }
            if original == hook {
                return Err(SwizzleError::AlreadyHooked);
            }
            if !record(original) {
                return Err(SwizzleError::TableFull);
            }
            let types = (self.method_get_type_encoding)(method);
            if (self.class_add_method)(cls, sel, hook, types) == 0 {
                // The class owns the method: `class_getInstanceMethod` found
                // the class's own entry first, so this changes `cls` only.
                let own = (self.class_get_instance_method)(cls, sel);
                if own.is_null() {
                    return Err(SwizzleError::NotImplemented);
                }
                (self.method_set_implementation)(own, hook);
            }
            Ok(original)
        }
    }
}

/// The functions of a fake runtime (unit tests, [`ObjcRuntime::install_fake`]).
#[cfg(test)]
pub(crate) struct FakeRuntimeFunctions {
    pub sel_register_name: SelRegisterName,
    pub class_get_method_implementation: ClassGetMethodImplementation,
    pub class_get_instance_method: ClassGetInstanceMethod,
    pub class_add_method: ClassAddMethod,
    pub method_set_implementation: MethodSetImplementation,
    pub method_get_type_encoding: MethodGetTypeEncoding,
    pub class_get_superclass: ClassGetSuperclass,
    pub class_get_name: ClassGetName,
    pub class_responds_to_selector: ClassRespondsToSelector,
}

/// Why a method could not be hooked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwizzleError {
    /// The class does not implement (or inherit) the selector.
    NotImplemented,
    /// The class already resolves the selector to our hook (it inherits it
    /// from a class we hooked), so calls already reach us.
    AlreadyHooked,
    /// More concrete classes for this selector than the table holds.
    TableFull,
}
