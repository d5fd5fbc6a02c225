//! The SFU media plane: every publisher and subscriber peer connection of one SFU, over one
//! UDP socket. [`Sfu`] is sans-IO (str0m's `Rtc` is too): datagrams and time go in, datagrams
//! come out, and it reads no clock; the one exception is recording, which writes its Ogg files
//! as packets arrive; `crate::transport::sfu_udp` is the loop that owns the socket. Signaling reaches
//! it through [`MediaHandle`], the narrow seam a distributed deployment replaces with gRPC.

pub mod fanout;
pub mod forward;
pub mod handle;
pub mod ogg;
pub mod srtp;

pub use fanout::{FanoutCounters, FanoutMessage, SealShard};
pub use forward::{MediaStats, Sfu, SfuConfig, ViaStr0m};
pub use handle::{MediaCommand, MediaHandle};

/// Largest datagram read; WebRTC keeps packets under the path MTU.
pub const MAX_DATAGRAM: usize = 2000;
/// Peer connections one SFU holds (publishers and subscribers together).
pub const MAX_PEERS: usize = 5_000;
/// Datagrams waiting to be sent, at most; past it the oldest is dropped and counted.
pub const MAX_QUEUED_DATAGRAMS: usize = 16_384;
/// Keyframe requests toward one publisher track are sent at most this often.
pub const KEYFRAME_REQUEST_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);
/// Video packets each publisher keeps to answer NACKs of sealed video: about 1.7 s of a
/// 300-packet-a-second VP8 stream, each shared with the forwarding (no copy).
pub const RESEND_BUFFER: usize = 512;
/// Packets one NACK can have sent again (a NACK item names up to 17).
pub const MAX_RESENT_PER_NACK: usize = 64;
/// Packets the SFU sends again to one subscriber in a second, at most, by default
/// (`--sfu-resends-per-second`), with bursts of two NACKs' worth: twice a 300-packet-a-second
/// VP8 stream, so that recovering from heavy loss fits, and a subscriber that repeats its
/// NACKs cannot have the SFU resend without end.
pub const MAX_RESENT_PER_SECOND: u32 = 600;
/// Fanout threads at most, whatever the machine.
pub const MAX_FANOUT_THREADS: usize = 7;

/// Fanout threads by default: one for each core past the first, so that the media loop and
/// its fanout threads can all run at once.
pub fn default_fanout_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(0, |cores| cores.get() - 1)
        .min(MAX_FANOUT_THREADS)
}

/// How the media plane forwards and keeps media: what the command line sets, carried as one
/// piece from the server's setup to the forwarding core.
#[derive(Debug, Clone)]
pub struct MediaOptions {
    /// With a directory, each published Opus track is recorded to `<dir>/<mid>.ogg`.
    pub record_dir: Option<std::path::PathBuf>,
    /// Which kinds of forwarded media go through each subscriber's `Rtc` instead of being
    /// sealed by the SFU itself (CLARIFICATIONS S8).
    pub via_str0m: ViaStr0m,
    /// Threads that seal and send forwarded media beside the media loop, at most
    /// [`MAX_FANOUT_THREADS`]: sealed media is split among one shard more than this, the media
    /// loop's own and one for each thread ([`Sfu::poll_fanout`] hands them out).
    pub fanout_threads: usize,
    /// Packets resent to one subscriber a second, at most ([`MAX_RESENT_PER_SECOND`] by
    /// default), in bursts of up to two NACKs' worth and at most a second's.
    pub resends_per_second: u32,
}

impl Default for MediaOptions {
    fn default() -> Self {
        Self {
            record_dir: None,
            via_str0m: ViaStr0m::default(),
            fanout_threads: default_fanout_threads(),
            resends_per_second: MAX_RESENT_PER_SECOND,
        }
    }
}
