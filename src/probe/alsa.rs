//! ALSA capture devices for `hindsight probe`, read from `/proc/asound` (no ALSA library, no
//! device opened): every PCM with a capture side, its stable name (`plughw:CARD=id,DEV=n`),
//! and for USB microphones the rates, channels and sample formats the device declares (its
//! `stream` file). I2S and other on-board devices declare those only while open: left empty.

use serde::Serialize;
use std::path::Path;

/// One ALSA capture PCM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaptureDevice {
    /// `hw:CARD,DEV` by numbers (numbers can change between boots when USB devices are added).
    pub device: String,
    /// The same by the card's id, which stays: use this in the config (`plughw` converts
    /// rates and formats the hardware lacks).
    pub stable: String,
    /// The card's name and the PCM's name.
    pub card: String,
    pub name: String,
    /// Rates (Hz), channel counts and sample formats declared (USB devices only).
    pub rates: Vec<u32>,
    pub channels: Vec<u16>,
    pub formats: Vec<String>,
}

/// The capture PCMs under `root` (`/proc/asound` on a real machine); none when it is absent
/// (no sound support in the kernel).
pub fn capture_devices(root: &Path) -> Vec<CaptureDevice> {
    let Ok(pcm) = std::fs::read_to_string(root.join("pcm")) else { return Vec::new() };
    let mut out = Vec::new();
    for line in pcm.lines() {
        // "01-00: USB Audio : USB Audio : capture 1" (fields after the first ": ")
        let Some((ids, rest)) = line.split_once(':') else { continue };
        let Some((card, dev)) = ids.trim().split_once('-') else { continue };
        let (Ok(card), Ok(dev)) = (card.parse::<u32>(), dev.parse::<u32>()) else { continue };
        let fields: Vec<&str> = rest.split(" : ").map(|f| f.trim().trim_start_matches(':').trim()).collect();
        if !fields.iter().any(|f| f.starts_with("capture")) {
            continue;
        }
        let (id, card_name) = card_names(root, card);
        let mut d = CaptureDevice {
            device: format!("hw:{card},{dev}"),
            stable: format!("plughw:CARD={},DEV={dev}", id.as_deref().unwrap_or(&card.to_string())),
            card: card_name.unwrap_or_default(),
            name: fields
                .get(1)
                .filter(|n| !n.starts_with("capture") && !n.starts_with("playback"))
                .map_or_else(|| fields[0].to_string(), |n| n.to_string()),
            rates: Vec::new(),
            channels: Vec::new(),
            formats: Vec::new(),
        };
        if let Ok(stream) = std::fs::read_to_string(root.join(format!("card{card}/stream{dev}"))) {
            declared(&stream, &mut d);
        }
        out.push(d);
    }
    out
}

/// The card's id and name from `cards`: " 1 [Device         ]: USB-Audio - USB PnP Sound Device".
fn card_names(root: &Path, card: u32) -> (Option<String>, Option<String>) {
    let cards = std::fs::read_to_string(root.join("cards")).unwrap_or_default();
    for line in cards.lines() {
        let Some((num, rest)) = line.trim_start().split_once(' ') else { continue };
        if num.parse::<u32>().ok() != Some(card) {
            continue;
        }
        let id = rest.split_once('[').and_then(|(_, r)| r.split_once(']')).map(|(id, _)| id.trim().to_string());
        let name = rest.split_once(" - ").map(|(_, n)| n.trim().to_string());
        return (id, name);
    }
    (None, None)
}

/// The `Capture:` section of a USB `stream` file: every altset's format, channels and rates.
fn declared(stream: &str, d: &mut CaptureDevice) {
    let mut in_capture = false;
    for line in stream.lines() {
        let t = line.trim();
        if !line.starts_with(' ') && !t.is_empty() {
            in_capture = t.starts_with("Capture:");
            continue;
        }
        if !in_capture {
            continue;
        }
        if let Some(v) = t.strip_prefix("Format:") {
            for f in v.split(',').map(str::trim).filter(|f| !f.is_empty()) {
                if !d.formats.iter().any(|x| x == f) {
                    d.formats.push(f.to_string());
                }
            }
        } else if let Some(v) = t.strip_prefix("Channels:") {
            if let Ok(c) = v.trim().parse::<u16>() {
                if !d.channels.contains(&c) {
                    d.channels.push(c);
                }
            }
        } else if let Some(v) = t.strip_prefix("Rates:") {
            // "48000, 44100" or a range "8000 - 48000 (continuous)"
            for r in v.split([',', '-']).filter_map(|r| r.split_whitespace().next()?.parse::<u32>().ok()) {
                if !d.rates.contains(&r) {
                    d.rates.push(r);
                }
            }
        }
    }
    d.rates.sort_unstable();
    d.channels.sort_unstable();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_capture_pcms_with_what_usb_devices_declare() {
        let root = tempfile::tempdir().unwrap();
        let p = root.path();
        std::fs::write(
            p.join("cards"),
            " 0 [vc4hdmi0       ]: vc4-hdmi - vc4-hdmi-0\n                      vc4-hdmi-0\n \
             1 [Device         ]: USB-Audio - USB PnP Sound Device\n                      C-Media at usb-1.3\n \
             2 [sndrpii2s      ]: simple-card - snd_rpi_i2s_card\n",
        )
        .unwrap();
        std::fs::write(
            p.join("pcm"),
            "00-00: MAI PCM i2s-hifi-0 : MAI PCM i2s-hifi-0 : playback 1\n\
             01-00: USB Audio : USB Audio : playback 1 : capture 1\n\
             02-00: fe203000.i2s-dir-hifi dir-hifi-0 : : capture 1\n",
        )
        .unwrap();
        std::fs::create_dir(p.join("card1")).unwrap();
        std::fs::write(
            p.join("card1/stream0"),
            "C-Media USB PnP Sound Device at usb-1.3, full speed : USB Audio\n\nPlayback:\n  Status: Stop\n  \
             Interface 1\n    Altset 1\n    Format: S16_LE\n    Channels: 2\n    Rates: 44100\n\nCapture:\n  \
             Status: Stop\n  Interface 2\n    Altset 1\n    Format: S16_LE\n    Channels: 1\n    \
             Rates: 48000, 44100\n    Bits: 16\n",
        )
        .unwrap();
        let d = capture_devices(p);
        assert_eq!(d.len(), 2, "{d:?}");
        assert_eq!((d[0].device.as_str(), d[0].stable.as_str()), ("hw:1,0", "plughw:CARD=Device,DEV=0"));
        assert_eq!(d[0].card, "USB PnP Sound Device");
        assert_eq!(
            (d[0].rates.clone(), d[0].channels.clone(), d[0].formats.clone()),
            (vec![44100, 48000], vec![1], vec!["S16_LE".into()])
        );
        assert_eq!((d[1].device.as_str(), d[1].stable.as_str()), ("hw:2,0", "plughw:CARD=sndrpii2s,DEV=0"));
        assert_eq!(d[1].name, "fe203000.i2s-dir-hifi dir-hifi-0", "no name: its id");
        assert!(d[1].rates.is_empty(), "an I2S device declares nothing until opened");
        assert!(capture_devices(&p.join("absent")).is_empty(), "no /proc/asound: none");
    }
}
