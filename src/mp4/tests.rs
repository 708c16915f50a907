//! Tests of the fragmented-MP4 writer: byte layout checked by an independent box walker, and
//! end to end with real GStreamer-encoded H.264 validated by ffprobe/ffmpeg (including crash
//! recovery). Owns no production code; must never write outside a temp dir.

use super::*;
use gst::prelude::*;
use gstreamer as gst;
use gstreamer_app as gst_app;
use std::sync::OnceLock;

const SPS: [u8; 9] = [0x67, 0x4d, 0x40, 0x1e, 0x96, 0x54, 0x0a, 0x0f, 0xd8];
const PPS: [u8; 4] = [0x68, 0xee, 0x3c, 0x80];

/// AUD + SPS (4-byte start code) + PPS (3-byte) + SEI + IDR slice, with trailing zeros.
pub(crate) fn synthetic_keyframe() -> Vec<u8> {
    let mut v = vec![0, 0, 0, 1, 0x09, 0x10, 0, 0, 0, 1];
    v.extend(SPS);
    v.extend([0, 0, 1]);
    v.extend(PPS);
    v.extend([0, 0, 0, 1, 0x06, 0x05, 0x01, 0x80]);
    v.extend([0, 0, 0, 1, 0x65, 0x88, 0x84, 0x21, 0x00, 0x00]);
    v
}

// ---- an independent, tiny box walker (does not use `boxes`) ----

pub(super) fn u32_at(d: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(d[at..at + 4].try_into().unwrap())
}
pub(super) fn u64_at(d: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(d[at..at + 8].try_into().unwrap())
}

/// Every box as (path, offset, size); children must exactly fill their parent.
fn walk(d: &[u8], from: usize, to: usize, prefix: &str, out: &mut Vec<(String, usize, usize)>) {
    let mut pos = from;
    while pos < to {
        let size = u32_at(d, pos) as usize;
        let typ = std::str::from_utf8(&d[pos + 4..pos + 8]).unwrap();
        assert!(size >= 8 && pos + size <= to, "{prefix}/{typ} at {pos} overflows its parent");
        let path = format!("{prefix}/{typ}");
        out.push((path.clone(), pos, size));
        let skip = match typ {
            "moov" | "trak" | "edts" | "mdia" | "minf" | "dinf" | "stbl" | "mvex" | "moof" | "traf" => Some(8),
            "stsd" | "dref" => Some(16),
            "avc1" => Some(8 + 78),
            _ => None,
        };
        if let Some(skip) = skip {
            walk(d, pos + skip, pos + size, &path, out);
        }
        pos += size;
    }
    assert_eq!(pos, to, "children of {prefix} do not fill it");
}

pub(super) fn tree(d: &[u8]) -> Vec<(String, usize, usize)> {
    let mut out = Vec::new();
    walk(d, 0, d.len(), "", &mut out);
    out
}

pub(super) fn find(t: &[(String, usize, usize)], path: &str) -> (usize, usize) {
    let e = t.iter().find(|e| e.0 == path).unwrap_or_else(|| panic!("no {path}"));
    (e.1, e.2)
}

