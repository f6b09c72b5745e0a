//! Typed method implementations: an IMP together with the C signature it
//! has, so the transmute from the untyped code pointer to a callable
//! function, and the argument that makes it sound, are written once here
//! instead of at every call site (the idea of objc2's typed message sends).
//!
//! [`TypedImp<F>`] is created only by [`TypedImp::assume`] (unsafe: the
//! caller vouches for the signature) — in practice by the hook table, which
//! records the original IMP of a selector whose signature `F` is fixed by the
//! table's type and checked against the method's type encoding at install
//! ([`encoding_shape`]). Calling it is `unsafe` only for the arguments
//! (a live receiver, valid pointers), which a hook passes on from its caller.

use crate::objc_runtime::{Id, Imp, Sel};
use std::marker::PhantomData;

/// An IMP known to have the C signature `F`, an
/// `unsafe extern "C-unwind" fn(Id, Sel, ...) -> R`.
pub struct TypedImp<F> {
    imp: Imp,
    _signature: PhantomData<F>,
}

impl<F> Clone for TypedImp<F> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<F> Copy for TypedImp<F> {}

impl<F> TypedImp<F> {
    /// # Safety
    ///
    /// `imp` must be a function with the C signature `F`.
    #[inline(always)]
    pub const unsafe fn assume(imp: Imp) -> Self {
        TypedImp {
            imp,
            _signature: PhantomData,
        }
    }

    /// The untyped code pointer.
    #[inline(always)]
    pub fn raw(self) -> Imp {
        self.imp
    }
}

/// The untyped IMP of a function of signature `F` (a hook, installed with
/// `class_addMethod`): the reverse of [`TypedImp::assume`], safe because it
/// only forgets the type.
#[inline(always)]
pub fn untyped<F: Copy>(function: F) -> Imp {
    const { assert!(std::mem::size_of::<F>() == std::mem::size_of::<Imp>()) };
    // SAFETY: `F` is a function-pointer type (every `HookSlot<F>` names
    // one), pointer-sized as the assertion checks; its bits are the code
    // address `Imp` holds.
    unsafe { std::mem::transmute_copy::<F, Imp>(&function) }
}

macro_rules! callable {
    ($($arg:ident: $ty:ident),*) => {
        impl<R, $($ty),*> TypedImp<unsafe extern "C-unwind" fn(Id, Sel $(, $ty)*) -> R> {
            /// Calls the IMP.
            ///
            /// # Safety
            ///
            /// The arguments must be valid for the method (a live receiver
            /// and the pointers it expects), as its own caller's were.
            #[inline(always)]
            pub unsafe fn call(self, this: Id, sel: Sel $(, $arg: $ty)*) -> R {
                // SAFETY: `assume`'s contract: `imp` has exactly this
                // signature, so the transmute only restores its type.
                let f = unsafe {
                    std::mem::transmute::<Imp, unsafe extern "C-unwind" fn(Id, Sel $(, $ty)*) -> R>(
                        self.imp,
                    )
                };
                // SAFETY: the caller's contract (valid arguments).
                unsafe { f(this, sel $(, $arg)*) }
            }
        }
    };
}

callable!();
callable!(a: A);
callable!(a: A, b: B);
callable!(a: A, b: B, c: C);
callable!(a: A, b: B, c: C, d: D);

/// `R (id, SEL)`.
pub type Method0<R> = unsafe extern "C-unwind" fn(Id, Sel) -> R;
/// `R (id, SEL, A)`.
pub type Method1<R, A> = unsafe extern "C-unwind" fn(Id, Sel, A) -> R;
/// `R (id, SEL, A, B)`.
pub type Method2<R, A, B> = unsafe extern "C-unwind" fn(Id, Sel, A, B) -> R;
/// `R (id, SEL, A, B, C)`.
pub type Method3<R, A, B, C> = unsafe extern "C-unwind" fn(Id, Sel, A, B, C) -> R;
/// `R (id, SEL, A, B, C, D)`.
pub type Method4<R, A, B, C, D> = unsafe extern "C-unwind" fn(Id, Sel, A, B, C, D) -> R;

/// The calling-convention shape of an Objective-C type encoding: one
/// character per value (return type first), offsets, qualifiers and names
/// dropped, and the types that travel the same way on LP64 merged:
/// `@` object (also a class `#` and a block `@?`), `:` selector, `^`
/// pointer (also `*`), `Q` 8-byte integer (`q Q l L`; Apple writes a 64-bit
/// `long` as `q`, GCC's runtime as `l`), `I` 4-byte integer, `S` 2-byte,
/// `B` 1-byte (`c C B`: `BOOL` is `c` or `B` by platform), `f`, `d`, `v`,
/// `{` a struct, `(` a union, `[` an array. Writes into `out` (no heap);
/// `None` if the encoding is longer than `out` or malformed.
pub fn encoding_shape<'a>(encoding: &[u8], out: &'a mut [u8; 24]) -> Option<&'a [u8]> {
    let mut n = 0;
    let mut i = 0;
    while i < encoding.len() {
        let c = encoding[i];
        if c.is_ascii_digit() || b"rnNoORVAj".contains(&c) || c == b'-' {
            i += 1;
            continue;
        }
        let (shape, next) = one_type(encoding, i)?;
        if n == out.len() {
            return None;
        }
        out[n] = shape;
        n += 1;
        i = next;
    }
    Some(&out[..n])
}

