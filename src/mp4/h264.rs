//! What hindsight reads from an H.264 access unit it did not encode itself (a camera's stream,
//! passed through): whether it starts a GOP, and the profile and level of its SPS.
//!
//! Reads only the NAL headers in front of the first slice and the SPS's first three bytes: never
//! decodes, never allocates.

/// NAL unit types hindsight looks at.
const NAL_IDR: u8 = 5;
const NAL_SPS: u8 = 7;

/// The NAL unit headers of `au` up to and including its first slice (type 1–5), each as
/// `(type, payload)`; stops there, so a large picture is not scanned.
fn leading_nals(au: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    let mut pos = 0usize;
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let start = find_start_code(au, pos)?;
        let next = find_start_code(au, start).map(|n| n - 3).unwrap_or(au.len());
        let mut nal = &au[start..next.max(start)];
        while let [rest @ .., 0] = nal {
            nal = rest;
        }
        pos = start;
        let t = nal.first().map_or(0, |b| b & 0x1f);
        if (1..=5).contains(&t) {
            done = true;
        }
        Some((t, nal))
    })
}

/// Offset just past the next `00 00 01` at or after `from`.
fn find_start_code(data: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i + 3 <= data.len() {
        if data[i + 2] > 1 {
            i += 3;
        } else if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            return Some(i + 3);
        } else {
            i += 1;
        }
    }
    None
}

/// Whether the access unit holds an IDR slice (a GOP starts here).
pub fn is_idr(au: &[u8]) -> bool {
    leading_nals(au).any(|(t, _)| t == NAL_IDR)
}

/// Profile and level from an access unit's SPS, if it carries one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpsInfo {
    /// `profile_idc` (66 baseline, 77 main, 100 high, ...).
    pub profile_idc: u8,
    /// `constraint_set1_flag`: with baseline, constrained baseline.
    pub constrained: bool,
    /// `level_idc` (40 = level 4.0).
    pub level_idc: u8,
}

impl SpsInfo {
    /// The SPS of `au`, if any.
    pub fn of(au: &[u8]) -> Option<SpsInfo> {
        let (_, sps) = leading_nals(au).find(|(t, _)| *t == NAL_SPS)?;
        let [_, profile_idc, constraints, level_idc, ..] = *sps else { return None };
        Some(SpsInfo { profile_idc, constrained: constraints & 0x40 != 0, level_idc })
    }

    /// The profile's name as players and GStreamer caps say it.
    pub fn profile(&self) -> &'static str {
        match (self.profile_idc, self.constrained) {
            (66, true) => "constrained-baseline",
            (66, false) => "baseline",
            (77, _) => "main",
            (88, _) => "extended",
            (100, _) => "high",
            (110, _) => "high-10",
            (122, _) => "high-4:2:2",
            (244, _) => "high-4:4:4",
            _ => "other",
        }
    }

    /// The level as `4.0`, `3.1`, ... (`1b` for level_idc 9).
    pub fn level(&self) -> String {
        match self.level_idc {
            9 => "1b".into(),
            l => format!("{}.{}", l / 10, l % 10),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idr_and_sps_are_found_before_the_slice() {
        // AUD, SPS (main, level 3.1), PPS, IDR slice.
        let idr = [0, 0, 0, 1, 9, 0x10, 0, 0, 0, 1, 0x67, 77, 0x40, 31, 0xac, 0, 0, 1, 0x68, 0xce, 0, 0, 1, 0x65, 0x88];
        assert!(is_idr(&idr));
        let sps = SpsInfo::of(&idr).expect("sps");
        assert_eq!((sps.profile(), sps.level().as_str()), ("main", "3.1"));
        // A P slice: no IDR, no SPS; and a buffer without start codes.
        let p = [0, 0, 0, 1, 9, 0x30, 0, 0, 1, 0x41, 0x9a, 0, 0, 1, 0x65];
        assert!(!is_idr(&p), "only NALs before the first slice count");
        assert_eq!(SpsInfo::of(&p), None);
        assert!(!is_idr(&[0x65, 1, 2]));
        assert!(!is_idr(&[]));
        // Truncated SPS.
        assert_eq!(SpsInfo::of(&[0, 0, 1, 0x67, 66]), None);
        let cb = SpsInfo { profile_idc: 66, constrained: true, level_idc: 9 };
        assert_eq!((cb.profile(), cb.level().as_str()), ("constrained-baseline", "1b"));
    }
}
