//! Export of saved clips to S3-compatible object storage (`[export]`, docs/API.md §2.4.1).
//!
//! Each saved clip becomes an entry in a crash-safe queue (the index's `export` tree, flushed at
//! every step) with three objects — `{prefix}/{camera}/{YYYY}/{MM}/{DD}/{clip_id}.mp4`, the
//! poster `.jpg` when there is one, and the metadata `.json` last (its presence says the clip is
//! complete). One task uploads one object at a time, oldest clip first:
//!
//! - an object whose key already holds the same size and SHA-256 (`x-amz-meta-sha256`) is done
//!   without sending anything (a restart after an upload finished but before it was recorded);
//! - up to `part_size` in one PUT, larger in parts: the upload id and each finished part are
//!   recorded, so after a crash the upload resumes at the first part the service does not list
//!   (ListParts), or starts again if the upload is gone; once the object is complete, any other
//!   upload of its key still open (started by a request that timed out here but reached the
//!   service, or by a crash before its id was recorded) is aborted, so no orphaned parts stay;
//! - failures are retried with back-off (1 s doubling to 5 min, the queue keeps its order by due
//!   time, so one stuck clip does not hold newer ones back); refused credentials (403) are shown
//!   as such on the clip and in `/api/health` and retried every 5 min;
//! - `max_kbps` paces the uploads: every body goes out in 16 KiB pieces on one schedule for
//!   all parts and objects, each no sooner than the rate allows (no burst at line speed, so the
//!   uplink stays usable);
//! - clips saved since export was first turned on are queued at start if their entry is missing
//!   (an event missed in a crash or by a lagging channel), and any clip on request
//!   (`POST /api/clips/{id}/export`); a queued clip deleted before its export is dropped;
//! - `delete_local`: an exported clip's video is deleted here once a HEAD finds it in the
//!   bucket, and [`Exporter::fetch`] streams it back for `/api/clips/{id}/video.mp4`.
//!
//! Owns the export task and the queue's format. Must never: log or return a presigned URL (it
//! holds the access key and a signature), read a whole large file into memory (one part at a
//! time), block the async runtime (files and the index through `spawn_blocking`), or write
//! anything while idle (nothing is due: it sleeps).

mod intake;
mod queue;
mod s3;

pub use queue::{ExportEntry, ExportState};

use crate::clip::store::ClipStore;
use crate::clip_meta::{ClipEvent, ClipMeta};
use crate::config::ExportConfig;
use crate::shutdown::StopToken;
use queue::Object;
use s3::S3;
use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot};

/// Longest back-off between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// The exporter as others see it: counters for `/api/health` and `/metrics`.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ExportSummary {
    /// `idle`, `uploading`, `retrying` or `auth_error`.
    pub state: &'static str,
    /// Clips waiting or being uploaded.
    pub queued: usize,
    /// Clips whose export failed for good.
    pub failed: usize,
    /// The last error, if the last attempt failed.
    pub last_error: Option<String>,
    /// Objects uploaded since start.
    pub uploaded_objects: u64,
    /// Bytes uploaded since start.
    pub uploaded_bytes: u64,
}

/// A running exporter.
pub struct Exporter {
    s3: Arc<S3>,
    summary: Arc<Mutex<ExportSummary>>,
    requests: mpsc::Sender<Request>,
    task: tokio::task::JoinHandle<()>,
}

/// Why a clip could not be queued on request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// No such clip.
    #[error("no clip {0}")]
    NotFound(String),
    /// Too many requests waiting, or the exporter stopped.
    #[error("the export queue is busy; try again")]
    Busy,
    /// The clip's files could not be read or the queue written.
    #[error("{0}")]
    Failed(String),
}

/// A request to queue one clip, answered with its export status.
type Request = (String, oneshot::Sender<Result<serde_json::Value, RequestError>>);

impl Exporter {
    /// Start exporting the clips announced on `events` (and any left in the queue) to the
    /// service of `cfg`. Errors: the config cannot make a client (validated before, so rare).
    pub fn start(
        cfg: &ExportConfig,
        store: Arc<ClipStore>,
        events: broadcast::Sender<ClipEvent>,
        stop: StopToken,
    ) -> Result<Exporter, String> {
        let s3 = Arc::new(S3::new(cfg)?);
        let summary = Arc::new(Mutex::new(ExportSummary { state: "idle", ..ExportSummary::default() }));
        let worker = Worker {
            s3: s3.clone(),
            delete_local: cfg.delete_local,
            store,
            prefix: cfg.prefix.clone(),
            part_size: cfg.part_size.0,
            summary: summary.clone(),
            events: events.clone(),
        };
        let (requests, rx) = mpsc::channel(16);
        let task = tokio::spawn(worker.run(events.subscribe(), rx, stop));
        Ok(Exporter { s3, summary, requests, task })
    }