/// The shape of the type starting at `i`, and where the next one starts.
fn one_type(e: &[u8], i: usize) -> Option<(u8, usize)> {
    let c = *e.get(i)?;
    Some(match c {
        b'@' => {
            let mut j = i + 1;
            if e.get(j) == Some(&b'?') {
                j += 1;
                // A block may spell out its own signature: `@?<v@?@>`.
                if e.get(j) == Some(&b'<') {
                    j = closing(e, j, b'<', b'>')?;
                }
            } else if e.get(j) == Some(&b'"') {
                j = e[j + 1..].iter().position(|&b| b == b'"')? + j + 2;
            }
            (b'@', j)
        }
        b'#' => (b'@', i + 1),
        b':' => (b':', i + 1),
        b'*' => (b'^', i + 1),
        b'^' => {
            // Skip qualifiers, then the pointee type.
            let mut j = i + 1;
            while e.get(j).is_some_and(|b| b"rnNoORVAj".contains(b)) {
                j += 1;
            }
            let (_, next) = one_type(e, j)?;
            (b'^', next)
        }
        b'{' => (b'{', closing(e, i, b'{', b'}')?),
        b'(' => (b'(', closing(e, i, b'(', b')')?),
        b'[' => (b'[', closing(e, i, b'[', b']')?),
        b'q' | b'Q' | b'l' | b'L' => (b'Q', i + 1),
        b'i' | b'I' => (b'I', i + 1),
        b's' | b'S' => (b'S', i + 1),
        b'c' | b'C' | b'B' => (b'B', i + 1),
        b'f' | b'd' | b'v' | b'?' => (c, i + 1),
        _ => return None,
    })
}

/// The index after the bracket that closes the one at `i`.
fn closing(e: &[u8], i: usize, open: u8, close: u8) -> Option<usize> {
    let mut depth = 0usize;
    for (k, &b) in e.iter().enumerate().skip(i) {
        if b == open {
            depth += 1;
        } else if b == close {
            depth -= 1;
            if depth == 0 {
                return Some(k + 1);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(e: &str) -> Option<String> {
        let mut out = [0u8; 24];
        encoding_shape(e.as_bytes(), &mut out).map(|s| String::from_utf8(s.to_vec()).unwrap())
    }

    #[test]
    fn apple_and_gcc_encodings_have_the_same_shapes() {
        // Apple (arm64) and GCC's runtime (clang -fobjc-runtime=gcc, LP64).
        assert_eq!(shape("@32@0:8Q16Q24").as_deref(), Some("@@:QQ"));
        assert_eq!(shape("@32@0:8L16L24").as_deref(), Some("@@:QQ"));
        assert_eq!(shape("v24@0:8@?16").as_deref(), Some("v@:@"));
        assert_eq!(shape("v24@0:8@?<v@?@>16").as_deref(), Some("v@:@"));
        assert_eq!(shape("@32@0:8@16^@24").as_deref(), Some("@@:@^"));
        assert_eq!(shape("@40@0:8r^v16Q24Q32").as_deref(), Some("@@:^QQ"));
        assert_eq!(shape("@48@0:8^v16Q24Q32@?40").as_deref(), Some("@@:^QQ@"));
        assert_eq!(shape("v16@0:8").as_deref(), Some("v@:"));
        assert_eq!(shape("c16@0:8").as_deref(), Some("B@:"));
        assert_eq!(
            shape("@24@0:8@\"MTLHeapDescriptor\"16").as_deref(),
            Some("@@:@")
        );
        assert_eq!(
            shape("{CGSize=dd}16@0:8").as_deref(),
            Some("{@:"),
            "a struct return is its own shape"
        );
        assert_eq!(shape("^{__IOSurface=}16@0:8").as_deref(), Some("^@:"));
        assert_eq!(shape("@16@0:8%"), None, "unknown type");
    }

    unsafe extern "C-unwind" fn twice(_: Id, _: Sel, x: u64) -> u64 {
        x * 2
    }

    #[test]
    fn a_typed_imp_calls_what_it_wraps() {
        let imp = untyped::<Method1<u64, u64>>(twice);
        // SAFETY: `imp` is `twice`, of exactly that signature.
        let typed = unsafe { TypedImp::<Method1<u64, u64>>::assume(imp) };
        // SAFETY: `twice` ignores the receiver and the selector.
        let r = unsafe { typed.call(std::ptr::null_mut(), std::ptr::null(), 21) };
        assert_eq!(r, 42);
        assert_eq!(typed.raw(), imp);
    }
}
