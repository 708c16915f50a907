//! What hindsight reads from an H.264 access unit it did not encode itself (a camera's stream,
//! passed through): whether it starts a GOP, the profile, level and picture size of its SPS, and
//! whether its parameter sets are those of another keyframe (the stream changed format).
//!
//! Reads only the NAL units in front of the first slice: never decodes a picture; only the
//! picture size allocates (the SPS without its emulation-prevention bytes, tens of bytes).

/// NAL unit types hindsight looks at.
const NAL_IDR: u8 = 5;
const NAL_SPS: u8 = 7;
const NAL_PPS: u8 = 8;

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

/// The SPS and PPS NAL units `au` carries in front of its first slice.
fn parameter_sets(au: &[u8]) -> impl Iterator<Item = &[u8]> {
    leading_nals(au).filter(|(t, _)| *t == NAL_SPS || *t == NAL_PPS).map(|(_, nal)| nal)
}

/// Whether keyframe `next` continues the stream of keyframe `first`: every SPS and PPS it
/// carries is one `first` carries too (a keyframe without parameter sets keeps the current
/// ones). A camera that changes resolution, profile or encoder settings sends new ones, which
/// one MP4 track (one `avcC`) cannot hold.
pub fn same_parameter_sets(first: &[u8], next: &[u8]) -> bool {
    parameter_sets(next).all(|n| parameter_sets(first).any(|f| f == n))
}

/// The picture size (width, height) in pixels that the SPS of `au` describes, cropping
/// applied; `None` without an SPS or with one this parser cannot read to the end of its size.
pub fn dimensions(au: &[u8]) -> Option<(u32, u32)> {
    let (_, sps) = leading_nals(au).find(|(t, _)| *t == NAL_SPS)?;
    sps_dimensions(sps)
}

/// [`dimensions`] of one SPS NAL unit (header byte included), per ITU-T H.264 7.3.2.1.1.
pub(crate) fn sps_dimensions(sps: &[u8]) -> Option<(u32, u32)> {
    // Without emulation prevention (`00 00 03` → `00 00`); the size lies within the first ~30 bytes.
    let mut rbsp = Vec::with_capacity(sps.len().min(64));
    let mut zeros = 0;
    for &b in sps.get(1..)?.iter().take(256) {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        rbsp.push(b);
    }
    let mut r = Bits { data: &rbsp, pos: 0 };
    let profile_idc = r.bits(8)?;
    r.bits(16)?; // constraint flags, level_idc
    r.ue()?; // seq_parameter_set_id
    let mut chroma_array_type = 1;
    if matches!(profile_idc, 100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135) {
        let chroma_format_idc = r.ue()?;
        let separate_colour_planes = chroma_format_idc == 3 && r.bit()?;
        chroma_array_type = if separate_colour_planes { 0 } else { chroma_format_idc };
        r.ue()?; // bit_depth_luma_minus8
        r.ue()?; // bit_depth_chroma_minus8
        r.bit()?; // qpprime_y_zero_transform_bypass_flag
        if r.bit()? {
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.bit()? {
                    r.skip_scaling_list(if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    match r.ue()? {
        0 => {
            r.ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            r.bit()?;
            r.se()?;
            r.se()?;
            let cycle = r.ue()?;
            if cycle > 255 {
                return None;
            }
            for _ in 0..cycle {
                r.se()?;
            }
        }
        _ => {}
    }
    r.ue()?; // max_num_ref_frames
    r.bit()?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = u64::from(r.ue()?) + 1;
    let height_map_units = u64::from(r.ue()?) + 1;
    let frame_mbs_only = r.bit()?;
    if !frame_mbs_only {
        r.bit()?; // mb_adaptive_frame_field_flag
    }
    r.bit()?; // direct_8x8_inference_flag
    let field_factor = if frame_mbs_only { 1 } else { 2 };
    let (mut left, mut right, mut top, mut bottom) = (0u64, 0u64, 0u64, 0u64);
    if r.bit()? {
        left = r.ue()?.into();
        right = r.ue()?.into();
        top = r.ue()?.into();
        bottom = r.ue()?.into();
    }
    let (sub_w, sub_h) = match chroma_array_type {
        1 => (2, 2),
        2 => (2, 1),
        _ => (1, 1),
    };
    let width = (width_mbs * 16).checked_sub(sub_w * (left + right))?;
    let height = (height_map_units * 16 * field_factor).checked_sub(sub_h * field_factor * (top + bottom))?;
    // H.264 levels stop at 8192x4320: a larger size is a garbled SPS.
    let (width, height) = (u32::try_from(width).ok()?, u32::try_from(height).ok()?);
    Some((width, height)).filter(|&(w, h)| (1..=16384).contains(&w) && (1..=16384).contains(&h))
}

/// A bit reader over an SPS's RBSP; every read is `None` past the end.
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn bit(&mut self) -> Option<bool> {
        let byte = self.data.get(self.pos / 8)?;
        let b = byte >> (7 - self.pos % 8) & 1;
        self.pos += 1;
        Some(b == 1)
    }

    fn bits(&mut self, n: u32) -> Option<u32> {
        (0..n).try_fold(0u32, |v, _| Some(v << 1 | u32::from(self.bit()?)))
    }

    /// Exp-Golomb `ue(v)` (at most 32 bits: longer codes are malformed).
    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while !self.bit()? {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        Some(((1u64 << zeros) - 1 + u64::from(self.bits(zeros)?)) as u32)
    }

    /// Exp-Golomb `se(v)`.
    fn se(&mut self) -> Option<i64> {
        let k = i64::from(self.ue()?);
        Some(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }

    /// A `scaling_list()` of `size` entries (7.3.2.1.1.1): read to move past it.
    fn skip_scaling_list(&mut self, size: usize) -> Option<()> {
        let (mut last, mut next) = (8i64, 8i64);
        for _ in 0..size {
            if next != 0 {
                next = (last + self.se()? + 256).rem_euclid(256);
            }
            if next != 0 {
                last = next;
            }
        }
        Some(())
    }
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
