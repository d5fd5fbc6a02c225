//! Recording: an Ogg Opus file (RFC 7845) per published Opus track. Packets are written as
//! they arrive, in pages of up to one second; the granule position is the track's RTP time at
//! 48 kHz relative to its first packet, so gaps in the stream keep their length.

use std::io::{self, Write};

/// Packets per page: 50 × 20 ms = one second, well under the 255 segments a page can hold.
const PACKETS_PER_PAGE: usize = 50;
const FLAG_BOS: u8 = 0x02;
const FLAG_EOS: u8 = 0x04;

/// Writes one Opus stream into an Ogg container.
#[derive(Debug)]
pub struct OggOpusWriter<W: Write> {
    out: W,
    serial: u32,
    sequence: u32,
    first_rtp: Option<u64>,
    granule: u64,
    pending: Vec<Vec<u8>>,
    finished: bool,
}

impl<W: Write> OggOpusWriter<W> {
    /// Writes the identification and comment headers (RFC 7845 §5) for `channels` channels.
    pub fn new(mut out: W, serial: u32, channels: u8) -> io::Result<Self> {
        let head = opus_head(channels);
        write_page(&mut out, serial, 0, 0, FLAG_BOS, &[head.as_slice()])?;
        let tags = opus_tags();
        write_page(&mut out, serial, 1, 0, 0, &[tags.as_slice()])?;
        Ok(Self {
            out,
            serial,
            sequence: 2,
            first_rtp: None,
            granule: 0,
            pending: Vec::new(),
            finished: false,
        })
    }

    /// Adds one Opus packet whose RTP timestamp (48 kHz, unwrapped) is `rtp_time`.
    pub fn write_packet(&mut self, rtp_time: u64, packet: &[u8]) -> io::Result<()> {
        if packet.is_empty() || self.finished {
            return Ok(());
        }
        let first = *self.first_rtp.get_or_insert(rtp_time);
        let start = rtp_time.saturating_sub(first);
        // A packet's granule is the end of its samples (RFC 7845 §4).
        self.granule = self.granule.max(start + packet_samples(packet));
        self.pending.push(packet.to_vec());
        if self.pending.len() >= PACKETS_PER_PAGE {
            self.flush_page(0)?;
        }
        Ok(())
    }

    /// Writes the last page, marked end of stream.
    pub fn finish(&mut self) -> io::Result<()> {
        if self.finished {
            return Ok(());
        }
        self.finished = true;
        self.flush_page(FLAG_EOS)?;
        self.out.flush()
    }

    fn flush_page(&mut self, flags: u8) -> io::Result<()> {
        let packets: Vec<&[u8]> = self.pending.iter().map(Vec::as_slice).collect();
        write_page(
            &mut self.out,
            self.serial,
            self.sequence,
            self.granule,
            flags,
            &packets,
        )?;
        self.sequence += 1;
        self.pending.clear();
        Ok(())
    }
}

/// Samples (at 48 kHz) in one Opus packet, from its TOC byte (RFC 6716 §3.1).
pub fn packet_samples(packet: &[u8]) -> u64 {
    let Some(&toc) = packet.first() else {
        return 0;
    };
    let config = toc >> 3;
    let frame = match config {
        0..=11 => [480, 960, 1920, 2880][usize::from(config % 4)],
        12..=15 => [480, 960][usize::from(config % 2)],
        _ => [120, 240, 480, 960][usize::from(config % 4)],
    };
    let frames = match toc & 0x03 {
        0 => 1,
        1 | 2 => 2,
        _ => packet.get(1).map_or(0, |b| u64::from(b & 0x3F)),
    };
    frame * frames
}

/// Whether an Opus packet is coded stereo (the TOC's s bit).
pub fn is_stereo(packet: &[u8]) -> bool {
    packet.first().is_some_and(|toc| toc & 0x04 != 0)
}

fn opus_head(channels: u8) -> Vec<u8> {
    let mut head = b"OpusHead".to_vec();
    head.push(1); // version
    head.push(channels);
    head.extend(0_u16.to_le_bytes()); // pre-skip
    head.extend(48_000_u32.to_le_bytes()); // input sample rate
    head.extend(0_i16.to_le_bytes()); // output gain
    head.push(0); // channel mapping family 0: mono or stereo
    head
}

fn opus_tags() -> Vec<u8> {
    let vendor = concat!("reference-server ", env!("CARGO_PKG_VERSION"));
    let mut tags = b"OpusTags".to_vec();
    tags.extend((vendor.len() as u32).to_le_bytes());
    tags.extend(vendor.as_bytes());
    tags.extend(0_u32.to_le_bytes()); // no user comments
    tags
}

/// One Ogg page (RFC 3533 §6) holding whole packets.
fn write_page(
    out: &mut impl Write,
    serial: u32,
    sequence: u32,
    granule: u64,
    flags: u8,
    packets: &[&[u8]],
) -> io::Result<()> {
    let mut lacing = Vec::new();
    for packet in packets {
        lacing.extend(std::iter::repeat_n(255_u8, packet.len() / 255));
        lacing.push((packet.len() % 255) as u8);
    }
    let mut page = b"OggS".to_vec();
    page.push(0); // stream structure version
    page.push(flags);
    page.extend(granule.to_le_bytes());
    page.extend(serial.to_le_bytes());
    page.extend(sequence.to_le_bytes());
    page.extend(0_u32.to_le_bytes()); // checksum, filled below
    page.push(lacing.len() as u8);
    page.extend(&lacing);
    for packet in packets {
        page.extend_from_slice(packet);
    }
    let crc = crc32(&page);
    page[22..26].copy_from_slice(&crc.to_le_bytes());
    out.write_all(&page)
}

/// Ogg's CRC-32: polynomial 0x04C11DB7, no reflection, initial 0, no final xor.
fn crc32(data: &[u8]) -> u32 {
    data.iter().fold(0_u32, |crc, byte| {
        let mut crc = crc ^ (u32::from(*byte) << 24);
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04C1_1DB7
            } else {
                crc << 1
            };
        }
        crc
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checksum_matches_a_known_ogg_page() {
        // RFC 3533's CRC of "OggS" followed by zeros is a fixed value; check the polynomial on
        // a tiny input computed by hand: crc32(b"\x01") = 0x04C11DB7.
        assert_eq!(crc32(b"\x01"), 0x04C1_1DB7);
    }

    #[test]
    fn a_stereo_twenty_ms_packet_is_960_samples() {
        assert_eq!(packet_samples(&[0xFC, 1, 2]), 960);
        assert!(is_stereo(&[0xFC]));
        assert!(!is_stereo(&[0xF8]));
    }

    #[test]
    fn pages_start_with_the_headers_and_end_with_eos() {
        let mut file = Vec::new();
        let mut writer = OggOpusWriter::new(&mut file, 7, 2).expect("headers");
        for n in 0..120_u64 {
            writer.write_packet(n * 960, &[0xFC, 0, 0]).expect("packet");
        }
        writer.finish().expect("finish");
        let pages = file.windows(4).filter(|w| w == b"OggS").count();
        assert_eq!(pages, 2 + 3); // headers, then 50 + 50 + 20 packets
        assert!(file.windows(8).any(|w| w == b"OpusHead"));
    }
}
