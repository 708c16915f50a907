//! Property ("fuzz") tests of what the embedded broker reads off a socket: any bytes through
//! [`read_packet`] give a packet or an error — never a panic, never a read past a refused size,
//! and the inbound byte budget is always given back. Packets a real client writes (rumqttc's
//! encoder, any topic and payload) read back unchanged.

use super::conn::{read_packet, ReadError};
use proptest::prelude::*;
use rumqttc::{Packet, Publish, QoS, Subscribe};
use std::sync::Arc;
use tokio::sync::Semaphore;

const CASES: u32 = 512;
const MAX: usize = 4096;
const BUDGET: usize = 1 << 20;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().build().expect("a runtime")
}

/// Read packets from `bytes` until an error; returns how many were read. The budget is whole
/// again after every packet is dropped.
fn read_all(bytes: &[u8], budget: &Arc<Semaphore>) -> Result<usize, TestCaseError> {
    rt().block_on(async {
        let mut rd = bytes;
        let mut n = 0;
        loop {
            match read_packet(&mut rd, MAX, budget).await {
                Ok((_packet, permit)) => {
                    n += 1;
                    drop(permit);
                }
                Err(ReadError::TooBig(len)) => {
                    prop_assert!(len > MAX);
                    break;
                }
                Err(_) => break,
            }
            prop_assert_eq!(budget.available_permits(), BUDGET);
        }
        prop_assert_eq!(budget.available_permits(), BUDGET);
        Ok(n)
    })
}

/// A fixed header (any packet type and flags) with a remaining length, then arbitrary bytes.
fn framed() -> impl Strategy<Value = Vec<u8>> {
    (any::<u8>(), prop::collection::vec(any::<u8>(), 0..200)).prop_map(|(kind, body)| {
        let mut v = vec![kind];
        let mut len = body.len();
        loop {
            let b = (len % 128) as u8;
            len /= 128;
            v.push(if len > 0 { b | 0x80 } else { b });
            if len == 0 {
                break;
            }
        }
        v.extend(body);
        v
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let budget = Arc::new(Semaphore::new(BUDGET));
        read_all(&bytes, &budget)?;
    }

    /// Well-framed packets of every type with garbage bodies (what gets past the length check).
    #[test]
    fn framed_garbage(packets in prop::collection::vec(framed(), 1..6)) {
        let budget = Arc::new(Semaphore::new(BUDGET));
        read_all(&packets.concat(), &budget)?;
    }

    /// What a client encodes is what the broker reads: any topic bytes, any payload, any QoS.
    #[test]
    fn publish_round_trip(topic in "\\PC{1,60}", payload in prop::collection::vec(any::<u8>(), 0..1000),
                          qos in 0u8..3, filter in "\\PC{1,40}") {
        let qos = match qos { 0 => QoS::AtMostOnce, 1 => QoS::AtLeastOnce, _ => QoS::ExactlyOnce };
        let mut publish = Publish::new(topic.clone(), qos, payload.clone());
        if qos != QoS::AtMostOnce {
            publish.pkid = 7;
        }
        let mut buf = bytes::BytesMut::new();
        Packet::Publish(publish).write(&mut buf, usize::MAX).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        let mut sub = bytes::BytesMut::new();
        Packet::Subscribe(Subscribe::new(filter.clone(), QoS::AtLeastOnce))
            .write(&mut sub, usize::MAX)
            .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        buf.extend_from_slice(&sub);
        let budget = Arc::new(Semaphore::new(BUDGET));
        rt().block_on(async {
            let mut rd = &buf[..];
            let (p, permit) = read_packet(&mut rd, MAX, &budget).await.map_err(|e| TestCaseError::fail(e.to_string()))?;
            match p {
                Packet::Publish(p) => {
                    prop_assert_eq!(p.topic, topic);
                    prop_assert_eq!(&p.payload[..], &payload[..]);
                    prop_assert_eq!(p.qos, qos);
                }
                other => prop_assert!(false, "{other:?}"),
            }
            drop(permit);
            let (p, _permit) = read_packet(&mut rd, MAX, &budget).await.map_err(|e| TestCaseError::fail(e.to_string()))?;
            match p {
                Packet::Subscribe(s) => prop_assert_eq!(&s.filters[0].path, &filter),
                other => prop_assert!(false, "{other:?}"),
            }
            Ok(())
        })?;
    }
}
