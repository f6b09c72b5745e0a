//! Bounds-checked reads from a byte slice: every accessor returns
//! `MachOError::Truncated` instead of panicking on a short or hostile file.

use super::MachOError;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Bytes<'a> {
    data: &'a [u8],
}

impl<'a> Bytes<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Bytes { data }
    }

    pub(crate) fn len(&self) -> usize {
        self.data.len()
    }

    pub(crate) fn slice(
        &self,
        at: usize,
        len: usize,
        what: &'static str,
    ) -> Result<&'a [u8], MachOError> {
        at.checked_add(len)
            .and_then(|end| self.data.get(at..end))
            .ok_or(MachOError::Truncated {
                what,
                offset: at as u64,
            })
    }

    fn array<const N: usize>(&self, at: usize, what: &'static str) -> Result<[u8; N], MachOError> {
        let s = self.slice(at, N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }

    pub(crate) fn u8(&self, at: usize, what: &'static str) -> Result<u8, MachOError> {
        Ok(self.array::<1>(at, what)?[0])
    }

    pub(crate) fn u16_le(&self, at: usize, what: &'static str) -> Result<u16, MachOError> {
        Ok(u16::from_le_bytes(self.array(at, what)?))
    }

    pub(crate) fn u32_le(&self, at: usize, what: &'static str) -> Result<u32, MachOError> {
        Ok(u32::from_le_bytes(self.array(at, what)?))
    }

    pub(crate) fn u64_le(&self, at: usize, what: &'static str) -> Result<u64, MachOError> {
        Ok(u64::from_le_bytes(self.array(at, what)?))
    }

    pub(crate) fn u32_be(&self, at: usize, what: &'static str) -> Result<u32, MachOError> {
        Ok(u32::from_be_bytes(self.array(at, what)?))
    }

    pub(crate) fn u64_be(&self, at: usize, what: &'static str) -> Result<u64, MachOError> {
        Ok(u64::from_be_bytes(self.array(at, what)?))
    }

    /// A NUL-terminated string starting at `at` (lossy UTF-8).
    pub(crate) fn cstr(&self, at: usize, what: &'static str) -> Result<String, MachOError> {
        let (s, _) = self.cstr_with_len(at, what)?;
        Ok(s)
    }

    /// A NUL-terminated string and the number of bytes it occupies including the NUL.
    pub(crate) fn cstr_with_len(
        &self,
        at: usize,
        what: &'static str,
    ) -> Result<(String, usize), MachOError> {
        let rest = self.data.get(at..).ok_or(MachOError::Truncated {
            what,
            offset: at as u64,
        })?;
        let end = rest
            .iter()
            .position(|&c| c == 0)
            .ok_or(MachOError::Truncated {
                what,
                offset: at as u64,
            })?;
        Ok((String::from_utf8_lossy(&rest[..end]).into_owned(), end + 1))
    }

    /// An unsigned LEB128 value at `*at`, advancing `*at` past it.
    pub(crate) fn uleb(&self, at: &mut usize, what: &'static str) -> Result<u64, MachOError> {
        let mut value: u64 = 0;
        let mut shift = 0u32;
        loop {
            let byte = self.u8(*at, what)?;
            *at += 1;
            if shift >= 64 || (shift == 63 && byte & 0x7e != 0) {
                return Err(super::malformed(format!(
                    "{what}: ULEB128 value overflows 64 bits"
                )));
            }
            value |= u64::from(byte & 0x7f) << shift;
            shift += 7;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
    }

    /// A signed LEB128 value at `*at`, advancing `*at` past it.
    pub(crate) fn sleb(&self, at: &mut usize, what: &'static str) -> Result<i64, MachOError> {
        let mut value: i64 = 0;
        let mut shift = 0u32;
        loop {
            let byte = self.u8(*at, what)?;
            *at += 1;
            if shift >= 64 {
                return Err(super::malformed(format!(
                    "{what}: SLEB128 value overflows 64 bits"
                )));
            }
            value |= i64::from(byte & 0x7f) << shift;
            shift += 7;
            if byte & 0x80 == 0 {
                if shift < 64 && byte & 0x40 != 0 {
                    value |= -1i64 << shift;
                }
                return Ok(value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leb128_round_trips_known_values() {
        let data = [0xe5, 0x8e, 0x26, 0x7f, 0x80, 0x7f];
        let b = Bytes::new(&data);
        let mut at = 0;
        assert_eq!(b.uleb(&mut at, "t").unwrap(), 624_485);
        assert_eq!(at, 3);
        assert_eq!(b.sleb(&mut at, "t").unwrap(), -1);
        assert_eq!(b.sleb(&mut at, "t").unwrap(), -128);
        assert_eq!(at, 6);
        assert!(matches!(
            b.uleb(&mut at, "t"),
            Err(MachOError::Truncated { .. })
        ));
    }

    #[test]
    fn overlong_uleb_is_an_error_not_a_panic() {
        let data = [0xffu8; 12];
        let mut at = 0;
        assert!(Bytes::new(&data).uleb(&mut at, "t").is_err());
    }

    #[test]
    fn reads_past_the_end_are_errors() {
        let b = Bytes::new(&[1, 2, 3]);
        assert!(b.u32_le(0, "t").is_err());
        assert!(b.slice(usize::MAX, 2, "t").is_err());
        assert!(b.cstr(0, "t").is_err());
    }
}
