//! How clips enter and leave the export queue besides the save event: the scan of the index
//! for clips whose event was missed ([`Worker::backfill`]), `POST /api/clips/{id}/export`
//! ([`Worker::requested`]), and `delete_local` once a clip is in the bucket
//! ([`Worker::drop_local`]). Must never delete a local video the bucket does not hold (a HEAD
//! with the same size first) nor block the runtime (the index through `spawn_blocking`).

use super::{clip_export, ExportEntry, RequestError, Worker};

impl Worker {
    /// Queue the clips saved since export was first turned on that have no entry (their
    /// event was missed: a crash between the save and the queue, a lagging channel).
    pub(super) async fn backfill(&self, queue: &mut Vec<ExportEntry>) {
        let store = self.store.clone();
        let missing = tokio::task::spawn_blocking(move || {
            // No index yet: no clip was ever saved (and the storage is not created for this).
            if !store.storage.root().join("index").exists() {
                return Ok(Vec::new());
            }
            let index = store.index().map_err(|e| e.to_string())?;
            let since = index.export_since(crate::time::wall_now_ms()).map_err(|e| e.to_string())?;
            let clips = index.all().map_err(|e| e.to_string())?;
            let mut out = Vec::new();
            for c in clips {
                let end_ms = c.start_ms + (c.duration_s * 1000.0) as i64;
                if end_ms >= since && index.export_get(&c.id).map_err(|e| e.to_string())?.is_none() {
                    out.push(c);
                }
            }
            Ok::<_, String>(out)
        })
        .await;
        let missing = match missing {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => return log::warn!("export: cannot look for clips to export: {e}"),
            Err(e) => return log::warn!("export: cannot look for clips to export: {e}"),
        };
        if !missing.is_empty() {
            log::info!("export: {} saved clip(s) were not queued: queueing them", missing.len());
        }
        for meta in missing {
            if !queue.iter().any(|e| e.clip_id == meta.id) {
                let _ = self.enqueue(queue, &meta).await;
            }
        }
    }

    /// `[export] delete_local`: once the bucket holds the clip's video (HEAD: the same size),
    /// the local copy goes. The index says so first: a crash in between leaves a file that
    /// retention removes with the clip, never a clip without its video. Pinned clips keep theirs.
    pub(super) async fn drop_local(&self, entry: &ExportEntry) {
        let Some(video) = entry.objects.first() else { return };
        match self.s3.head(&video.key).await {
            Ok(Some((size, _))) if size == video.size => {}
            other => {
                let why = other.err().map_or("not the same size".to_string(), |e| e.to_string());
                return log::warn!("export: clip {}: local copy kept: the bucket's copy: {why}", entry.clip_id);
            }
        }
        let (store, id) = (self.store.clone(), entry.clip_id.clone());
        let dropped = tokio::task::spawn_blocking(move || {
            let index = store.index().map_err(|e| e.to_string())?;
            let Some(mut meta) = index.get(&id).map_err(|e| e.to_string())? else { return Ok(None) };
            if meta.pinned || meta.remote_only {
                return Ok(None);
            }
            let path = store.storage.abs(&meta.path).ok_or("bad path")?;
            meta.remote_only = true;
            index.insert(&meta).map_err(|e| e.to_string())?;
            std::fs::remove_file(&path).map_err(|e| e.to_string())?;
            Ok::<_, String>(Some(meta.size_bytes))
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        match dropped {
            Ok(Some(bytes)) => {
                log::info!("export: clip {}: local video deleted ({bytes} bytes; in the bucket)", entry.clip_id)
            }
            Ok(None) => {}
            Err(e) => log::warn!("export: clip {}: local copy not deleted: {e}", entry.clip_id),
        }
    }

    /// `POST /api/clips/{id}/export`: queue the clip unless it is waiting already.
    pub(super) async fn requested(
        &self,
        queue: &mut Vec<ExportEntry>,
        id: &str,
    ) -> Result<serde_json::Value, RequestError> {
        let status = |e: &ExportEntry| serde_json::to_value(e.status()).unwrap_or_default();
        if let Some(e) = queue.iter().find(|e| e.clip_id == id && e.state.pending()) {
            return Ok(status(e));
        }
        let (store, clip) = (self.store.clone(), id.to_string());
        let (meta, now) = tokio::task::spawn_blocking(move || {
            let index = store.index().ok()?;
            let meta = index.get(&clip).ok().flatten()?;
            let now = clip_export(&index, &clip);
            Some((meta, now))
        })
        .await
        .ok()
        .flatten()
        .ok_or_else(|| RequestError::NotFound(id.to_string()))?;
        if meta.remote_only {
            // Only the bucket has its video: exported, nothing to send.
            return Ok(now.unwrap_or_default());
        }
        queue.retain(|e| e.clip_id != id);
        let entry = self.enqueue(queue, &meta).await.map_err(RequestError::Failed)?;
        Ok(status(&entry))
    }
}
