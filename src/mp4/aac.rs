//! AAC in MP4: the `mp4a` sample entry with its `esds` (ISO/IEC 14496-14 and -1), and what an
//! AudioSpecificConfig (ISO/IEC 14496-3) says: object type, sample rate, channels.
//!
//! Owns only bytes; must never do I/O. The config comes from outside (an encoder's or a
//! camera's `codec_data`), so [`AudioConfig::parse`] checks every length.

use super::boxes::Writer;

/// The sample rates an AudioSpecificConfig can name by index (0–12).
const RATES: [u32; 13] = [96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350];

/// What an AudioSpecificConfig says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioConfig {
    /// Audio object type (2: AAC-LC, 5: HE-AAC/SBR, 29: HE-AACv2/PS).
    pub object_type: u8,
    /// Sample rate (of the core codec).
    pub rate: u32,
    /// Channels (1–7 from the channel configuration; 8 for configuration 7).
    pub channels: u16,
}

impl AudioConfig {
    /// Read the first fields of an AudioSpecificConfig; `None` when it is too short or names
    /// no rate or no channel layout this module can store.
    pub fn parse(asc: &[u8]) -> Option<AudioConfig> {
        let mut bits = Bits { data: asc, pos: 0 };
        let mut object_type = bits.take(5)? as u8;
        if object_type == 31 {
            object_type = 32 + bits.take(6)? as u8;
        }
        let index = bits.take(4)? as usize;
        let rate = if index == 15 { bits.take(24)? } else { *RATES.get(index)? };
        let channels = match bits.take(4)? {
            0 => return None, // defined in a program config element: not handled
            7 => 8,
            c => c as u16,
        };
        (rate > 0).then_some(AudioConfig { object_type, rate, channels })
    }

    /// The RFC 6381 codec string (`mp4a.40.2` for AAC-LC), for HLS `CODECS`.
    pub fn codec(&self) -> String {
        format!("mp4a.40.{}", self.object_type)
    }
}

/// The AudioSpecificConfig of AAC-LC at `rate` with `channels` (1–7); `None` for a rate an
/// index cannot name.
pub fn lc_config(rate: u32, channels: u16) -> Option<Vec<u8>> {
    let index = RATES.iter().position(|&r| r == rate)? as u16;
    if !(1..=7).contains(&channels) {
        return None;
    }
    let v: u16 = (2 << 11) | (index << 7) | (channels << 3);
    Some(v.to_be_bytes().to_vec())
}

struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn take(&mut self, n: usize) -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..n {
            let byte = *self.data.get(self.pos / 8)?;
            v = (v << 1) | u32::from((byte >> (7 - self.pos % 8)) & 1);
            self.pos += 1;
        }
        Some(v)
    }
}

/// An MPEG-4 descriptor header with a one-byte length (every descriptor here is short).
fn descriptor(w: &mut Writer, tag: u8, len: usize) {
    w.u8(tag);
    w.u8(len.min(127) as u8);
}

/// The `mp4a` sample entry (version 0) with its `esds` carrying `config`
/// (at most 64 bytes: every length fits one byte).
pub(crate) fn write_mp4a(w: &mut Writer, config: &[u8], rate: u32, channels: u16) {
    let config = &config[..config.len().min(64)];
    let mp4a = w.open(b"mp4a");
    w.zeros(6);
    w.u16(1); // data_reference_index
    w.zeros(8); // version, revision, vendor
    w.u16(channels);
    w.u16(16); // sample size
    w.u16(0); // pre_defined
    w.u16(0);
    w.u32(rate.min(0xffff) << 16); // 16.16
    let esds = w.open_full(b"esds", 0, 0);
    let dsi = 2 + config.len();
    let dcd = 13 + dsi;
    let es = 3 + 2 + dcd + 3;
    descriptor(w, 0x03, es); // ES_Descriptor
    w.u16(0); // ES_ID
    w.u8(0); // no dependency, URL or OCR stream
    descriptor(w, 0x04, dcd); // DecoderConfigDescriptor
    w.u8(0x40); // objectTypeIndication: MPEG-4 Audio
    w.u8(0x15); // streamType audio (5) << 2 | reserved 1
    w.bytes(&[0, 0, 0]); // bufferSizeDB
    w.u32(0); // maxBitrate
    w.u32(0); // avgBitrate
    descriptor(w, 0x05, config.len()); // DecoderSpecificInfo
    w.bytes(config);
    descriptor(w, 0x06, 1); // SLConfigDescriptor
    w.u8(0x02); // predefined: MP4
    w.close(esds);
    w.close(mp4a);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_specific_configs_read_and_written() {
        // AAC-LC 48 kHz mono, as avenc_aac and most cameras send it.
        assert_eq!(lc_config(48000, 1), Some(vec![0x11, 0x88]));
        assert_eq!(lc_config(44100, 2), Some(vec![0x12, 0x10]));
        assert_eq!(lc_config(47999, 1), None);
        assert_eq!(lc_config(48000, 0), None);
        let c = AudioConfig::parse(&[0x11, 0x88]).unwrap();
        assert_eq!(c, AudioConfig { object_type: 2, rate: 48000, channels: 1 });
        assert_eq!(c.codec(), "mp4a.40.2");
        // HE-AAC with an explicit rate index 15 (24-bit rate).
        let explicit = [0x2f, 0x80, 0x0f, 0xa0, 0x10];
        let c = AudioConfig::parse(&explicit).unwrap();
        assert_eq!((c.object_type, c.rate, c.channels), (5, 8000, 2));
        for bad in [&[][..], &[0x11], &[0x17, 0x80], &[0x11, 0x80]] {
            assert_eq!(AudioConfig::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn mp4a_entry_lays_out_esds_lengths() {
        let mut w = Writer::default();
        write_mp4a(&mut w, &[0x11, 0x88], 48000, 1);
        let b = w.buf;
        assert_eq!(&b[4..8], b"mp4a");
        assert_eq!(u32::from_be_bytes(b[0..4].try_into().unwrap()) as usize, b.len());
        assert_eq!(u16::from_be_bytes([b[24], b[25]]), 1, "channels");
        assert_eq!(u32::from_be_bytes(b[32..36].try_into().unwrap()), 48000 << 16);
        let esds = &b[36..];
        assert_eq!(&esds[4..8], b"esds");
        assert_eq!(u32::from_be_bytes(esds[0..4].try_into().unwrap()) as usize, esds.len());
        // ES_Descriptor length covers everything after its own two header bytes.
        assert_eq!(esds[12], 0x03);
        assert_eq!(esds[13] as usize, esds.len() - 14);
        assert_eq!(&esds[esds.len() - 7..], &[0x05, 2, 0x11, 0x88, 0x06, 1, 2]);
    }
}
