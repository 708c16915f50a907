//! Property ("fuzz") tests of MP4 box parsing as start-up recovery and uploads meet it: any
//! bytes, and real fragmented clips cut anywhere, with bytes flipped, box sizes rewritten or junk
//! boxes spliced in. [`scan`], [`finalize_from_file`] and [`FileView`] never panic, a scan keeps
//! at most the file, and the view (headers and small boxes read with seeks) always reads like the
//! whole bytes. Owns no production code.

use super::tests::synthetic_keyframe;
use super::*;
use proptest::prelude::*;
use std::io::Cursor;

const CASES: u32 = 256;

/// A fragmented clip of `gops` GOPs of 5 synthetic AUs, optionally finalized (moov appended,
/// the init moov flipped to `free`).
fn clip(gops: usize, finalized: bool) -> Vec<u8> {
    let key = synthetic_keyframe();
    let delta = [0, 0, 0, 1, 0x41, 0x9a, 0x02];
    let mut w = FragmentedMp4::new(&key, 320, 240, 3000).expect("a writer");
    let mut file = w.init_segment();
    for _ in 0..gops {
        let gop: Vec<Sample> = (0..5)
            .map(|i| Sample { data: if i == 0 { &key } else { &delta }, duration: 3000, keyframe: i == 0 })
            .collect();
        file.extend(w.fragment(&gop));
    }
    if finalized {
        let plan = w.finalize();
        file.extend(&plan.moov);
        for &at in &plan.flips {
            file[at as usize..at as usize + 4].copy_from_slice(b"free");
        }
    }
    file
}

/// How to damage a file.
#[derive(Debug, Clone)]
enum Damage {
    Cut(usize),
    Flip(usize, u8),
    /// Rewrite a 32-bit big-endian word (a box size, a count, an offset).
    Word(usize, u32),
    /// Splice a box header of any size and type at a position.
    Splice(usize, u32, [u8; 4]),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        any::<usize>().prop_map(Damage::Cut),
        (any::<usize>(), any::<u8>()).prop_map(|(a, b)| Damage::Flip(a, b)),
        (any::<usize>(), prop_oneof![Just(0u32), Just(1), Just(7), Just(8), Just(u32::MAX), any::<u32>()])
            .prop_map(|(a, w)| Damage::Word(a, w)),
        (
            any::<usize>(),
            any::<u32>(),
            prop_oneof![Just(*b"moov"), Just(*b"moof"), Just(*b"mdat"), Just(*b"trun"), any::<[u8; 4]>()]
        )
            .prop_map(|(a, s, t)| Damage::Splice(a, s, t)),
    ]
}

fn apply(file: &mut Vec<u8>, d: &Damage) {
    let n = file.len().max(1);
    match *d {
        Damage::Cut(at) => file.truncate(at % n),
        Damage::Flip(at, x) => {
            if let Some(b) = file.get_mut(at % n) {
                *b ^= x | 1;
            }
        }
        Damage::Word(at, w) => {
            let at = at % n;
            if at + 4 <= file.len() {
                file[at..at + 4].copy_from_slice(&w.to_be_bytes());
            }
        }
        Damage::Splice(at, size, typ) => {
            let at = (at % n).min(file.len());
            let mut h = size.to_be_bytes().to_vec();
            h.extend(typ);
            file.splice(at..at, h);
        }
    }
}

/// The readers on `bytes` and on a [`FileView`] of them: no panic, the same answers, and a
/// scan that keeps at most the file.
fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
    let whole = scan(bytes);
    if let Ok(s) = &whole {
        prop_assert!(s.init_len <= s.valid_len && s.valid_len <= bytes.len() as u64, "{s:?} of {}", bytes.len());
    }
    let _ = finalize_from_file(bytes);
    match FileView::read(&mut Cursor::new(bytes)) {
        Ok(mut v) => {
            prop_assert!(v.loaded() <= bytes.len());
            let seen = scan(&v);
            prop_assert_eq!(format!("{whole:?}"), format!("{seen:?}"));
            if let Ok(s) = whole {
                v.truncate(s.valid_len);
                let plan = finalize_from_file(&bytes[..s.valid_len as usize]);
                prop_assert_eq!(format!("{plan:?}"), format!("{:?}", finalize_from_file(&v)));
            }
        }
        Err(e) => prop_assert!(whole.is_err(), "the view failed ({e}) where the bytes scanned"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        check(&bytes)?;
    }

    #[test]
    fn damaged_clips(gops in 0usize..4, finalized in any::<bool>(), damages in prop::collection::vec(damage(), 1..4)) {
        let mut file = clip(gops, finalized);
        for d in &damages {
            apply(&mut file, d);
        }
        check(&file)?;
    }
}