#[test]
fn init_segment_box_order_sizes_and_fields() {
    let mp4 = FragmentedMp4::new(&synthetic_keyframe(), 320, 240, 30_000).unwrap();
    let init = mp4.init_segment();
    let t = tree(&init);
    let paths: Vec<&str> = t.iter().map(|e| e.0.as_str()).collect();
    let m = "/moov/trak/mdia/minf";
    let expected = [
        "/ftyp".to_string(),
        "/moov".into(),
        "/moov/mvhd".into(),
        "/moov/trak".into(),
        "/moov/trak/tkhd".into(),
        "/moov/trak/edts".into(),
        "/moov/trak/edts/elst".into(),
        "/moov/trak/mdia".into(),
        "/moov/trak/mdia/mdhd".into(),
        "/moov/trak/mdia/hdlr".into(),
        m.into(),
        format!("{m}/vmhd"),
        format!("{m}/dinf"),
        format!("{m}/dinf/dref"),
        format!("{m}/dinf/dref/url "),
        format!("{m}/stbl"),
        format!("{m}/stbl/stsd"),
        format!("{m}/stbl/stsd/avc1"),
        format!("{m}/stbl/stsd/avc1/avcC"),
        format!("{m}/stbl/stts"),
        format!("{m}/stbl/stsc"),
        format!("{m}/stbl/stsz"),
        format!("{m}/stbl/stco"),
        "/moov/mvex".into(),
        "/moov/mvex/mehd".into(),
        "/moov/mvex/trex".into(),
    ];
    assert_eq!(paths, expected);
    // Fixed sizes of the version-1 boxes (so patches never change sizes).
    let size = |p: &str| find(&t, p).1;
    assert_eq!(size("/ftyp"), 36);
    assert_eq!(size("/moov/mvhd"), 120);
    assert_eq!(size("/moov/trak/tkhd"), 104);
    assert_eq!(size("/moov/trak/edts/elst"), 36);
    assert_eq!(size("/moov/trak/mdia/mdhd"), 44);
    assert_eq!(size("/moov/mvex/mehd"), 20);
    assert_eq!(size("/moov/mvex/trex"), 32);
    assert_eq!(&init[8..12], b"isom");
    assert_eq!(&init[16..36], b"isomiso6iso2avc1mp41");

    let (mvhd, _) = find(&t, "/moov/mvhd");
    assert_eq!(init[mvhd + 8], 1, "mvhd version 1");
    assert_eq!(u32_at(&init, mvhd + 28), 1000);
    assert_eq!(u32_at(&init, mvhd + 116), 2, "next_track_ID");
    let (tkhd, _) = find(&t, "/moov/trak/tkhd");
    assert_eq!(u32_at(&init, tkhd + 8), 0x0100_0003, "tkhd v1, flags enabled|in_movie");
    assert_eq!(u32_at(&init, tkhd + 28), 1, "track_ID");
    assert_eq!(u32_at(&init, tkhd + 96), 320 << 16);
    assert_eq!(u32_at(&init, tkhd + 100), 240 << 16);
    let (elst, _) = find(&t, "/moov/trak/edts/elst");
    assert_eq!(u32_at(&init, elst + 8), 0x0100_0000);
    assert_eq!(u32_at(&init, elst + 12), 1, "one entry");
    assert_eq!(u64_at(&init, elst + 24), 30_000, "media_time");
    assert_eq!(u32_at(&init, elst + 32), 0x0001_0000, "rate 1.0");
    let (mdhd, _) = find(&t, "/moov/trak/mdia/mdhd");
    assert_eq!(u32_at(&init, mdhd + 28), 90_000);
    let (hdlr, _) = find(&t, "/moov/trak/mdia/hdlr");
    assert_eq!(&init[hdlr + 16..hdlr + 20], b"vide");
    let (avc1, _) = find(&t, &format!("{m}/stbl/stsd/avc1"));
    assert_eq!(u32_at(&init, avc1 + 32), (320 << 16) | 240, "avc1 width/height");
    let (avcc, avcc_size) = find(&t, &format!("{m}/stbl/stsd/avc1/avcC"));
    let mut want = vec![1, 0x4d, 0x40, 0x1e, 0xff, 0xe1, 0, 9];
    want.extend(SPS);
    want.extend([1, 0, 4]);
    want.extend(PPS);
    assert_eq!(&init[avcc + 8..avcc + avcc_size], &want[..]);
    let (trex, _) = find(&t, "/moov/mvex/trex");
    assert_eq!(u32_at(&init, trex + 12), 1, "trex track");
    assert_eq!(u32_at(&init, trex + 16), 1, "default sample description index");
}