    /// Queue `clip_id` (again): an older clip, or one whose export failed or finished. A clip
    /// already waiting keeps its place. Answers the clip's export status, or `pending` when the
    /// exporter is busy with a request for more than 2 s (it takes this one up after it).
    pub async fn request(&self, clip_id: &str) -> Result<serde_json::Value, RequestError> {
        let (tx, rx) = oneshot::channel();
        self.requests.try_send((clip_id.to_string(), tx)).map_err(|_| RequestError::Busy)?;
        match tokio::time::timeout(Duration::from_secs(2), rx).await {
            Ok(answer) => answer.map_err(|_| RequestError::Busy)?,
            Err(_) => Ok(serde_json::json!({ "state": ExportState::Pending })),
        }
    }

    /// A clip's video from the bucket (a clip whose local copy was deleted after export):
    /// `range` passed on, the answer streamed.
    pub async fn fetch(&self, key: &str, range: Option<&str>) -> Result<Fetched, String> {
        self.s3.get(key, range).await.map_err(|e| e.to_string())
    }

    /// Counters now.
    pub fn summary(&self) -> ExportSummary {
        self.summary.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Wait for the task to end (after stop).
    pub async fn join(self) {
        let _ = self.task.await;
    }
}

/// A clip's export as `/api/clips` shows it, from the queue in `index`; `None`: not queued.
pub fn clip_export(index: &crate::index::Index, clip_id: &str) -> Option<serde_json::Value> {
    let raw = index.export_get(clip_id).ok()??;
    let e: ExportEntry = serde_json::from_slice(&raw).ok()?;
    serde_json::to_value(e.status()).ok()
}

pub use s3::Fetched;

struct Worker {
    s3: Arc<S3>,
    /// `[export] delete_local`.
    delete_local: bool,
    store: Arc<ClipStore>,
    prefix: String,
    part_size: u64,
    summary: Arc<Mutex<ExportSummary>>,
    /// Where the end of each clip's export is announced (MQTT, SSE).
    events: broadcast::Sender<ClipEvent>,
}

impl Worker {
    async fn run(
        self,
        mut events: broadcast::Receiver<ClipEvent>,
        mut requests: mpsc::Receiver<Request>,
        stop: StopToken,
    ) {
        let mut queue: Vec<ExportEntry> = self.load().await;
        self.backfill(&mut queue).await;
        let mut events_open = true;
        loop {
            self.publish_summary(&queue);
            let now = crate::time::wall_now_ms();
            let due: Option<(i64, String)> = due_key(&queue).map(|(at, id)| (at, id.clone()));
            let wait = match &due {
                Some((at, _)) => Duration::from_millis((*at - now).max(0) as u64),
                None => Duration::from_secs(3600),
            };
            tokio::select! {
                _ = stop.stopped() => return,
                ev = events.recv(), if events_open => match ev {
                    Ok(ClipEvent::Saved(meta)) => {
                        if !queue.iter().any(|e| e.clip_id == meta.id && e.state.pending()) {
                            let _ = self.enqueue(&mut queue, &meta).await;
                        }
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        log::warn!("export: missed {n} clip events: looking for their clips in the index");
                        self.backfill(&mut queue).await;
                    }
                    Err(broadcast::error::RecvError::Closed) => events_open = false,
                },
                Some((id, answer)) = requests.recv() => {
                    let _ = answer.send(self.requested(&mut queue, &id).await);
                },
                _ = tokio::time::sleep(wait) => {
                    let Some((_, id)) = due else { continue };
                    let Some(i) = queue.iter().position(|e| e.clip_id == id) else { continue };
                    let mut entry = queue[i].clone();
                    tokio::select! {
                        _ = stop.stopped() => return,
                        () = self.attempt(&mut entry) => {}
                    }
                    if entry.objects.is_empty() {
                        queue.remove(i);
                        continue;
                    }
                    if entry.state == ExportState::Done && self.delete_local {
                        self.drop_local(&entry).await;
                    }
                    if !entry.state.pending() {
                        let _ = self.events.send(ClipEvent::Exported {
                            camera: entry.camera.clone(),
                            clip_id: entry.clip_id.clone(),
                            keys: entry.objects.iter().map(|o| o.key.clone()).collect(),
                            bytes: entry.bytes_total(),
                            error: if entry.state == ExportState::Done { None } else { entry.error.clone() },
                        });
                    }
                    queue[i] = entry;
                    queue.retain(|e| e.state.pending() || e.state == ExportState::Failed);
                }
            }
        }
    }

