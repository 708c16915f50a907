//! The `moov` box, in its two forms: the init segment's (durations 0, empty sample tables,
//! `mvex`: the file is fragmented) and the regular one appended at finalization (durations
//! set, complete sample tables, no `mvex`). One builder writes both so they cannot drift.
//! One `trak` per track: the H.264 video (track 1) and, when the clip has sound, AAC (track 2).
//!
//! Owns only the byte layout of `moov` from plain inputs ([`TrackHeader`], [`Tables`]); it
//! must never parse files, know about Annex-B, or do I/O.

use super::boxes::Writer;
use super::MOVIE_TIMESCALE;

/// What the writer remembers of one written sample (and what a `trun` entry says).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SampleEntry {
    /// Bytes in the `mdat` (after Annex-B → 4-byte length prefixes).
    pub(crate) size: u32,
    /// Duration in the track's timescale.
    pub(crate) duration: u32,
    /// Sync sample (keyframe; every AAC frame).
    pub(crate) sync: bool,
}

/// A run of consecutive samples of one track stored back to back: one fragment's share of the
/// `mdat` payload. Becomes one chunk (`stco`/`stsc` entry) of the track in the regular `moov`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Chunk {
    /// File offset of the first sample byte.
    pub(crate) offset: u64,
    /// Samples in the chunk.
    pub(crate) samples: u32,
}

/// What kind of track, with what the kind needs in `tkhd`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Media {
    /// `vide`: `tkhd` width and height, 16.16 fixed point.
    Video { width: u32, height: u32 },
    /// `soun`.
    Audio,
}

/// Everything of a track that is not a sample table.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TrackHeader<'a> {
    /// `tkhd.track_ID` (and `tfhd`/`trex`).
    pub(crate) id: u32,
    /// The complete `stsd` box (with its `avc1`/`avcC` or `mp4a`/`esds`), copied verbatim.
    pub(crate) stsd: &'a [u8],
    pub(crate) media: Media,
    /// `mdhd` timescale: 90 kHz for video, the sample rate for audio.
    pub(crate) timescale: u32,
    /// An empty edit first ([`MOVIE_TIMESCALE`]): the track starts this long after the movie.
    pub(crate) empty_edit: u64,
    /// `elst` media time (the track's timescale).
    pub(crate) edit_media_time: u64,
}

/// The sample tables of one track of a regular `moov`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tables<'a> {
    pub(crate) samples: &'a [SampleEntry],
    pub(crate) chunks: &'a [Chunk],
}

/// Presented duration in the movie timescale: media duration minus the edit's media time,
/// rounded to the nearest [`MOVIE_TIMESCALE`] unit (as [`super::duration_patches`] computes it).
pub(crate) fn presented_movie_duration(
    media_duration: u64,
    edit_media_time: u64,
    media_timescale: u64,
    movie_timescale: u64,
) -> u64 {
    let presented = media_duration.saturating_sub(edit_media_time);
    let movie = (u128::from(presented) * u128::from(movie_timescale) + u128::from(media_timescale / 2))
        / u128::from(media_timescale.max(1));
    u64::try_from(movie).unwrap_or(u64::MAX)
}

/// A track's durations: (media, its media edit's segment, the whole track) — all 0 without
/// tables (the init segment), except the empty edit, which is known from the start.
fn durations(h: &TrackHeader, tables: Option<&Tables>) -> (u64, u64, u64) {
    let Some(t) = tables else { return (0, 0, 0) };
    let media: u64 = t.samples.iter().map(|s| u64::from(s.duration)).sum();
    let segment =
        presented_movie_duration(media, h.edit_media_time, u64::from(h.timescale), u64::from(MOVIE_TIMESCALE));
    (media, segment, h.empty_edit + segment)
}

/// The init segment's `moov` (`tables = None`: durations 0, empty tables, `mvex`) or the
/// regular one (`Some`, one per track: durations from the samples, full tables, no `mvex`).
pub(crate) fn write_moov(w: &mut Writer, tracks: &[TrackHeader], tables: Option<&[Tables]>) {
    let table = |i: usize| tables.and_then(|t| t.get(i));
    let movie_duration = (0..tracks.len()).map(|i| durations(&tracks[i], table(i)).2).max().unwrap_or(0);
    let moov = w.open(b"moov");
    let mvhd = w.open_full(b"mvhd", 1, 0);
    w.zeros(16); // creation, modification time
    w.u32(MOVIE_TIMESCALE);
    w.u64(movie_duration);
    w.u32(0x0001_0000); // rate 1.0
    w.u16(0x0100); // volume 1.0
    w.zeros(10);
    w.unity_matrix();
    w.zeros(24); // pre_defined
    w.u32(tracks.iter().map(|t| t.id).max().unwrap_or(0) + 1); // next_track_ID
    w.close(mvhd);
    for (i, h) in tracks.iter().enumerate() {
        write_trak(w, h, table(i));
    }
    if tables.is_none() {
        let mvex = w.open(b"mvex");
        let mehd = w.open_full(b"mehd", 1, 0);
        w.u64(0); // fragment_duration (patched)
        w.close(mehd);
        for h in tracks {
            let trex = w.open_full(b"trex", 0, 0);
            w.u32(h.id);
            w.u32(1); // default_sample_description_index
            w.zeros(12); // default duration, size, flags (0: sync)
            w.close(trex);
        }
        w.close(mvex);
    }
    w.close(moov);
}