#[test]
fn fragments_length_prefix_drop_parameter_sets_and_chain_decode_times() {
    let key = synthetic_keyframe();
    let delta = [0, 0, 0, 1, 0x09, 0x30, 0, 0, 1, 0x41, 0x9a, 0x02];
    let mut mp4 = FragmentedMp4::new(&key, 320, 240, 0).unwrap();
    let samples = [
        Sample { data: &key, duration: 3000, keyframe: true },
        Sample { data: &delta, duration: 3003, keyframe: false },
    ];
    let f1 = mp4.fragment(&samples);
    let t = tree(&f1);
    let paths: Vec<&str> = t.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        paths,
        ["/moof", "/moof/mfhd", "/moof/traf", "/moof/traf/tfhd", "/moof/traf/tfdt", "/moof/traf/trun", "/mdat"]
    );
    let (mfhd, _) = find(&t, "/moof/mfhd");
    assert_eq!(u32_at(&f1, mfhd + 12), 1, "sequence 1");
    let (tfhd, _) = find(&t, "/moof/traf/tfhd");
    assert_eq!(u32_at(&f1, tfhd + 8), 0x0002_0000, "default-base-is-moof");
    let (tfdt, _) = find(&t, "/moof/traf/tfdt");
    assert_eq!(f1[tfdt + 8], 1);
    assert_eq!(u64_at(&f1, tfdt + 12), 0);
    let (trun, _) = find(&t, "/moof/traf/trun");
    assert_eq!(u32_at(&f1, trun + 8), 0x0000_0701);
    assert_eq!(u32_at(&f1, trun + 12), 2);
    let (mdat, mdat_size) = find(&t, "/mdat");
    assert_eq!(u32_at(&f1, trun + 16) as usize, mdat + 8, "data_offset -> mdat payload");
    let mut want = vec![0, 0, 0, 4, 0x06, 0x05, 0x01, 0x80, 0, 0, 0, 4, 0x65, 0x88, 0x84, 0x21];
    let first_len = want.len();
    want.extend([0, 0, 0, 3, 0x41, 0x9a, 0x02]);
    assert_eq!(&f1[mdat + 8..mdat + mdat_size], &want[..]);
    let entry = |i: usize| (0..3).map(|k| u32_at(&f1, trun + 20 + 12 * i + 4 * k)).collect::<Vec<_>>();
    assert_eq!(entry(0), [3000, first_len as u32, 0x0200_0000]);
    assert_eq!(entry(1), [3003, 7, 0x0101_0000]);
    assert_eq!((mp4.media_duration(), mp4.sample_count()), (6003, 2));

    let f2 = mp4.fragment(&samples[1..]);
    let t2 = tree(&f2);
    assert_eq!(u32_at(&f2, find(&t2, "/moof/mfhd").0 + 12), 2, "sequence 2");
    assert_eq!(u64_at(&f2, find(&t2, "/moof/traf/tfdt").0 + 12), 6003, "tfdt = sum so far");
    assert!(mp4.fragment(&[]).is_empty());
    assert_eq!((mp4.media_duration(), mp4.sample_count()), (9006, 3));
}

#[test]
fn live_fragments_take_sequence_and_decode_time_and_remember_nothing() {
    let key = synthetic_keyframe();
    let delta = [0, 0, 0, 1, 0x09, 0x30, 0, 0, 1, 0x41, 0x9a, 0x02];
    let samples = [
        Sample { data: &key, duration: 3000, keyframe: true },
        Sample { data: &delta, duration: 3003, keyframe: false },
    ];
    let mut reference = FragmentedMp4::new(&key, 320, 240, 0).unwrap();
    let first = reference.fragment(&samples);
    let second = reference.fragment(&samples[1..]);
    let live = FragmentedMp4::new(&key, 320, 240, 0).unwrap();
    // Same bytes as the clip writer's fragments when given the same sequence and tfdt.
    assert_eq!(live.live_fragment(1, 0, &samples), first);
    assert_eq!(live.live_fragment(2, 6003, &samples[1..]), second);
    let far = live.live_fragment(77, 90_000 * 100_000, &samples[1..]);
    let t = tree(&far);
    assert_eq!(u32_at(&far, find(&t, "/moof/mfhd").0 + 12), 77);
    assert_eq!(u64_at(&far, find(&t, "/moof/traf/tfdt").0 + 12), 90_000 * 100_000);
    assert!(live.live_fragment(3, 0, &[]).is_empty());
    assert_eq!(
        (live.media_duration(), live.sample_count(), live.bytes_written()),
        (0, 0, live.init_segment().len() as u64)
    );
}

