//! Tests of [`FileView`]: the readers see the same file through it as through the whole bytes
//! (every cut, every stage of finalization, garbage tails), while it loads only headers and
//! small boxes of a sparse multi-GiB file; absurd sizes and sample counts are corrupt, not
//! allocated. Owns no production code; must never write outside a temp dir.

use super::tests::{synthetic_keyframe, tree};
use super::*;
use std::io::{Cursor, Seek, SeekFrom, Write};

/// A fragmented file of `gops` GOPs of 10 synthetic AUs, and its writer.
fn fragmented(gops: usize) -> (FragmentedMp4, Vec<u8>) {
    let key = synthetic_keyframe();
    let delta = [0, 0, 0, 1, 0x41, 0x9a, 0x02];
    let mut w = FragmentedMp4::new(&key, 320, 240, 3 * 3000).unwrap();
    let mut file = w.init_segment();
    for _ in 0..gops {
        let gop: Vec<Sample> = (0..10)
            .map(|i| Sample { data: if i == 0 { &key } else { &delta }, duration: 3000, keyframe: i == 0 })
            .collect();
        file.extend(w.fragment(&gop));
    }
    (w, file)
}

fn view(bytes: &[u8]) -> FileView {
    FileView::read(&mut Cursor::new(bytes)).unwrap()
}

/// `scan` and `finalize_from_file` (after truncating to `valid_len`) agree on the bytes and on
/// a view of them.
fn same(bytes: &[u8], what: &str) {
    let mut v = view(bytes);
    let (whole, seen) = (scan(bytes), scan(&v));
    assert_eq!(format!("{whole:?}"), format!("{seen:?}"), "{what}");
    if let Ok(s) = whole {
        v.truncate(s.valid_len);
        let whole = finalize_from_file(&bytes[..s.valid_len as usize]);
        assert_eq!(format!("{whole:?}"), format!("{:?}", finalize_from_file(&v)), "{what}: plan");
        if s.valid_len < bytes.len() as u64 {
            assert!(finalize_from_file(&view(bytes)).is_err(), "{what}: not truncated");
        }
    }
}

#[test]
fn a_view_reads_like_the_whole_file() {
    let (w, file) = fragmented(3);
    for cut in 0..=file.len() {
        same(&file[..cut], &format!("cut at {cut}"));
    }
    let plan = w.finalize();
    for flips in 0..=plan.flips.len() {
        let mut f = file.clone();
        f.extend(&plan.moov);
        for &at in plan.flips.iter().take(flips) {
            f[at as usize..at as usize + 4].copy_from_slice(b"free");
        }
        same(&f, &format!("finalized, {flips} flips done"));
        // A torn append of the moov, and one never written (zeros).
        let mut torn = file.clone();
        torn.extend(&plan.moov[..plan.moov.len() - 3]);
        same(&torn, "torn moov");
        torn.resize(file.len() + plan.moov.len(), 0);
        same(&torn, "zeroed moov");
    }
    for tail in [&[0u8; 100][..], b"\0\0\x01\0mdatjunk", b"\0\0\0\x10moovxxxxxxxx", b"\0\0\0\x08free\0\0\0\x09moof"] {
        let mut f = file.clone();
        f.extend(tail);
        same(&f, &format!("garbage tail {tail:?}"));
    }
    same(b"\0\0\0\x10moovxxxxxxxx", "no ftyp");
}

/// `bytes` at the start of a sparse file of `len` bytes (holes read as zeros, cost no disk).
fn sparse(dir: &std::path::Path, name: &str, bytes: &[u8], len: u64) -> std::fs::File {
    let path = dir.join(name);
    let mut f = std::fs::OpenOptions::new().create(true).truncate(true).read(true).write(true).open(path).unwrap();
    f.write_all(bytes).unwrap();
    f.set_len(len).unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    f
}

const GIB4: u64 = 4 << 30;

#[test]
fn a_4_gib_file_loads_only_headers_and_small_boxes() {
    let dir = tempfile::tempdir().unwrap();
    let (w, file) = fragmented(2);
    // A torn clip: 4 GiB of zeros after the fragments.
    let mut f = sparse(dir.path(), "zeros.mp4.part", &file, GIB4);
    let v = FileView::read(&mut f).unwrap();
    assert!(v.loaded() < 64 << 10, "loaded {} bytes", v.loaded());
    let s = scan(&v).unwrap();
    assert_eq!((s.valid_len, s.fragments, s.samples, s.finalized), (file.len() as u64, 2, 20, false));

    // A 4 GiB mdat after them (64-bit size): its header is read, its payload is not.
    let mut big = file.clone();
    big.extend(1u32.to_be_bytes());
    big.extend(b"mdat");
    big.extend((GIB4 - file.len() as u64).to_be_bytes());
    let mut f = sparse(dir.path(), "mdat.mp4", &big, GIB4);
    let v = FileView::read(&mut f).unwrap();
    assert!(v.loaded() < 64 << 10, "loaded {} bytes", v.loaded());
    assert_eq!(scan(&v).unwrap().valid_len, file.len() as u64);

    // A trailing "moov" claiming 4 GiB - more than any clip's: not loaded, a torn tail.
    let mut claim = file.clone();
    claim.extend(1u32.to_be_bytes());
    claim.extend(b"moov");
    claim.extend((GIB4 - file.len() as u64).to_be_bytes());
    let mut f = sparse(dir.path(), "moov.mp4", &claim, GIB4);
    let v = FileView::read(&mut f).unwrap();
    assert!(v.loaded() < 64 << 10, "loaded {} bytes", v.loaded());
    let s = scan(&v).unwrap();
    assert_eq!((s.valid_len, s.finalized), (file.len() as u64, false));

    // An init moov claiming more than MAX_MOOV: the file is corrupt.
    let init = w.init_segment();
    let ftyp = u32::from_be_bytes(init[..4].try_into().unwrap()) as usize;
    let mut huge = init[..ftyp].to_vec();
    huge.extend(1u32.to_be_bytes());
    huge.extend(b"moov");
    huge.extend((MAX_MOOV + 1).to_be_bytes());
    huge.extend(&init[ftyp + 8..]);
    let mut f = sparse(dir.path(), "init.mp4", &huge, GIB4);
    let v = FileView::read(&mut f).unwrap();
    assert!(v.loaded() < 64 << 10, "loaded {} bytes", v.loaded());
    assert!(scan(&v).is_err());
}

#[test]
fn a_trun_claiming_more_samples_than_a_clip_holds_is_a_torn_tail() {
    let (_, mut file) = fragmented(3);
    // The third fragment's trun: no per-sample fields (data offset only), and more samples
    // (of the trex default size 0) than an hour at 240 fps.
    let t = tree(&file);
    let moofs: Vec<usize> = t.iter().filter(|e| e.0 == "/moof").map(|e| e.1).collect();
    let (trun, _) = t.iter().filter(|e| e.0 == "/moof/traf/trun" && e.1 > moofs[2]).map(|e| (e.1, e.2)).next().unwrap();
    file[trun + 8..trun + 12].copy_from_slice(&0x0000_0001u32.to_be_bytes());
    file[trun + 12..trun + 16].copy_from_slice(&((1u32 << 20) + 1).to_be_bytes());
    let s = scan(&file).unwrap();
    assert_eq!((s.fragments, s.samples), (2, 20), "the third fragment is not taken");
    assert_eq!(format!("{s:?}"), format!("{:?}", scan(&view(&file)).unwrap()));
}