    /// The queue left by the last run (nothing is opened when there is no index yet).
    async fn load(&self) -> Vec<ExportEntry> {
        let store = self.store.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            if !store.storage.root().join("index").exists() {
                return Vec::new();
            }
            let Ok(index) = store.index() else { return Vec::new() };
            let all = index.export_all().unwrap_or_default();
            all.into_iter().filter_map(|(_, v)| serde_json::from_slice::<ExportEntry>(&v).ok()).collect()
        });
        let mut q: Vec<ExportEntry> = loaded.await.unwrap_or_default();
        q.retain(|e| e.state.pending() || e.state == ExportState::Failed);
        for e in &mut q {
            e.next_at_ms = 0; // due now: the last run's back-off is not this run's
        }
        if !q.is_empty() {
            log::info!(
                "export: {} clip(s) left in the queue from the last run",
                q.iter().filter(|e| e.state.pending()).count()
            );
        }
        q
    }

    /// Queue a saved clip: its objects' sizes and SHA-256s are taken now (off the runtime).
    async fn enqueue(&self, queue: &mut Vec<ExportEntry>, meta: &ClipMeta) -> Result<ExportEntry, String> {
        let (store, meta, prefix) = (self.store.clone(), meta.clone(), self.prefix.clone());
        let made = tokio::task::spawn_blocking(move || {
            let entry = queue::entry_for(&store.storage, &meta, &prefix)?;
            let index = store.index().map_err(|e| e.to_string())?;
            // (The first clip queued records when export began, if the start found no index.)
            index.export_since(crate::time::wall_now_ms()).map_err(|e| e.to_string())?;
            let raw = serde_json::to_vec(&entry).map_err(|e| e.to_string())?;
            index.export_put(&entry.clip_id, &raw, true).map_err(|e| e.to_string())?;
            Ok::<_, String>(entry)
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        match made {
            Ok(entry) => {
                log::info!("export: clip {} queued ({} bytes)", entry.clip_id, entry.bytes_total());
                queue.push(entry.clone());
                Ok(entry)
            }
            Err(e) => {
                log::warn!("export: a clip could not be queued: {e}");
                Err(e)
            }
        }
    }

    /// One step of `entry`: the next object not done, uploaded (or found there); the entry is
    /// recorded after every change.
    async fn attempt(&self, entry: &mut ExportEntry) {
        entry.state = ExportState::Uploading;
        let result = self.upload_next(entry).await;
        match result {
            Ok(()) => {
                if entry.objects.iter().all(|o| o.done) {
                    entry.state = ExportState::Done;
                    entry.done_at = Some(crate::time::rfc3339_ms(crate::time::wall_now_ms()));
                    entry.error = None;
                    log::info!("export: clip {} exported ({} bytes)", entry.clip_id, entry.bytes_total());
                }
                entry.attempts = 0;
                entry.next_at_ms = 0;
                self.set_last_error(None);
            }
            // The clip's file is gone: deleted with the clip (its entry goes too: a step that
            // ended after the deletion may have written it again), or missing under a clip
            // still listed (given up).
            Err(e) if e.what.starts_with("read ") && e.why.contains("No such file") => {
                let (store, id) = (self.store.clone(), entry.clip_id.clone());
                let listed = tokio::task::spawn_blocking(move || {
                    let index = store.index().ok()?;
                    let listed = index.get(&id).ok().flatten().is_some();
                    if !listed {
                        let _ = index.export_remove(&id);
                    }
                    Some(listed)
                })
                .await
                .ok()
                .flatten()
                .unwrap_or(true);
                entry.state = ExportState::Failed;
                entry.error = Some(e.to_string());
                if !listed {
                    log::info!("export: clip {} was deleted before its export", entry.clip_id);
                    entry.objects.clear(); // dropped from the queue
                    return;
                }
                log::warn!("export: clip {}: {e}: given up", entry.clip_id);
            }
            // Parts under the service's minimum (5 MiB on AWS, MinIO, s3s): retrying cannot help.
            Err(e) if e.why.contains("EntityTooSmall") => {
                let why = format!("{e}: export.part_size is under this service's minimum part size (5 MiB on AWS and MinIO); raise it and export the clip again");
                log::warn!("export: clip {}: {why}", entry.clip_id);
                entry.state = ExportState::Failed;
                entry.error = Some(why.clone());
                self.set_last_error(Some(why));
            }
            Err(e) => {
                entry.attempts += 1;
                let backoff = if e.is_auth() {
                    MAX_BACKOFF
                } else {
                    Duration::from_secs(1u64 << entry.attempts.min(9)).min(MAX_BACKOFF)
                };
                entry.next_at_ms = crate::time::wall_now_ms() + backoff.as_millis() as i64;
                entry.state = if e.is_auth() { ExportState::AuthError } else { ExportState::Retrying };
                let why = if e.is_auth() { format!("credentials refused: {e}") } else { e.to_string() };
                if entry.attempts == 1 || entry.attempts.is_multiple_of(10) {
                    log::warn!(
                        "export: clip {}: {why} (attempt {}, next in {backoff:?})",
                        entry.clip_id,
                        entry.attempts
                    );
                }
                entry.error = Some(why.clone());
                self.set_last_error(Some(why));
            }
        }
        self.save(entry).await;
    }

    async fn upload_next(&self, entry: &mut ExportEntry) -> Result<(), s3::S3Error> {
        let Some(i) = entry.objects.iter().position(|o| !o.done) else { return Ok(()) };
        let obj = entry.objects[i].clone();
        let done = |o: &mut Object| o.done = true;
        // Already there (a finished upload not yet recorded, or a second appliance's copy)?
        // (Asked once per run for an upload in parts, before any part of this run.)
        if !obj.checked {
            if let Some((size, sha)) = self.s3.head(&obj.key).await? {
                if size == obj.size && sha.as_deref() == Some(obj.sha256.as_str()) {
                    done(&mut entry.objects[i]);
                    return Ok(());
                }
            }
        }
        if obj.size <= self.part_size && obj.upload_id.is_none() {
            let body = self.read(entry, &obj, 0, obj.size).await?;
            self.s3.put(&obj.key, body, &obj.sha256, obj.content_type()).await?;
            self.count(obj.size);
            done(&mut entry.objects[i]);
            return Ok(());
        }
        // Multipart: resume what the service has, one part per step.
        let upload_id = match &obj.upload_id {
            Some(id) if obj.checked => id.clone(),
            Some(id) => match self.s3.list_parts(&obj.key, id).await? {
                Some(listed) => {
                    let o = &mut entry.objects[i];
                    o.parts = queue::keep_listed(&o.parts, &listed, o.part_size, o.size);
                    o.checked = true;
                    id.clone()
                }
                None => {
                    // Gone (expired or aborted): start again.
                    let o = &mut entry.objects[i];
                    o.upload_id = None;
                    o.parts.clear();
                    self.save(entry).await;
                    return Ok(());
                }
            },
            None => {
                let id = self.s3.create(&obj.key, &obj.sha256, obj.content_type()).await?;
                let o = &mut entry.objects[i];
                o.upload_id = Some(id);
                o.part_size = queue::part_size_for(o.size, self.part_size);
                o.checked = true;
                return Ok(());
            }
        };
        let o = entry.objects[i].clone();
        let part_size = if o.part_size > 0 { o.part_size } else { queue::part_size_for(o.size, self.part_size) };
        let parts = queue::part_count(obj.size, part_size);
        let next = (1..=parts).find(|n| !o.parts.iter().any(|p| p.0 == *n));
        match next {
            Some(n) => {
                let off = u64::from(n - 1) * part_size;
                let len = part_size.min(obj.size - off);
                let body = self.read(entry, &obj, off, len).await?;
                let etag = self.s3.upload_part(&obj.key, &upload_id, n, body).await?;
                self.count(len);
                let o = &mut entry.objects[i];
                o.parts.push((n, etag, len));
                o.parts.sort_by_key(|p| p.0);
            }
            None => {
                let etags: Vec<String> = o.parts.iter().map(|p| p.1.clone()).collect();
                self.s3.complete(&obj.key, &upload_id, &etags).await?;
                done(&mut entry.objects[i]);
                self.abort_strays(&obj.key).await;
            }
        }
        Ok(())
    }

    /// Abort every other multipart upload of `key` still open: one the service started for a
    /// request that timed out here (it was answered after the exporter gave up), or one a crash
    /// left between its start and the record of its id. Their parts cost storage until a
    /// lifecycle rule (if any) removes them. Best effort: the object itself is complete.
    async fn abort_strays(&self, key: &str) {
        let strays = match self.s3.open_uploads(key).await {
            Ok(ids) => ids,
            Err(e) => return log::warn!("export: {key}: stray uploads not checked: {e}"),
        };
        for id in strays {
            match self.s3.abort(key, &id).await {
                Ok(()) => log::info!("export: {key}: aborted a stray multipart upload"),
                Err(e) => log::warn!("export: {key}: a stray multipart upload not aborted: {e}"),
            }
        }
    }

    /// `len` bytes at `off` of the object's source (the metadata is kept in the entry).
    async fn read(&self, entry: &ExportEntry, obj: &Object, off: u64, len: u64) -> Result<Vec<u8>, s3::S3Error> {
        if let Some(inline) = &obj.inline {
            return Ok(inline.as_bytes().to_vec());
        }
        let path = self.store.storage.abs(&obj.path);
        let what = format!("read {}", obj.path);
        let clip = entry.clip_id.clone();
        let got = tokio::task::spawn_blocking(move || {
            use std::io::{Read, Seek, SeekFrom};
            let path = path.ok_or("bad path")?;
            let mut f = std::fs::File::open(&path).map_err(|e| e.to_string())?;
            f.seek(SeekFrom::Start(off)).map_err(|e| e.to_string())?;
            let mut buf = vec![0u8; len as usize];
            f.read_exact(&mut buf).map_err(|e| e.to_string())?;
            Ok::<_, String>(buf)
        })
        .await;
        match got {
            Ok(Ok(buf)) => Ok(buf),
            Ok(Err(e)) => Err(s3::S3Error { what, status: None, why: format!("clip {clip}: {e}") }),
            Err(e) => Err(s3::S3Error { what, status: None, why: e.to_string() }),
        }
    }

    fn count(&self, bytes: u64) {
        let mut s = self.summary.lock().unwrap_or_else(|p| p.into_inner());
        s.uploaded_objects += 1;
        s.uploaded_bytes += bytes;
    }

    async fn save(&self, entry: &ExportEntry) {
        let (store, entry) = (self.store.clone(), entry.clone());
        let saved = tokio::task::spawn_blocking(move || {
            let raw = serde_json::to_vec(&entry).map_err(|e| e.to_string())?;
            let index = store.index().map_err(|e| e.to_string())?;
            index.export_put(&entry.clip_id, &raw, entry.state.pending()).map_err(|e| e.to_string())
        })
        .await;
        if let Ok(Err(e)) = saved {
            log::warn!("export: queue not recorded: {e}");
        }
    }

    /// The summary from the queue: `auth_error` or `retrying` if any clip is so, `uploading`
    /// while clips wait, else `idle`.
    fn publish_summary(&self, queue: &[ExportEntry]) {
        let mut s = self.summary.lock().unwrap_or_else(|p| p.into_inner());
        s.queued = queue.iter().filter(|e| e.state.pending()).count();
        s.failed = queue.iter().filter(|e| e.state == ExportState::Failed).count();
        let any = |st: ExportState| queue.iter().any(|e| e.state == st);
        s.state = if any(ExportState::AuthError) {
            "auth_error"
        } else if any(ExportState::Retrying) {
            "retrying"
        } else if s.queued > 0 {
            "uploading"
        } else {
            "idle"
        };
    }

    fn set_last_error(&self, error: Option<String>) {
        self.summary.lock().unwrap_or_else(|p| p.into_inner()).last_error = error;
    }
}

/// The due key of the queue's next entry.
fn due_key(queue: &[ExportEntry]) -> Option<(i64, &String)> {
    queue.iter().filter(|e| e.state.pending()).map(|e| (e.next_at_ms, &e.clip_id)).min()
}