#[test]
fn missing_parameter_sets_is_an_error() {
    let idr_only = [0, 0, 0, 1, 0x65, 0x88, 0x84];
    assert!(matches!(FragmentedMp4::new(&idr_only, 1, 1, 0), Err(Mp4Error::NoParameterSets)));
    let mut sps_only = vec![0, 0, 0, 1];
    sps_only.extend(SPS);
    assert!(matches!(FragmentedMp4::new(&sps_only, 1, 1, 0), Err(Mp4Error::NoParameterSets)));
    assert!(matches!(scan(b"\0\0\0\x10moovxxxxxxxx"), Err(Mp4Error::NotMp4)));
    assert!(matches!(duration_patches(b"garbage", &[1]), Err(Mp4Error::NotMp4 | Mp4Error::Truncated(_))));
}

#[test]
fn duration_patches_fill_every_duration_without_resizing() {
    let mp4 = FragmentedMp4::new(&synthetic_keyframe(), 320, 240, 30_000).unwrap();
    let mut init = mp4.init_segment();
    let len = init.len();
    let patches = duration_patches(&init, &[270_000]).unwrap();
    assert_eq!(patches.len(), 5);
    for (at, bytes) in &patches {
        assert_eq!(bytes.len(), 8, "64-bit fields only");
        init[*at as usize..*at as usize + 8].copy_from_slice(bytes);
    }
    assert_eq!(init.len(), len);
    let t = tree(&init);
    let presented_ms = (270_000 - 30_000) / 90; // 2666.67 ms -> rounds to 2667
    assert_eq!(presented_ms, 2666);
    assert_eq!(u64_at(&init, find(&t, "/moov/mvhd").0 + 32), 2667);
    assert_eq!(u64_at(&init, find(&t, "/moov/trak/tkhd").0 + 36), 2667);
    assert_eq!(u64_at(&init, find(&t, "/moov/trak/edts/elst").0 + 16), 2667);
    assert_eq!(u64_at(&init, find(&t, "/moov/trak/edts/elst").0 + 24), 30_000, "media_time kept");
    assert_eq!(u64_at(&init, find(&t, "/moov/trak/mdia/mdhd").0 + 32), 270_000);
    assert_eq!(u64_at(&init, find(&t, "/moov/mvex/mehd").0 + 12), 2667, "movie timescale");
    // Idempotent: the patches read nothing they write.
    assert_eq!(duration_patches(&init, &[270_000]).unwrap(), patches);
}

// ---- end to end: real H.264 from GStreamer, checked by ffprobe / ffmpeg ----

pub(super) const FRAME: u32 = 3000; // 30 fps in 90 kHz

