//! What machine this is: chip, memory, GPU family, working set, wired limit,
//! IOGPUFamily version. Fields are `None` with a reason where the platform
//! cannot tell.
