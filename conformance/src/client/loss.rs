//! A subscriber that loses some of the video that reaches it, to see whether the sender
//! resends it (`MediaPeer::lossy_subscriber`).
//!
//! SRTP leaves the RTP header in the clear (RFC 3711 §3.1), so a datagram's payload type,
//! sequence number and SSRC can be read before str0m decrypts it. Every `every`-th VP8 packet
//! is dropped before str0m sees it; str0m then asks for it again (NACK, RFC 4585 §6.2.1). What
//! comes back counts as resent: a packet on an RTX payload type of the offer (RFC 4588), or
//! a dropped packet's own sequence number and SSRC once more.

use super::media::is_rtp;
use std::collections::HashSet;

/// What to do with one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Hand it to str0m.
    Keep,
    /// Lose it: str0m never sees it.
    Drop,
    /// A retransmission: handed to str0m, and counted.
    Resent,
}

#[derive(Debug, Clone)]
pub struct Loss {
    every: u64,
    video_seen: u64,
    video_payload_types: HashSet<u8>,
    rtx_payload_types: HashSet<u8>,
    /// (SSRC, sequence number) of each packet dropped.
    dropped: HashSet<(u32, u16)>,
}

impl Loss {
    /// Drops every `every`-th VP8 packet (at least every second one), the payload types
    /// read from the peer's own SDP `offer`.
    pub fn new(every: u64, offer: &str) -> Self {
        Self {
            every: every.max(2),
            video_seen: 0,
            video_payload_types: payload_types(offer, "vp8/90000"),
            rtx_payload_types: payload_types(offer, "rtx/90000"),
            dropped: HashSet::new(),
        }
    }

    pub fn judge(&mut self, datagram: &[u8]) -> Verdict {
        let Some((payload_type, sequence, ssrc)) = rtp_header(datagram) else {
            return Verdict::Keep;
        };
        if self.rtx_payload_types.contains(&payload_type)
            || self.dropped.contains(&(ssrc, sequence))
        {
            return Verdict::Resent;
        }
        if !self.video_payload_types.contains(&payload_type) {
            return Verdict::Keep;
        }
        self.video_seen += 1;
        if self.video_seen % self.every != 0 {
            return Verdict::Keep;
        }
        self.dropped.insert((ssrc, sequence));
        Verdict::Drop
    }
}

/// An RTP datagram's payload type, sequence number and SSRC; `None` for anything else.
fn rtp_header(datagram: &[u8]) -> Option<(u8, u16, u32)> {
    let header = datagram.get(..12).filter(|_| is_rtp(datagram))?;
    let payload_type = header[1] & 0x7F;
    let sequence = u16::from_be_bytes([header[2], header[3]]);
    let ssrc = u32::from_be_bytes([header[8], header[9], header[10], header[11]]);
    Some((payload_type, sequence, ssrc))
}

/// The payload types an SDP maps to `encoding` (`a=rtpmap:<pt> <encoding>`, any case).
fn payload_types(sdp: &str, encoding: &str) -> HashSet<u8> {
    sdp.lines()
        .filter_map(|line| line.trim().strip_prefix("a=rtpmap:"))
        .filter_map(|map| map.split_once(' '))
        .filter(|(_, name)| name.to_ascii_lowercase().starts_with(encoding))
        .filter_map(|(pt, _)| pt.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str =
        "v=0\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:97 rtx/90000\r\na=rtpmap:111 opus/48000/2\r\n";

    fn rtp(payload_type: u8, sequence: u16, ssrc: u32) -> Vec<u8> {
        let mut datagram = vec![0x80, payload_type];
        datagram.extend(sequence.to_be_bytes());
        datagram.extend([0; 4]);
        datagram.extend(ssrc.to_be_bytes());
        datagram.extend([0xAA; 20]);
        datagram
    }

    #[test]
    fn every_third_vp8_packet_is_dropped_and_audio_is_kept() {
        let mut loss = Loss::new(3, OFFER);
        let verdicts: Vec<Verdict> = (1..=6).map(|n| loss.judge(&rtp(96, n, 7))).collect();
        use Verdict::{Drop, Keep};
        assert_eq!(verdicts, [Keep, Keep, Drop, Keep, Keep, Drop]);
        assert_eq!(loss.judge(&rtp(111, 1, 9)), Keep);
        assert_eq!(loss.judge(&rtp(111, 2, 9)), Keep);
        assert_eq!(loss.judge(&rtp(111, 3, 9)), Keep);
    }

    #[test]
    fn a_dropped_packet_again_or_an_rtx_packet_counts_as_resent() {
        let mut loss = Loss::new(2, OFFER);
        assert_eq!(loss.judge(&rtp(96, 1, 7)), Verdict::Keep);
        assert_eq!(loss.judge(&rtp(96, 2, 7)), Verdict::Drop);
        assert_eq!(loss.judge(&rtp(96, 2, 7)), Verdict::Resent);
        assert_eq!(loss.judge(&rtp(97, 1, 8)), Verdict::Resent);
    }

    #[test]
    fn rtcp_and_short_datagrams_are_kept() {
        let mut loss = Loss::new(2, OFFER);
        // A receiver report (payload type 201 = 73 with the marker bit).
        let mut report = rtp(0, 0, 0);
        report[1] = 201;
        for _ in 0..4 {
            assert_eq!(loss.judge(&report), Verdict::Keep);
        }
        assert_eq!(loss.judge(&[0x80, 96, 0]), Verdict::Keep);
    }
}