/// 90 frames of 320x240 main-profile H.264 from x264enc, one Annex-B AU per buffer, GOP 30.
pub(super) fn encoded() -> &'static [(Vec<u8>, bool)] {
    static AUS: OnceLock<Vec<(Vec<u8>, bool)>> = OnceLock::new();
    AUS.get_or_init(|| {
        gst::init().unwrap();
        let desc = "videotestsrc num-buffers=90 ! video/x-raw,format=I420,width=320,height=240,\
            framerate=30/1 ! x264enc key-int-max=30 bframes=0 tune=zerolatency ! \
            video/x-h264,profile=main ! h264parse config-interval=-1 ! \
            video/x-h264,stream-format=byte-stream,alignment=au ! appsink name=sink sync=false";
        let pipeline = gst::parse::launch(desc).unwrap().downcast::<gst::Pipeline>().unwrap();
        let sink = pipeline.by_name("sink").unwrap().downcast::<gst_app::AppSink>().unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        let mut out = Vec::new();
        while let Ok(sample) = sink.pull_sample() {
            let buf = sample.buffer().unwrap();
            let data = buf.map_readable().unwrap().to_vec();
            let idr = nal_units(&data).iter().any(|n| nal_type(n) == 5);
            assert_eq!(idr, !buf.flags().contains(gst::BufferFlags::DELTA_UNIT));
            out.push((data, idr));
        }
        pipeline.set_state(gst::State::Null).unwrap();
        assert_eq!(out.len(), 90, "encoder produced {} AUs", out.len());
        out
    })
}

/// Init + one fragment per GOP, durations patched. Returns the file and each part's length.
fn clip(edit_media_time: u64) -> (Vec<u8>, Vec<usize>) {
    let aus = encoded();
    let mut mp4 = FragmentedMp4::new(&aus[0].0, 320, 240, edit_media_time).unwrap();
    let mut file = mp4.init_segment();
    let mut parts = vec![file.len()];
    let gops: Vec<&[(Vec<u8>, bool)]> = aus.chunk_by(|_, b| !b.1).collect();
    assert_eq!(gops.iter().map(|g| g.len()).collect::<Vec<_>>(), [30, 30, 30]);
    for gop in gops {
        let samples: Vec<Sample> = gop.iter().map(|(d, k)| Sample { data: d, duration: FRAME, keyframe: *k }).collect();
        let frag = mp4.fragment(&samples);
        parts.push(frag.len());
        file.extend(frag);
    }
    assert_eq!((mp4.sample_count(), mp4.media_duration()), (90, 90 * FRAME as u64));
    patch(&mut file, mp4.media_duration());
    (file, parts)
}

fn patch(file: &mut [u8], media_duration: u64) {
    for (at, bytes) in duration_patches(file, &[media_duration]).unwrap() {
        file[at as usize..at as usize + bytes.len()].copy_from_slice(&bytes);
    }
}

struct Probe {
    codec: String,
    pix_fmt: String,
    width: u64,
    height: u64,
    frames: u64,
    start: f64,
    duration: f64,
}

/// ffprobe's view of `bytes`, and ffmpeg's decode errors (stderr of a full decode).
fn probe(bytes: &[u8]) -> (Probe, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.mp4");
    std::fs::write(&path, bytes).unwrap();
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-show_entries"])
        .arg("format=duration,start_time:stream=codec_name,pix_fmt,width,height,nb_read_frames")
        .args(["-count_frames", "-of", "json"])
        .arg(&path)
        .output()
        .expect("ffprobe must be installed");
    assert!(out.status.success(), "ffprobe: {}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "ffprobe: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = &v["streams"][0];
    let p = Probe {
        codec: s["codec_name"].as_str().unwrap().into(),
        pix_fmt: s["pix_fmt"].as_str().unwrap().into(),
        width: s["width"].as_u64().unwrap(),
        height: s["height"].as_u64().unwrap(),
        frames: s["nb_read_frames"].as_str().unwrap().parse().unwrap(),
        start: v["format"]["start_time"].as_str().unwrap().parse().unwrap(),
        duration: v["format"]["duration"].as_str().unwrap().parse().unwrap(),
    };
    let dec = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&path)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg must be installed");
    assert!(dec.status.success());
    (p, String::from_utf8_lossy(&dec.stderr).into_owned())
}

