//! Phones as cameras: `GET /api/cameras/{id}/push` (a WebSocket carrying MediaRecorder chunks)
//! and `GET /api/clients` (the browsers that push, for the Status page).
//!
//! The push route asks [`Control::phone_camera`] for the browser camera (found, or created:
//! `[phone]` `enabled`, `max_cameras`) and upgrades. The connection then owns the camera: it
//! (re)starts it ([`Control::phone_joined`]), forwards each binary message to the camera's [`PhoneFeed`] (the first must carry the
//! init segment), sends `{"camera","state","frames"}` about once a second, and on disconnect
//! stops it ([`Control::phone_left`]) (`stopped`, which health does not count as degraded). One phone per camera: a new
//! connection for the same id **replaces** the old one (which gets `{"error":..}` and a close),
//! so a phone whose old connection died silently can always come back.
//!
//! Bounded: messages over [`MAX_MESSAGE`] end the connection with an error; chunks go into the
//! feed, which drops (and counts) what a lagging decoder cannot take; nothing queues per client.

use super::{ApiError, AppState};
use crate::camera::Camera;
use crate::capture::phone::PhoneFeed;
use crate::control::Control;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use warp::filters::ws::{Message, WebSocket, Ws};
use warp::{Filter, Rejection, Reply};

/// Largest chunk accepted (MediaRecorder chunks at 250 ms are ~100–300 KB): no more than the
/// feed lets wait for the decoder, so one chunk always fits.
pub const MAX_MESSAGE: usize = crate::capture::phone::MAX_QUEUED_BYTES as usize;
/// How often the server tells the phone how it is doing.
const STATUS_EVERY: Duration = Duration::from_secs(1);
/// A phone that sent nothing for this long is gone (dropped off Wi-Fi without closing).
const SILENT_FOR: Duration = Duration::from_secs(30);
/// A status message the phone does not take within this long: the connection is dead.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

async fn push(
    id: String,
    ws: Ws,
    addr: Option<SocketAddr>,
    user_agent: Option<String>,
    state: Arc<AppState>,
) -> Result<warp::reply::Response, Rejection> {
    let entry = state.control.phone_camera(&id).map_err(ApiError::from)?;
    let address = addr.map(|a| a.to_string());
    Ok(ws
        .max_message_size(MAX_MESSAGE)
        .max_frame_size(MAX_MESSAGE)
        .on_upgrade(move |sock| session(sock, entry.camera, address, user_agent, state.control.clone()))
        .into_response())
}

fn status_json(cam: &Camera, feed: &PhoneFeed) -> String {
    let frames = cam.status.frames_captured.load(Ordering::Relaxed);
    let received = feed.client(frames).map(|c| c.frames_received).unwrap_or(0);
    serde_json::json!({"camera": cam.id(), "state": cam.status.state(), "frames": received}).to_string()
}

fn error_json(msg: &str) -> String {
    serde_json::json!({ "error": msg }).to_string()
}

/// One phone's connection, from upgrade to close.
async fn session(
    sock: WebSocket,
    cam: Arc<Camera>,
    address: Option<String>,
    user_agent: Option<String>,
    control: Arc<Control>,
) {
    let id = cam.id().to_string();
    let (mut tx, mut rx) = sock.split();
    let session = match control.phone_joined(&cam, address.clone(), user_agent).await {
        Ok(Some(session)) => session,
        Ok(None) => return,
        Err(e) => {
            let e = e.to_string();
            log::error!("{e}");
            let _ = tx.send(Message::text(error_json(&e))).await;
            let _ = tx.send(Message::close_with(1011u16, "cannot start camera")).await;
            return;
        }
    };
    let (feed, gen, mut replaced) = (session.feed.clone(), session.gen, session.replaced.clone());
    log::info!("camera {id}: phone connected from {}", address.as_deref().unwrap_or("?"));
    let mut last_message = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(STATUS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let problem: Option<String> = loop {
        tokio::select! {
            msg = rx.next() => match msg {
                None => break None,
                Some(Err(e)) => {
                    log::info!("camera {id}: phone connection failed: {e}");
                    break Some(format!("websocket: {e}"));
                }
                Some(Ok(m)) if m.is_binary() => {
                    last_message = tokio::time::Instant::now();
                    let data = Bytes::from(m.into_bytes());
                    if data.len() > MAX_MESSAGE {
                        break Some(format!("chunk of {} bytes is over the {MAX_MESSAGE} byte limit", data.len()));
                    }
                    if let Err(e) = feed.push(data) {
                        break Some(e.to_string());
                    }
                }
                Some(Ok(m)) if m.is_close() => break None,
                // Text, ping, pong: nothing to do (warp answers pings).
                Some(Ok(_)) => {}
            },
            _ = tick.tick() => {
                if last_message.elapsed() >= SILENT_FOR {
                    break Some(format!("no video from the phone for {} s", SILENT_FOR.as_secs()));
                }
                match tokio::time::timeout(SEND_TIMEOUT, tx.send(Message::text(status_json(&cam, &feed)))).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => break None,
                    Err(_) => break Some("the phone stopped reading (send timed out)".into()),
                }
            }
            changed = replaced.changed() => {
                if changed.is_err() || *replaced.borrow() != gen {
                    break Some("connection ended: another phone took over this camera, it was stopped, or the server is stopping".into());
                }
            }
        }
    };
    if let Some(p) = &problem {
        log::info!("camera {id}: closing phone connection: {p}");
        let bye = async {
            let _ = tx.send(Message::text(error_json(p))).await;
            let _ = tx.send(Message::close_with(1008u16, "error")).await;
        };
        let _ = tokio::time::timeout(SEND_TIMEOUT, bye).await;
    }
    let _ = tokio::time::timeout(SEND_TIMEOUT, tx.close()).await;
    control.phone_left(&session).await;
}

/// `GET /api/cameras/{id}/push` (WebSocket) and `GET /api/clients`.
pub fn routes(
    st: impl Filter<Extract = (Arc<AppState>,), Error = Infallible> + Clone + Send + Sync + 'static,
) -> warp::filters::BoxedFilter<(warp::reply::Response,)> {
    let push = warp::path!("api" / "cameras" / String / "push")
        .and(warp::get())
        .and(warp::ws())
        .and(super::peer())
        .and(warp::header::optional::<String>("user-agent"))
        .and(st.clone())
        .and_then(push);
    let clients = warp::path!("api" / "clients").and(warp::get()).and(st).map(|s: Arc<AppState>| {
        let list: Vec<_> = s
            .registry
            .snapshot()
            .iter()
            .filter_map(|e| {
                let frames = e.camera.status.frames_captured.load(Ordering::Relaxed);
                e.camera.feed.as_ref()?.client(frames)
            })
            .collect();
        warp::reply::json(&list).into_response()
    });
    push.or(clients).unify().boxed()
}
