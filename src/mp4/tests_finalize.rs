//! Tests of finalization (fragmented → regular MP4 in place): the regular `moov`'s tables, the
//! plan rebuilt from a file, crashes during either step, and real x264 clips checked with
//! ffprobe/ffmpeg (the lead-in must not be presented or decoded to output). Owns no
//! production code; must never write outside a temp dir.

use super::tests::{encoded, find, tree, u32_at, u64_at, FRAME};
use super::*;

/// Init + one fragment per GOP (`gops` of the 3 encoded GOPs), nothing patched: what the
/// recorder has on disk when it finishes. Returns the writer too (for its plan).
fn fragmented(edit_media_time: u64, gops: usize) -> (FragmentedMp4, Vec<u8>) {
    let aus = encoded();
    let mut mp4 = FragmentedMp4::new(&aus[0].0, 320, 240, edit_media_time).unwrap();
    let mut file = mp4.init_segment();
    for gop in aus.chunk_by(|_, b| !b.1).take(gops) {
        let samples: Vec<Sample> = gop.iter().map(|(d, k)| Sample { data: d, duration: FRAME, keyframe: *k }).collect();
        file.extend(mp4.fragment(&samples));
    }
    assert_eq!(mp4.bytes_written(), file.len() as u64);
    (mp4, file)
}

/// `apply_finalize` on a real file holding `bytes`; returns the resulting bytes.
fn apply_on_disk(bytes: &[u8], plan: &Finalize) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.mp4");
    std::fs::write(&path, bytes).unwrap();
    let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let size = apply_finalize(&mut f, plan).unwrap();
    drop(f);
    let out = std::fs::read(&path).unwrap();
    assert_eq!(size, out.len() as u64);
    out
}

/// The same, in memory; `flips` limits how many flips are done (a crash during step 2).
fn apply_in_memory(bytes: &mut Vec<u8>, plan: &Finalize, flips: usize) {
    bytes.extend(&plan.moov);
    for &at in plan.flips.iter().take(flips) {
        bytes[at as usize..at as usize + 4].copy_from_slice(b"free");
    }
}

fn top_level(file: &[u8]) -> Vec<String> {
    tree(file).into_iter().filter(|e| e.0.matches('/').count() == 1).map(|e| e.0[1..].to_string()).collect()
}

/// The entries of a full box of (count, entries of `n` u32) at `path` inside the trailing moov.
fn table(file: &[u8], t: &[(String, usize, usize)], path: &str, skip: usize, n: usize) -> Vec<Vec<u64>> {
    let (at, size) = find(t, path);
    let count = u32_at(file, at + 12 + skip) as usize;
    assert_eq!(size, 16 + skip + count * n * 4, "{path} size");
    (0..count).map(|i| (0..n).map(|k| u64::from(u32_at(file, at + 16 + skip + 4 * (i * n + k)))).collect()).collect()
}