/// ffmpeg 5.1 applies an edit list in a *fragmented* MP4 as a timestamp shift only: every
/// frame is still demuxed and decoded (nb_read_frames counts the lead-in), the stream starts at
/// `-media_time` (negative), and `format.duration` is the whole media duration summed from the
/// `trun`s (it ignores mvhd/mehd). So the presented span is [0, start + duration).
fn assert_plays(p: &Probe, errors: &str, frames: u64, lead_in_frames: u64) {
    let frame = 1.0 / 30.0;
    assert_eq!((p.codec.as_str(), p.pix_fmt.as_str()), ("h264", "yuv420p"));
    assert_eq!((p.width, p.height), (320, 240));
    assert_eq!(p.frames, frames);
    let start = -(lead_in_frames as f64) * frame;
    assert!((p.start - start).abs() < frame / 2.0, "start {} vs {start}", p.start);
    assert!((p.duration - frames as f64 * frame).abs() <= frame, "duration {}", p.duration);
    let presented = (frames - lead_in_frames) as f64 * frame;
    let end = p.start + p.duration;
    assert!((end - presented).abs() <= frame, "presented {end} vs {presented}");
    assert!(errors.is_empty(), "ffmpeg decode errors: {errors}");
}

/// mvhd.duration (ms): what header-reading players (QuickTime/Safari) show.
fn mvhd_duration_ms(file: &[u8]) -> u64 {
    let moov = u32_at(file, 0) as usize;
    assert_eq!(&file[moov + 4..moov + 8], b"moov");
    assert_eq!(&file[moov + 12..moov + 16], b"mvhd");
    u64_at(file, moov + 8 + 32)
}

#[test]
fn ffprobe_reads_untrimmed_clip() {
    let (file, _) = clip(0);
    let (p, errors) = probe(&file);
    assert_plays(&p, &errors, 90, 0);
    assert_eq!(mvhd_duration_ms(&file), 3000);
}

#[test]
fn ffprobe_applies_edit_list() {
    let (file, _) = clip(10 * FRAME as u64);
    let (p, errors) = probe(&file);
    assert_plays(&p, &errors, 90, 10);
    assert_eq!(mvhd_duration_ms(&file), 2667);
}

#[test]
fn recovery_keeps_complete_fragments_only() {
    let edit = 10 * FRAME as u64;
    let (file, parts) = clip(edit);
    let init = parts[0];
    let end2 = init + parts[1] + parts[2];
    let whole = scan(&file).unwrap();
    assert_eq!(
        whole,
        Scan {
            init_len: init as u64,
            valid_len: file.len() as u64,
            fragments: 3,
            samples: 90,
            media_duration: 90 * FRAME as u64,
            edit_media_time: edit,
            audio_samples: 0,
            finalized: false,
            pending_flips: Vec::new(),
        }
    );
    // Cut inside the last mdat, inside the last moof, and right after its size field.
    for cut in [file.len() - parts[3] / 2, end2 + 40, end2 + 4] {
        let s = scan(&file[..cut]).unwrap();
        assert_eq!((s.valid_len, s.fragments, s.samples), (end2 as u64, 2, 60), "cut at {cut}");
        assert_eq!((s.media_duration, s.edit_media_time, s.init_len), (60 * FRAME as u64, edit, init as u64));
    }
    // Garbage after fragment 2 (e.g. a torn write of zeros or stale blocks) is ignored.
    let mut garbage = file[..end2].to_vec();
    garbage.extend([0u8; 100]);
    assert_eq!(scan(&garbage).unwrap().valid_len, end2 as u64);
    garbage.truncate(end2);
    garbage.extend(b"\0\0\x01\0mdatjunk");
    assert_eq!(scan(&garbage).unwrap().valid_len, end2 as u64);

    let s = scan(&file[..file.len() - parts[3] / 2]).unwrap();
    let mut recovered = file[..s.valid_len as usize].to_vec();
    patch(&mut recovered, s.media_duration);
    let (p, errors) = probe(&recovered);
    assert_plays(&p, &errors, 60, 10);
    assert_eq!(mvhd_duration_ms(&recovered), 1667);

    // Cut inside moov, or before it: no init segment, an error.
    for cut in [init - 10, 40, 20] {
        assert!(scan(&file[..cut]).is_err(), "cut at {cut}");
    }
    let only_init = scan(&file[..init]).unwrap();
    assert_eq!((only_init.valid_len, only_init.fragments), (init as u64, 0));
}

