//! Tests of one WHEP session's answer: the H.264 profile from the SPS, the media lines found in
//! an answer, one stream for every m-line, a real Chromium offer answered (and refused for a
//! profile it lacks), and offers mangled at random never panicking.

use super::*;

#[test]
fn the_video_mid_of_an_answer() {
    let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96 97\r\na=mid:1\r\na=sendonly\r\n";
    assert_eq!(media_mid(sdp, "video"), Some(Mid::from("1")));
    assert_eq!(media_mid(sdp, "audio"), Some(Mid::from("0")));
    assert_eq!(
        media_mid("v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n", "video"),
        Some(Mid::from("0")),
        "no codec"
    );
    assert_eq!(media_mid("v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:v\r\na=inactive\r\n", "video"), None);
    assert_eq!(media_mid("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n", "video"), None);
}

#[test]
fn every_m_line_names_one_stream() {
    let offer = "v=0\r\na=group:BUNDLE 0 1\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=recvonly\r\n\
                     m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:1\r\na=msid:- 7c3e\r\n";
    let got = one_stream(offer, "hs");
    assert_eq!(
        got,
        "v=0\r\na=group:BUNDLE 0 1\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=msid:hs video-0\r\na=recvonly\r\n\
             m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:1\r\na=msid:hs 7c3e\r\n"
    );
}

#[test]
fn profile_level_ids_follow_the_sps() {
    let sps = |profile_idc, constrained, level_idc| SpsInfo { profile_idc, constrained, level_idc };
    assert_eq!(profile_level_id(&sps(77, false, 31)), Some(0x4d001f), "x264 main 3.1");
    assert_eq!(profile_level_id(&sps(66, true, 31)), Some(0x42e01f), "constrained baseline");
    assert_eq!(profile_level_id(&sps(66, false, 30)), Some(0x42001e));
    assert_eq!(profile_level_id(&sps(100, false, 40)), Some(0x640028), "a camera's high 4.0");
    assert_eq!(profile_level_id(&sps(122, false, 40)), None, "4:2:2: no browser decodes it");
}

use proptest::prelude::*;
use std::sync::OnceLock;

/// An offer headless Chromium 156 made (recvonly video + audio; its ICE credentials are
/// throwaway).
const CHROMIUM_OFFER: &str = include_str!("chromium_offer.sdp");

fn cert() -> &'static DtlsCert {
    static CERT: OnceLock<DtlsCert> = OnceLock::new();
    CERT.get_or_init(|| str0m::crypto::from_feature_flags().dtls_provider.generate_certificate().unwrap())
}

fn answer(offer: &str, sps: SpsInfo) -> Result<(Session, String), WhepError> {
    let addrs = ["127.0.0.1".parse().unwrap(), "192.0.2.2".parse().unwrap()];
    Session::new("s".into(), "cam".into(), offer, sps, StartAt::Next, cert(), &addrs, 8189, Instant::now())
}

const CB31: SpsInfo = SpsInfo { profile_idc: 66, constrained: true, level_idc: 31 };

#[test]
fn a_chromium_offer_gets_the_cameras_profile_opus_one_stream_and_our_candidates() {
    let (s, sdp) = answer(CHROMIUM_OFFER, CB31).unwrap();
    assert!(s.wants_sound(), "audio m-line answered with Opus");
    assert!(sdp.contains("profile-level-id=42e01f") && sdp.contains("packetization-mode=1"), "{sdp}");
    assert!(sdp.contains("opus/48000"), "{sdp}");
    assert!(!sdp.contains("profile-level-id=4d"), "only the camera's profile: {sdp}");
    let msids: Vec<&str> = sdp.lines().filter(|l| l.starts_with("a=msid:")).collect();
    assert_eq!(msids.len(), 2, "{sdp}");
    assert!(msids.iter().all(|l| l.starts_with("a=msid:hindsight-cam ")), "{msids:?}");
    assert!(sdp.contains("a=ice-lite"), "{sdp}");
    for host in ["127.0.0.1 8189 typ host", "192.0.2.2 8189 typ host"] {
        assert!(sdp.contains(host), "candidate {host}: {sdp}");
    }
    let mline = sdp.lines().find(|l| l.starts_with("m=video")).unwrap_or_default();
    assert!(!mline.ends_with(" 0"), "a real payload type on the video m-line: {mline}");
}

#[test]
fn a_profile_the_browser_lacks_is_refused_not_sent() {
    let main = SpsInfo { profile_idc: 77, constrained: false, level_idc: 40 };
    let (_, sdp) = answer(CHROMIUM_OFFER, main).unwrap();
    assert!(sdp.contains("profile-level-id=4d0028"), "Chromium offers Main: answered at the camera's level: {sdp}");
    let high = SpsInfo { profile_idc: 100, constrained: false, level_idc: 40 };
    let e = answer(CHROMIUM_OFFER, high).err().expect("headless Chromium offers no High");
    assert!(matches!(&e, WhepError::NoCodec(m) if m.contains("high")), "{e:?}");
    let video_only = CHROMIUM_OFFER.split("m=audio").next().unwrap().replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 0");
    let (s, _) = answer(&video_only, CB31).unwrap();
    assert!(!s.wants_sound(), "no audio m-line, no sound");
}

#[test]
fn offers_that_are_not_offers_are_bad_requests() {
    for bad in ["", "hello", "v=0\r\n", &CHROMIUM_OFFER.replace("m=video", "m=text")] {
        let e = answer(bad, CB31).err().expect("refused");
        assert!(matches!(e, WhepError::BadOffer(_)), "{bad:?}: {e:?}");
    }
}

/// The fixture with lines dropped, doubled or replaced by printable garbage.
fn mangled() -> impl Strategy<Value = String> {
    let n = CHROMIUM_OFFER.lines().count();
    prop::collection::vec((0..n, 0..3u8, "[ -~]{0,40}"), 1..6).prop_map(|edits| {
        let mut lines: Vec<String> = CHROMIUM_OFFER.lines().map(String::from).collect();
        for (at, how, junk) in edits {
            let at = at % lines.len().max(1);
            match how {
                0 => {
                    lines.remove(at);
                }
                1 => lines.insert(at, lines[at].clone()),
                _ => lines[at] = junk,
            }
            if lines.is_empty() {
                break;
            }
        }
        lines.join("\r\n") + "\r\n"
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Whatever arrives as an offer is answered or refused as the client's mistake; never a
    /// panic (str0m's parser and our m-line and msid handling).
    #[test]
    fn mangled_offers_never_panic(offer in prop_oneof![mangled(), "[ -~\r\n]{0,300}"]) {
        match answer(&offer, CB31) {
            Ok((_, sdp)) => prop_assert!(sdp.contains("m=video")),
            Err(WhepError::BadOffer(_) | WhepError::NoCodec(_)) => {}
            Err(e) => prop_assert!(false, "{e:?}"),
        }
    }
}
