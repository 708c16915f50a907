//! Clips: the pure clip state machine ([`state`]), the per-camera recorder that follows the
//! pre-roll buffer and writes clips crash-safely through [`crate::mp4`] ([`recorder`]), start-up
//! recovery ([`recovery`]), posters ([`poster`]) and the clip store (storage + index, [`store`]).
//! What a clip *is* lives in the leaf [`crate::clip_meta`].
//!
//! A clip starts at the keyframe at or before T − pre and is trimmed to T − pre exactly with an
//! MP4 edit list; it ends at T + post, extended by re-triggers up to `max_clip_s`. It is written
//! as fragments while the post-roll arrives, fsynced (file, then directory) and only then
//! indexed.

pub mod poster;
pub mod recorder;
pub mod recovery;
pub mod state;
pub mod store;
