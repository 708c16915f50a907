//! Tests of [`AvFragments`]' sound durations: a gap inside the file stays a gap, a step back in
//! the capture times never pushes the rest of the track late, and the file's last frame lasts up
//! to the file's end when the sound goes on after it, else its own duration (a phone's sound is dated through an offset that moves by tens
//! of milliseconds either way as its chunks arrive early or late). Owns no production code;
//! writes nothing.

use super::super::tests::encoded;
use super::*;
use crate::frame::AudioFormat;

const AAC_FRAME: Duration = Duration::from_micros(21_333);

fn keyframe() -> EncodedFrame {
    let (data, key) = &encoded()[0];
    assert!(*key);
    EncodedFrame {
        data: bytes::Bytes::from(data.clone()),
        pts: Duration::ZERO,
        dts: Duration::ZERO,
        duration: Duration::from_millis(33),
        keyframe: true,
        seq: 0,
    }
}

/// AAC-LC, 48 kHz, mono (AudioSpecificConfig): only the durations are looked at here, so the
/// frames need no encoder (the emulated arm64 run has none).
const CONFIG: [u8; 2] = [0x11, 0x88];

/// AAC frames (placeholder payloads) at the given capture times (µs).
fn sound(at_us: &[u64]) -> Vec<AudioFrame> {
    let format = AudioFormat { config: bytes::Bytes::from_static(&CONFIG), rate: 48_000, channels: 1 };
    at_us
        .iter()
        .map(|us| AudioFrame {
            data: bytes::Bytes::from_static(&[0x21, 0x00]),
            pts: Duration::from_micros(*us),
            duration: AAC_FRAME,
            format: format.clone(),
        })
        .collect()
}

#[test]
fn a_gap_in_the_sound_stays_a_gap_up_to_the_files_end() {
    // 0, 21, 42 ms, then a jump of 60 ms (to 102), then 123 ms — past the end at 110 ms.
    let mut audio = sound(&[0, 21_000, 42_000, 102_000, 123_000]);
    let mut av = AvFragments::start(&keyframe(), Duration::ZERO, 320, 240, &mut audio).unwrap();
    assert!(av.has_sound());

    // A middle fragment ending at 60 ms: frames up to 42 ms, the last lasting up to its successor.
    let mut middle = audio.clone();
    let taken = av.take_sound(&mut middle, Duration::from_millis(60), false);
    let durations: Vec<u32> = taken.iter().map(|(_, d)| *d).collect();
    assert_eq!(durations, vec![1008, 1008, 2880], "the gap 42 → 102 ms stays in the track");

    // The file's last fragment, ending at 110 ms: the frame at 102 ms is its last; the one at
    // 123 ms is not written, and the 102 ms frame lasts 1024 samples, not up to it.
    let mut end = audio.clone();
    let mut av = AvFragments::start(&keyframe(), Duration::ZERO, 320, 240, &mut audio.clone()).unwrap();
    let taken = av.take_sound(&mut end, Duration::from_millis(110), true);
    let durations: Vec<u32> = taken.iter().map(|(_, d)| *d).collect();
    assert_eq!(durations, vec![1008, 1008, 2880, 1024]);
    assert_eq!(end.len(), 1, "the frame after the end stays for whoever reads on");

    // A gap at the file's end stays a gap: the sound resumes after the end (at 123 ms), so the
    // last frame (42 ms) lasts up to the end at 100 ms.
    let mut gap = sound(&[0, 21_000, 42_000, 123_000]);
    let mut av = AvFragments::start(&keyframe(), Duration::ZERO, 320, 240, &mut gap).unwrap();
    let taken = av.take_sound(&mut gap, Duration::from_millis(100), true);
    assert_eq!(taken.iter().map(|(_, d)| *d).collect::<Vec<_>>(), vec![1008, 1008, 2784]);

    // Without a successor at all (the microphone stopped), the last frame lasts its own.
    let mut alone = sound(&[0, 21_000]);
    let mut av = AvFragments::start(&keyframe(), Duration::ZERO, 320, 240, &mut alone).unwrap();
    let taken = av.take_sound(&mut alone, Duration::from_millis(110), true);
    assert_eq!(taken.iter().map(|(_, d)| *d).collect::<Vec<_>>(), vec![1008, 1024]);
}

#[test]
fn a_step_back_in_the_capture_times_never_pushes_the_rest_of_the_sound_late() {
    // The second frame is dated 1.3 ms before the first one ends, the third before the second
    // (an offset that moved back): the fourth must still play at its own capture time.
    let mut audio = sound(&[0, 20_000, 19_000, 64_000, 85_333]);
    let mut av = AvFragments::start(&keyframe(), Duration::ZERO, 320, 240, &mut audio).unwrap();
    let first = av.take_sound(&mut audio, Duration::from_millis(30), false);
    let rest = av.take_sound(&mut audio, Duration::from_millis(200), true);
    let durations: Vec<u32> = first.iter().chain(&rest).map(|(_, d)| *d).collect();
    assert_eq!(durations.len(), 5);
    assert!(durations.iter().all(|d| *d >= 1));
    let at_fourth: u32 = durations[..3].iter().sum();
    assert_eq!(at_fourth, 3072, "the frame captured at 64 ms starts at sample 3072: {durations:?}");
    assert_eq!(durations[3], 1024);
    assert_eq!(durations[4], 1024);
}
