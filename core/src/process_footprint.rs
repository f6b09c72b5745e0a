//! How much memory this process holds, for breadcrumbs (`footprint_mb=`).
//!
//! macOS: `task_info(TASK_VM_INFO)`'s `phys_footprint`, the number Activity
//! Monitor shows as "Memory" and the one jetsam acts on (it counts GPU
//! buffers in unified memory that this process owns). Linux: resident set
//! size from `/proc/self/statm`, the closest equivalent.

/// A snapshot of this process's memory use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footprint {
    /// Physical footprint (macOS) or resident set (Linux), in bytes.
    pub bytes: u64,
    /// Peak resident set in bytes, where the platform reports it.
    pub resident_peak_bytes: Option<u64>,
}

/// This process's footprint, or `None` if the platform refused to tell.
pub fn current() -> Option<Footprint> {
    platform::current()
}

#[cfg(target_os = "macos")]
mod platform {
    use super::Footprint;

    /// `TASK_VM_INFO` flavor from `<mach/task_info.h>`.
    const TASK_VM_INFO: libc::task_flavor_t = 22;

    /// The prefix of `task_vm_info_data_t` up to `phys_footprint` (revision 1
    /// of the struct). The kernel fills as many `natural_t` words as the count
    /// we pass, so a prefix is valid input.
    #[repr(C)]
    #[derive(Default)]
    struct TaskVmInfoRev1 {
        virtual_size: u64,
        region_count: i32,
        page_size: i32,
        resident_size: u64,
        resident_size_peak: u64,
        device: u64,
        device_peak: u64,
        internal: u64,
        internal_peak: u64,
        external: u64,
        external_peak: u64,
        reusable: u64,
        reusable_peak: u64,
        purgeable_volatile_pmap: u64,
        purgeable_volatile_resident: u64,
        purgeable_volatile_virtual: u64,
        compressed: u64,
        compressed_peak: u64,
        compressed_lifetime: u64,
        phys_footprint: u64,
    }

    // The header packs the struct to 4 bytes; every u64 here already sits on
    // an 8-byte boundary, so the C layout matches. Checked at compile time.
    const _: () = assert!(std::mem::size_of::<TaskVmInfoRev1>() == 152);
    const _: () = assert!(std::mem::offset_of!(TaskVmInfoRev1, phys_footprint) == 144);
    extern "C" {
        /// The task's own port, which `mach_task_self()` (a macro) reads;
        /// exported by libSystem and set before any user code runs.
        static mach_task_self_: libc::mach_port_t;
    }

    /// `TASK_VM_INFO_REV1_COUNT`, in `natural_t` (u32) words.
    const TASK_VM_INFO_REV1_COUNT: libc::mach_msg_type_number_t =
        (std::mem::size_of::<TaskVmInfoRev1>() / std::mem::size_of::<u32>()) as u32;

    pub(super) fn current() -> Option<Footprint> {
        let mut info = TaskVmInfoRev1::default();
        let mut count = TASK_VM_INFO_REV1_COUNT;
        // SAFETY: `info` is a writable buffer of `count` natural_t words, and
        // task_info writes at most `count` words and updates `count`;
        // `mach_task_self_` is initialised by libSystem before main and never
        // changes afterwards.
        let kr = unsafe {
            libc::task_info(
                mach_task_self_,
                TASK_VM_INFO,
                (&mut info as *mut TaskVmInfoRev1).cast(),
                &mut count,
            )
        };
        if kr != libc::KERN_SUCCESS || count < TASK_VM_INFO_REV1_COUNT {
            return None;
        }
        Some(Footprint {
            bytes: info.phys_footprint,
            resident_peak_bytes: Some(info.resident_size_peak),
        })
    }
}

#[cfg(not(target_os = "macos"))]
mod platform {
    use super::Footprint;

    pub(super) fn current() -> Option<Footprint> {
        let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
        let resident_pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        let page = u64::try_from(page).ok().filter(|p| *p > 0)?;
        Some(Footprint {
            bytes: resident_pages * page,
            resident_peak_bytes: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_when_memory_is_touched() {
        let before = current().expect("footprint readable").bytes;
        let block = vec![1u8; 64 << 20];
        let after = current().expect("footprint readable").bytes;
        assert!(block.iter().step_by(4096).all(|&b| b == 1));
        assert!(before > 0);
        assert!(
            after >= before + (32 << 20),
            "footprint {before} -> {after} after touching 64 MiB"
        );
    }
}
