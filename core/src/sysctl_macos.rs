//! macOS hardware facts from `sysctlbyname`: installed memory
//! (`hw.memsize`), the chip (`machdep.cpu.brand_string`, e.g. "Apple M4
//! Max") and the GPU wired-memory limit (`iogpu.wired_limit_mb`, 0 when the
//! user never raised it). Read by `metal_guard::hardware`.

use std::ffi::{CStr, CString};
use std::io;

/// A sysctl value as raw bytes; `Err` names the sysctl and the OS error.
fn read_raw(name: &str) -> io::Result<Vec<u8>> {
    let cname = CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "sysctl name contains NUL"))?;
    let mut len: libc::size_t = 0;
    // SAFETY: a null output buffer asks only for the size, written to `len`.
    let rc = unsafe {
        libc::sysctlbyname(
            cname.as_ptr(),
            std::ptr::null_mut(),
            &mut len,
            std::ptr::null_mut(),
            0,
        )
    };
    if rc != 0 {
        return Err(sysctl_error(name));
    }
    let mut buf = vec![0u8; len];
    // SAFETY: `buf` has `len` writable bytes and `len` says so; the kernel
    // writes at most `len` bytes and updates `len` to the count written.
    let rc = unsafe {
        libc::sysctlbyname(
            cname.as_ptr(),
            buf.as_mut_ptr().cast(),
            &mut len,
            std::ptr::null_mut(),
            0,
        )
    };
    if rc != 0 {
        return Err(sysctl_error(name));
    }
    buf.truncate(len);
    Ok(buf)
}

fn sysctl_error(name: &str) -> io::Error {
    let os = io::Error::last_os_error();
    io::Error::new(os.kind(), format!("sysctl {name}: {os}"))
}

/// An integer sysctl (4 or 8 bytes, native endian).
pub fn read_u64(name: &str) -> io::Result<u64> {
    let raw = read_raw(name)?;
    match raw.len() {
        8 => Ok(u64::from_ne_bytes(
            raw[..8].try_into().expect("length checked"),
        )),
        4 => Ok(u64::from(u32::from_ne_bytes(
            raw[..4].try_into().expect("length checked"),
        ))),
        n => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("sysctl {name}: {n}-byte value is not an integer"),
        )),
    }
}

/// A string sysctl.
pub fn read_string(name: &str) -> io::Result<String> {
    let raw = read_raw(name)?;
    let text = CStr::from_bytes_until_nul(&raw)
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_else(|_| String::from_utf8_lossy(&raw).into_owned());
    Ok(text.trim().to_string())
}

/// Installed memory in bytes (`hw.memsize`).
pub fn memory_bytes() -> io::Result<u64> {
    read_u64("hw.memsize")
}

/// The chip name (`machdep.cpu.brand_string`), e.g. "Apple M3 Ultra".
pub fn cpu_brand() -> io::Result<String> {
    read_string("machdep.cpu.brand_string")
}

/// The GPU wired-memory limit in MiB (`iogpu.wired_limit_mb`); 0 means the
/// system default. `Err` on macOS versions without the sysctl.
pub fn iogpu_wired_limit_mb() -> io::Result<u64> {
    read_u64("iogpu.wired_limit_mb")
}

/// `kern.boottime` (a `struct timeval`) as Unix seconds.
pub fn boot_time() -> Option<f64> {
    let raw = read_raw("kern.boottime").ok()?;
    if raw.len() < std::mem::size_of::<libc::timeval>() {
        return None;
    }
    // SAFETY: the kernel wrote a timeval; the buffer holds at least that many
    // bytes, and read_unaligned needs no alignment.
    let tv: libc::timeval = unsafe { std::ptr::read_unaligned(raw.as_ptr().cast()) };
    Some(tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6)
}
