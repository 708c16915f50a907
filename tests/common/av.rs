//! Sound and picture read back from a clip with ffmpeg: the streams ffprobe sees, the media
//! times of the test pattern's flashes and of the test sound's beeps (A/V sync checks).

use std::path::Path;

/// Samples per second the beeps are decoded at.
const RATE: usize = 48_000;

/// The streams ffprobe sees: (codec_type, codec_name, start_time, duration).
pub fn streams(path: &Path) -> Vec<(String, String, f64, f64)> {
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-of", "json", "-show_entries", "stream=codec_type,codec_name,start_time,duration"])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    assert!(out.status.success() && out.stderr.is_empty(), "ffprobe: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let num = |s: &serde_json::Value, k: &str| s[k].as_str().and_then(|x| x.parse().ok()).unwrap_or(f64::NAN);
    v["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let text = |k: &str| s[k].as_str().unwrap_or_default().to_string();
            (text("codec_type"), text("codec_name"), num(s, "start_time"), num(s, "duration"))
        })
        .collect()
}

pub fn ffmpeg(path: &Path, args: &[&str]) -> Vec<u8> {
    let out = std::process::Command::new("ffmpeg").args(["-v", "error", "-i"]).arg(path).args(args).output().unwrap();
    assert!(out.status.success() && out.stderr.is_empty(), "ffmpeg: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// Media times (s) of the frames (`w`×`h`) whose bottom eighth is white (the flashes), by their
/// timestamps (a frame the encoder dropped under load leaves a gap, not a shift); at least
/// `min_frames` frames.
pub fn flashes(path: &Path, w: usize, h: usize, min_frames: usize) -> Vec<f64> {
    let gray = ffmpeg(
        path,
        &["-map", "0:v", "-fps_mode", "passthrough", "-enc_time_base", "-1", "-f", "rawvideo", "-pix_fmt", "gray", "-"],
    );
    let frames: Vec<&[u8]> = gray.chunks_exact(w * h).collect();
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v", "-show_entries", "frame=pts_time", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    let times: Vec<f64> = String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.trim().parse().ok()).collect();
    assert!(
        frames.len() >= min_frames && times.len() == frames.len(),
        "{} frames, {} times",
        frames.len(),
        times.len()
    );
    frames
        .iter()
        .zip(times)
        .filter(|(f, _)| {
            let bottom = &f[w * (h - h / 8)..];
            bottom.iter().map(|&v| u64::from(v)).sum::<u64>() / bottom.len() as u64 > 200
        })
        .map(|(_, t)| t)
        .collect()
}

/// Media times (s) where a beep starts: loud after at least 300 ms of quiet.
pub fn beeps(path: &Path) -> Vec<f64> {
    let pcm = ffmpeg(path, &["-map", "0:a", "-f", "s16le", "-ac", "1", "-ar", "48000", "-"]);
    let mut out = Vec::new();
    let mut quiet = usize::MAX / 2;
    for (i, s) in pcm.chunks_exact(2).enumerate() {
        let v = i16::from_le_bytes([s[0], s[1]]).unsigned_abs();
        if v > 3000 {
            if quiet > RATE * 3 / 10 {
                out.push(i as f64 / RATE as f64);
            }
            quiet = 0;
        } else {
            quiet += 1;
        }
    }
    out
}