#[test]
fn regular_moov_tables_and_in_place_layout() {
    let edit = 10 * FRAME as u64;
    let (mp4, file) = fragmented(edit, 3);
    let plan = mp4.finalize();
    assert_eq!(finalize_from_file(&file).unwrap().as_ref(), Some(&plan), "plan rebuilt from the file");
    let done = apply_on_disk(&file, &plan);
    assert_eq!(done.len(), file.len() + plan.moov.len());
    assert_eq!(top_level(&done), ["ftyp", "free", "free", "mdat", "free", "mdat", "free", "mdat", "moov"]);
    // Only the 4-byte types changed in the fragmented part.
    let changed: Vec<usize> = (0..file.len()).filter(|&i| file[i] != done[i]).collect();
    assert_eq!(changed.len(), 4 * 4);
    // Write amplification: appended moov + flips, relative to the clip.
    assert!((plan.moov.len() + 4 * plan.flips.len()) * 10 < file.len(), "moov {} bytes", plan.moov.len());

    let t: Vec<_> = tree(&done).into_iter().filter(|e| e.1 >= file.len()).collect();
    let paths: Vec<&str> = t.iter().map(|e| e.0.as_str()).collect();
    let s = "/moov/trak/mdia/minf/stbl";
    assert!(!paths.iter().any(|p| p.contains("mvex")));
    assert_eq!(
        &paths[paths.len() - 8..],
        [
            &format!("{s}/stsd")[..],
            &format!("{s}/stsd/avc1"),
            &format!("{s}/stsd/avc1/avcC"),
            &format!("{s}/stts"),
            &format!("{s}/stss"),
            &format!("{s}/stsc"),
            &format!("{s}/stsz"),
            &format!("{s}/stco"),
        ]
    );
    assert_eq!(u64_at(&done, find(&t, "/moov/mvhd").0 + 32), 2667, "presented ms");
    assert_eq!(u64_at(&done, find(&t, "/moov/trak/tkhd").0 + 36), 2667);
    let elst = find(&t, "/moov/trak/edts/elst").0;
    assert_eq!((u64_at(&done, elst + 16), u64_at(&done, elst + 24)), (2667, edit));
    assert_eq!(u64_at(&done, find(&t, "/moov/trak/mdia/mdhd").0 + 32), 90 * FRAME as u64);
    assert_eq!(table(&done, &t, &format!("{s}/stts"), 0, 2), [vec![90, FRAME as u64]]);
    assert_eq!(table(&done, &t, &format!("{s}/stss"), 0, 1), [vec![1], vec![31], vec![61]]);
    assert_eq!(table(&done, &t, &format!("{s}/stsc"), 0, 3), [vec![1, 30, 1]]);
    let sizes = table(&done, &t, &format!("{s}/stsz"), 4, 1);
    assert_eq!(sizes.len(), 90);
    // Each chunk offset is its mdat's payload, and the chunk's sizes fill that mdat exactly.
    let mdats: Vec<(usize, usize)> = tree(&done).into_iter().filter(|e| e.0 == "/mdat").map(|e| (e.1, e.2)).collect();
    let stco = table(&done, &t, &format!("{s}/stco"), 0, 1);
    assert_eq!(stco.len(), 3);
    for (k, ((at, size), off)) in mdats.iter().zip(&stco).enumerate() {
        assert_eq!(off[0] as usize, at + 8, "chunk {k}");
        let bytes: u64 = sizes[30 * k..30 * (k + 1)].iter().map(|v| v[0]).sum();
        assert_eq!(bytes as usize, size - 8, "chunk {k} sizes");
        assert!(u64::from(u32_at(&done, at + 8)) + 4 <= sizes[30 * k][0], "first NAL inside sample {k}");
    }
    // Same stsd as the init segment.
    let init = tree(&file);
    let (a, n) = find(&init, &format!("{s}/stsd"));
    let (b, m) = find(&t, &format!("{s}/stsd"));
    assert_eq!(&file[a..a + n], &done[b..b + m]);

    let sc = scan(&done).unwrap();
    assert!(sc.finalized && sc.pending_flips.is_empty());
    assert_eq!((sc.valid_len, sc.fragments, sc.samples), (done.len() as u64, 3, 90));
    assert_eq!((sc.media_duration, sc.edit_media_time), (90 * FRAME as u64, edit));
    assert_eq!(finalize_from_file(&done).unwrap(), None, "nothing left to do");
}

/// What ffprobe and ffmpeg make of a file.
#[derive(Debug)]
struct Played {
    format_duration: f64,
    format_start: f64,
    stream_start: f64,
    nb_read_frames: u64,
    /// Frames ffmpeg decodes to rawvideo output.
    output_frames: usize,
    /// stderr of `ffmpeg -v error -i F -f null -`.
    errors: String,
}

fn play(bytes: &[u8]) -> Played {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.mp4");
    std::fs::write(&path, bytes).unwrap();
    let run = |cmd: &str, args: &[&str]| {
        let out = std::process::Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("{cmd}: {e}"));
        assert!(out.status.success(), "{cmd}: {}", String::from_utf8_lossy(&out.stderr));
        out
    };
    let p = path.to_str().unwrap();
    let probe = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-count_frames",
            "-of",
            "json",
            "-show_entries",
            "format=duration,start_time:stream=start_time,nb_read_frames",
            p,
        ],
    );
    assert!(probe.stderr.is_empty(), "ffprobe: {}", String::from_utf8_lossy(&probe.stderr));
    let v: serde_json::Value = serde_json::from_slice(&probe.stdout).unwrap();
    let num = |v: &serde_json::Value| -> f64 { v.as_str().unwrap_or_else(|| panic!("{v}")).parse().unwrap() };
    let raw = run("ffmpeg", &["-v", "error", "-i", p, "-f", "rawvideo", "-pix_fmt", "gray", "-"]);
    assert!(raw.stdout.len() % (320 * 240) == 0);
    let null = run("ffmpeg", &["-v", "error", "-i", p, "-f", "null", "-"]);
    Played {
        format_duration: num(&v["format"]["duration"]),
        format_start: num(&v["format"]["start_time"]),
        stream_start: num(&v["streams"][0]["start_time"]),
        nb_read_frames: num(&v["streams"][0]["nb_read_frames"]) as u64,
        output_frames: raw.stdout.len() / (320 * 240),
        errors: String::from_utf8_lossy(&null.stderr).into_owned() + &String::from_utf8_lossy(&raw.stderr),
    }
}