/// The first keyframe x264enc makes of one `width`x`height` frame in `format`, with `caps` after it.
pub(crate) fn one_keyframe(format: &str, width: u32, height: u32, encoder: &str, caps: &str) -> Vec<u8> {
    gst::init().unwrap();
    let desc = format!(
        "videotestsrc num-buffers=1 ! video/x-raw,format={format},width={width},height={height},framerate=30/1 ! \
         x264enc {encoder} ! video/x-h264,{caps} ! h264parse config-interval=-1 ! \
         video/x-h264,stream-format=byte-stream,alignment=au ! appsink name=sink sync=false"
    );
    let pipeline = gst::parse::launch(&desc).unwrap().downcast::<gst::Pipeline>().unwrap();
    let sink = pipeline.by_name("sink").unwrap().downcast::<gst_app::AppSink>().unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let sample = sink.pull_sample().expect("one encoded frame");
    let data = sample.buffer().unwrap().map_readable().unwrap().to_vec();
    pipeline.set_state(gst::State::Null).unwrap();
    data
}

/// The picture size read from real SPSs: cropped sizes (272 and 1080 are not multiples of 16),
/// odd crops, high profiles with their chroma fields, 4:4:4 and 4:2:2 crop units, interlaced
/// (field) coding, and scaling matrices. The MP4 track takes it from the SPS, not from the
/// caller, so a clip's header matches its stream even when the camera changed size.
#[test]
fn sps_dimensions_of_real_streams() {
    let cases = [
        ("I420", 320, 240, "", "profile=main"),
        ("I420", 480, 272, "", "profile=high"),
        ("I420", 1920, 1080, "speed-preset=ultrafast", "profile=high"),
        ("I420", 642, 362, "", "profile=constrained-baseline"),
        ("Y444", 330, 250, "", "profile=high-4:4:4"),
        ("Y42B", 326, 246, "", "profile=high-4:2:2"),
        ("I420", 720, 576, "interlaced=true", "profile=high"),
        ("I420", 352, 290, "option-string=\"cqm=jvt\"", "profile=high"),
    ];
    for (format, w, h, encoder, caps) in cases {
        let key = one_keyframe(format, w, h, encoder, caps);
        assert_eq!(h264::dimensions(&key), Some((w, h)), "{format} {w}x{h} {encoder} {caps}");
        let mp4 = FragmentedMp4::new(&key, 1, 1, 0).unwrap();
        assert_eq!((mp4.width, mp4.height), (w, h), "the track takes the SPS's size");
    }
    // A keyframe of another size has other parameter sets; the same size, the same ones.
    let a = one_keyframe("I420", 320, 240, "", "profile=main");
    let b = one_keyframe("I420", 480, 272, "", "profile=main");
    assert!(h264::same_parameter_sets(&a, &a));
    assert!(!h264::same_parameter_sets(&a, &b));
    assert!(h264::same_parameter_sets(&a, &encoded()[1].0), "a P frame carries none: it continues");
    // Truncated or garbled SPSs give no size rather than a wrong one or a panic.
    let sps = nal_units(&a).into_iter().find(|n| nal_type(n) == 7).unwrap().to_vec();
    for cut in 0..sps.len() - 1 {
        let mut au = vec![0, 0, 0, 1];
        au.extend_from_slice(&sps[..cut]);
        assert!(h264::dimensions(&au).is_none_or(|d| d == (320, 240)), "cut at {cut}");
    }
    let mut au = vec![0, 0, 0, 1, 0x67, 100, 0, 40];
    au.extend([0u8; 40]);
    assert_eq!(h264::dimensions(&au), None, "an exp-Golomb code longer than 32 bits");
}