fn write_trak(w: &mut Writer, h: &TrackHeader, tables: Option<&Tables>) {
    let (media_duration, segment, track_duration) = durations(h, tables);
    let trak = w.open(b"trak");
    let tkhd = w.open_full(b"tkhd", 1, 3); // enabled | in_movie
    w.zeros(16);
    w.u32(h.id);
    w.u32(0);
    w.u64(track_duration);
    w.zeros(8);
    w.u16(0); // layer
    w.u16(0); // alternate_group
    w.u16(if h.media == Media::Audio { 0x0100 } else { 0 }); // volume
    w.u16(0);
    w.unity_matrix();
    let (width, height) = match h.media {
        Media::Video { width, height } => (width, height),
        Media::Audio => (0, 0),
    };
    w.u32(width);
    w.u32(height);
    w.close(tkhd);

    let edts = w.open(b"edts");
    let elst = w.open_full(b"elst", 1, 0);
    if h.empty_edit > 0 {
        w.u32(2);
        w.u64(h.empty_edit);
        w.u64(u64::MAX); // media_time −1: an empty edit
        w.u16(1);
        w.u16(0);
    } else {
        w.u32(1);
    }
    w.u64(segment); // segment_duration
    w.u64(h.edit_media_time);
    w.u16(1); // media_rate_integer
    w.u16(0);
    w.close(elst);
    w.close(edts);

    let mdia = w.open(b"mdia");
    let mdhd = w.open_full(b"mdhd", 1, 0);
    w.zeros(16);
    w.u32(h.timescale);
    w.u64(media_duration);
    w.u16(0x55c4); // language "und"
    w.u16(0);
    w.close(mdhd);
    let hdlr = w.open_full(b"hdlr", 0, 0);
    w.u32(0);
    match h.media {
        Media::Video { .. } => {
            w.bytes(b"vide");
            w.zeros(12);
            w.bytes(b"VideoHandler\0");
        }
        Media::Audio => {
            w.bytes(b"soun");
            w.zeros(12);
            w.bytes(b"SoundHandler\0");
        }
    }
    w.close(hdlr);

    let minf = w.open(b"minf");
    match h.media {
        Media::Video { .. } => {
            let vmhd = w.open_full(b"vmhd", 0, 1);
            w.zeros(8); // graphicsmode, opcolor
            w.close(vmhd);
        }
        Media::Audio => {
            let smhd = w.open_full(b"smhd", 0, 0);
            w.zeros(4); // balance, reserved
            w.close(smhd);
        }
    }
    let dinf = w.open(b"dinf");
    let dref = w.open_full(b"dref", 0, 0);
    w.u32(1);
    let url = w.open_full(b"url ", 0, 1); // self-contained
    w.close(url);
    w.close(dref);
    w.close(dinf);

    let stbl = w.open(b"stbl");
    w.bytes(h.stsd);
    match tables {
        // Every AAC frame is a sync sample: no `stss` says so.
        Some(t) => write_tables(w, t, matches!(h.media, Media::Video { .. })),
        None => {
            for typ in [b"stts", b"stsc", b"stsz", b"stco"] {
                let b = w.open_full(typ, 0, 0);
                if typ == b"stsz" {
                    w.u32(0); // sample_size, then sample_count
                }
                w.u32(0); // entry_count
                w.close(b);
            }
        }
    }
    w.close(stbl);
    w.close(minf);
    w.close(mdia);
    w.close(trak);
}

/// `stts`, `stss` (with `sync_table`), `stsc`, `stsz` and `stco` (or `co64` past 4 GiB).
fn write_tables(w: &mut Writer, t: &Tables, sync_table: bool) {
    let mut stts: Vec<(u32, u32)> = Vec::new(); // (count, delta)
    for s in t.samples {
        match stts.last_mut() {
            Some((n, d)) if *d == s.duration => *n += 1,
            _ => stts.push((1, s.duration)),
        }
    }
    let b = w.open_full(b"stts", 0, 0);
    w.u32(stts.len() as u32);
    for (n, d) in stts {
        w.u32(n);
        w.u32(d);
    }
    w.close(b);

    if sync_table {
        let b = w.open_full(b"stss", 0, 0);
        let sync: Vec<u32> = (1..).zip(t.samples).filter(|(_, s)| s.sync).map(|(i, _)| i).collect();
        w.u32(sync.len() as u32);
        for i in sync {
            w.u32(i);
        }
        w.close(b);
    }

    let mut stsc: Vec<(u32, u32)> = Vec::new(); // (first_chunk, samples_per_chunk)
    for (i, c) in (1..).zip(t.chunks) {
        if stsc.last().is_none_or(|&(_, n)| n != c.samples) {
            stsc.push((i, c.samples));
        }
    }
    let b = w.open_full(b"stsc", 0, 0);
    w.u32(stsc.len() as u32);
    for (first, n) in stsc {
        w.u32(first);
        w.u32(n);
        w.u32(1); // sample_description_index
    }
    w.close(b);

    let b = w.open_full(b"stsz", 0, 0);
    w.u32(0); // sizes vary
    w.u32(t.samples.len() as u32);
    for s in t.samples {
        w.u32(s.size);
    }
    w.close(b);

    let wide = t.chunks.iter().any(|c| c.offset > u64::from(u32::MAX));
    let b = w.open_full(if wide { b"co64" } else { b"stco" }, 0, 0);
    w.u32(t.chunks.len() as u32);
    for c in t.chunks {
        if wide {
            w.u64(c.offset);
        } else {
            w.u32(c.offset as u32);
        }
    }
    w.close(b);
}