/// Presents exactly `frames` frames from time 0: duration, start, decoded output, no errors.
fn assert_presents(p: &Played, frames: usize) {
    let frame = 1.0 / 30.0;
    assert!((p.format_duration - frames as f64 * frame).abs() <= frame, "{p:?}");
    assert!(p.format_start >= 0.0 && p.format_start < frame / 2.0, "{p:?}");
    assert!(p.stream_start >= 0.0 && p.stream_start < frame / 2.0, "{p:?}");
    assert_eq!(p.output_frames, frames, "{p:?}");
    assert_eq!(p.nb_read_frames, frames as u64, "{p:?}");
    assert!(p.errors.is_empty(), "{p:?}");
}

#[test]
fn ffmpeg_presents_finalized_clip_from_the_edit() {
    let (mp4, file) = fragmented(10 * FRAME as u64, 3);
    let done = apply_on_disk(&file, &mp4.finalize());
    let p = play(&done);
    eprintln!("trimmed: {p:?}");
    assert_presents(&p, 80);
}

#[test]
fn ffmpeg_presents_untrimmed_finalized_clip() {
    let (mp4, file) = fragmented(0, 3);
    let p = play(&apply_on_disk(&file, &mp4.finalize()));
    eprintln!("untrimmed: {p:?}");
    assert_presents(&p, 90);
}

#[test]
fn crash_during_flips_is_completed_idempotently() {
    let (mp4, file) = fragmented(10 * FRAME as u64, 3);
    let plan = mp4.finalize();
    let mut clean = file.clone();
    apply_in_memory(&mut clean, &plan, usize::MAX);
    for done in 0..=plan.flips.len() {
        let mut crashed = file.clone();
        apply_in_memory(&mut crashed, &plan, done);
        let s = scan(&crashed).unwrap();
        assert!(s.finalized, "{done} flips done");
        assert_eq!(s.pending_flips, plan.flips[done..], "{done} flips done");
        assert_eq!((s.valid_len, s.fragments, s.samples), (clean.len() as u64, 3, 90));
        let rest = finalize_from_file(&crashed).unwrap();
        assert_eq!(
            rest.as_ref().map(|r| (r.moov.is_empty(), &r.flips[..])),
            (done < plan.flips.len()).then_some((true, &plan.flips[done..]))
        );
        if let Some(rest) = rest {
            crashed = apply_on_disk(&crashed, &rest);
        }
        assert!(crashed == clean, "{done} flips done, then completed");
    }
}

#[test]
fn crash_during_moov_append_is_a_torn_tail() {
    let (mp4, file) = fragmented(10 * FRAME as u64, 3);
    let plan = mp4.finalize();
    let half = plan.moov.len() / 2;
    // Cut short, or the full length with the second half never written (zeros).
    let mut cut = file.clone();
    cut.extend(&plan.moov[..half]);
    let mut zeros = cut.clone();
    zeros.resize(file.len() + plan.moov.len(), 0);
    for torn in [cut, zeros] {
        let s = scan(&torn).unwrap();
        assert!(!s.finalized && s.pending_flips.is_empty());
        assert_eq!((s.valid_len, s.fragments), (file.len() as u64, 3));
        assert!(finalize_from_file(&torn).is_err(), "must be truncated first");
        assert_eq!(finalize_from_file(&torn[..s.valid_len as usize]).unwrap(), Some(plan.clone()));
    }
}

#[test]
fn recovered_truncated_clip_is_finalized() {
    let edit = 10 * FRAME as u64;
    let (_, file) = fragmented(edit, 3);
    let (two, two_file) = fragmented(edit, 2);
    let cut = &file[..two_file.len() + (file.len() - two_file.len()) / 2]; // inside the 3rd mdat
    let s = scan(cut).unwrap();
    assert!(!s.finalized);
    assert_eq!((s.valid_len, s.fragments, s.samples), (two_file.len() as u64, 2, 60));
    let plan = finalize_from_file(&cut[..s.valid_len as usize]).unwrap().unwrap();
    assert_eq!(plan, two.finalize(), "same plan as a writer that stopped there");
    let done = apply_on_disk(&cut[..s.valid_len as usize], &plan);
    let p = play(&done);
    eprintln!("recovered: {p:?}");
    assert_presents(&p, 50);
    assert!(finalize_from_file(&file[..two_file.len() - 1]).is_err(), "torn tail not truncated");
    let init = mp4_init_len(&file);
    assert_eq!(finalize_from_file(&file[..init]).unwrap(), None, "no fragment");
}

fn mp4_init_len(file: &[u8]) -> usize {
    let ftyp = u32_at(file, 0) as usize;
    ftyp + u32_at(file, ftyp) as usize
}
