//! Expiry of abandoned uploads: a task that runs only while unfinished uploads exist, sleeps
//! until the earliest one expires (`uploads.expire_h` after its last byte) and deletes it.
//!
//! Must never keep the uploads alive (it holds a weak reference), never expire an upload a
//! PATCH is writing to, and never run while there is nothing to expire (an idle daemon writes
//! nothing).

use super::{UploadState, Uploads};
use crate::time::wall_now_ms;
use std::sync::Arc;

impl Uploads {
    /// Start the expiry sweep unless it runs. Call from the async runtime.
    pub fn ensure_sweeper(self: &Arc<Self>) {
        use std::sync::atomic::Ordering;
        let _g = self.lock();
        if self.sweeping.swap(true, Ordering::SeqCst) {
            return;
        }
        // A weak reference: the sweep must not keep the uploads (and the clip index) alive
        // after the daemon has stopped.
        tokio::spawn(Self::sweep(Arc::downgrade(self)));
    }

    /// While unfinished uploads exist: sleep until the earliest expires, delete expired ones.
    async fn sweep(weak: std::sync::Weak<Self>) {
        use std::sync::atomic::Ordering;
        loop {
            let Some(me) = weak.upgrade() else { return };
            let (expired, next) = {
                let mut g = me.lock();
                let now = wall_now_ms();
                let limit = me.expire_ms();
                let expired: Vec<String> = g
                    .iter()
                    .filter(|(_, e)| e.status.state == UploadState::Uploading && !e.busy && now - e.last_ms >= limit)
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in &expired {
                    g.remove(k);
                }
                let next = g
                    .values()
                    .filter(|e| e.status.state == UploadState::Uploading)
                    .map(|e| if e.busy { now + 1000 } else { e.last_ms + limit })
                    .min();
                if next.is_none() {
                    me.sweeping.store(false, Ordering::SeqCst);
                }
                (expired, next)
            };
            for id in expired {
                log::info!("upload {id} expired (no bytes for uploads.expire_h = {} h)", me.cfg.expire_h);
                let me = me.clone();
                let _ = tokio::task::spawn_blocking(move || me.remove_files(&id)).await;
            }
            drop(me);
            let Some(next) = next else { return };
            let wait = (next - wall_now_ms()).clamp(10, 3_600_000) as u64;
            tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
        }
    }
}
