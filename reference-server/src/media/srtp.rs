//! Forwarded media sealed by the SFU itself (CLARIFICATIONS S8).
//!
//! A packet written through str0m costs each subscriber's `Rtc` a write, a pass of its timers
//! and two polls: about 10 µs of the SFU's 18 µs per forwarded Opus packet. Once DTLS has
//! given the keys nothing of str0m's send path is needed: the SFU renumbers the packet, writes
//! the RTP header and seals it with the subscriber's SRTP key (AEAD-AES-GCM, RFC 7714), and
//! str0m keeps ICE, DTLS and RTCP. A NACKed VP8 packet is sealed again the same way from the
//! publisher's recent packets (the same index gives the same bytes).
//!
//! str0m does not hand out the DTLS-SRTP keying material, so the SFU's peer connections are
//! built with a crypto provider whose DTLS instances copy it as it passes to str0m.

use std::cell::RefCell;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Instant;
use str0m::crypto::dtls::{
    DtlsCert, DtlsImplError, DtlsInstance, DtlsOutput, DtlsProvider, DtlsVersion, ProtocolVersion,
    SrtpProfile,
};
use str0m::crypto::{
    AeadAes128Gcm, AeadAes128GcmCipher, AeadAes256Gcm, AeadAes256GcmCipher, CryptoError,
    CryptoProvider,
};
use str0m::{Rtc, RtcConfig};

/// RFC 3711 §4.3.1 key derivation labels: the SRTP encryption key and salt.
const LABEL_RTP_ENCRYPTION: u8 = 0;
const LABEL_RTP_SALT: u8 = 2;
/// RFC 7714 §8.1: the AEAD authentication tag.
const TAG_LEN: usize = 16;
/// RFC 5285 §4.2: one-byte header extensions carry ids 1 to 14 and 1 to 16 bytes.
const ONE_BYTE_MAX_ID: u8 = 14;
const ONE_BYTE_MAX_LEN: usize = 16;

/// DTLS-SRTP keying material as DTLS exported it, and which side of it this end writes with.
#[derive(Debug, Clone)]
struct ExportedKeys {
    material: Vec<u8>,
    profile: SrtpProfile,
    /// DTLS client: it writes with the client's half (RFC 5764 §4.2).
    active: bool,
}

/// Where one peer connection's DTLS instance leaves its keying material.
#[derive(Debug, Clone, Default)]
pub struct KeySlot(Arc<Mutex<Option<ExportedKeys>>>);

impl KeySlot {
    fn fill(&self, keys: ExportedKeys) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(keys);
    }

    /// How this end's packets can be sealed now.
    pub fn sealing(&self) -> Sealing {
        let keys = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match keys {
            None => Sealing::Pending,
            Some(keys) => {
                Sealer::new(&keys, base_provider()).map_or(Sealing::ByStr0m, Sealing::Ready)
            }
        }
    }
}

/// Whether the SFU can seal a peer connection's packets itself.
#[derive(Debug)]
pub enum Sealing {
    /// DTLS has not given the keys yet.
    Pending,
    Ready(Sealer),
    /// A profile only str0m seals (AES-CM with HMAC-SHA1).
    ByStr0m,
}

thread_local! {
    /// The slot the next DTLS instance created on this thread reports to.
    static NEXT_SLOT: RefCell<Option<KeySlot>> = const { RefCell::new(None) };
}

/// Builds a peer connection whose DTLS keying material lands in the returned slot.
pub fn build_rtc(config: RtcConfig, now: Instant) -> (Rtc, KeySlot) {
    let slot = KeySlot::default();
    NEXT_SLOT.with(|next| *next.borrow_mut() = Some(slot.clone()));
    let rtc = config.set_crypto_provider(capturing_provider()).build(now);
    // Taken by the DTLS instance; cleared in case a future str0m creates it later.
    NEXT_SLOT.with(|next| next.borrow_mut().take());
    (rtc, slot)
}

/// The provider str0m would use on its own.
fn base_provider() -> &'static CryptoProvider {
    static BASE: OnceLock<CryptoProvider> = OnceLock::new();
    BASE.get_or_init(|| {
        CryptoProvider::get_default()
            .cloned()
            .unwrap_or_else(str0m::crypto::from_feature_flags)
    })
}

/// The base provider with DTLS instances that report their keying material.
fn capturing_provider() -> Arc<CryptoProvider> {
    static CAPTURING: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    static DTLS: CapturingDtlsProvider = CapturingDtlsProvider;
    CAPTURING
        .get_or_init(|| {
            Arc::new(CryptoProvider {
                dtls_provider: &DTLS,
                ..base_provider().clone()
            })
        })
        .clone()
}

#[derive(Debug)]
struct CapturingDtlsProvider;

impl DtlsProvider for CapturingDtlsProvider {
    fn generate_certificate(&self) -> Option<DtlsCert> {
        base_provider().dtls_provider.generate_certificate()
    }

    fn new_dtls(
        &self,
        cert: &DtlsCert,
        now: Instant,
        dtls_version: DtlsVersion,
        mtu: Option<usize>,
    ) -> Result<Box<dyn DtlsInstance>, CryptoError> {
        let inner = base_provider()
            .dtls_provider
            .new_dtls(cert, now, dtls_version, mtu)?;
        match NEXT_SLOT.with(|next| next.borrow_mut().take()) {
            Some(slot) => Ok(Box::new(CapturingDtls { inner, slot })),
            None => Ok(inner),
        }
    }

    fn is_test(&self) -> bool {
        base_provider().dtls_provider.is_test()
    }
}

/// A DTLS instance that copies the keying material it hands to str0m.
#[derive(Debug)]
struct CapturingDtls {
    inner: Box<dyn DtlsInstance>,
    slot: KeySlot,
}

impl DtlsInstance for CapturingDtls {
    fn set_active(&mut self, active: bool) {
        self.inner.set_active(active)
    }

    fn handle_packet(&mut self, packet: &[u8]) -> Result<(), DtlsImplError> {
        self.inner.handle_packet(packet)
    }

    fn poll_output<'a>(&mut self, buf: &'a mut [u8]) -> DtlsOutput<'a> {
        let output = self.inner.poll_output(buf);
        if let DtlsOutput::KeyingMaterial(material, profile) = &output {
            self.slot.fill(ExportedKeys {
                material: material.to_vec(),
                profile: *profile,
                active: self.inner.is_active(),
            });
        }
        output
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsImplError> {
        self.inner.handle_timeout(now)
    }

    fn send_application_data(&mut self, data: &[u8]) -> Result<usize, DtlsImplError> {
        self.inner.send_application_data(data)
    }

    fn is_active(&self) -> bool {
        self.inner.is_active()
    }

    fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.inner.protocol_version()
    }

    fn is_closing(&self) -> bool {
        self.inner.is_closing()
    }

    fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    fn close(&mut self) -> Result<(), DtlsImplError> {
        self.inner.close()
    }
}

/// An outgoing RTP packet's header fields.
#[derive(Debug, Clone, Copy)]
pub struct RtpFields<'a> {
    pub payload_type: u8,
    pub marker: bool,
    /// Extended sequence number: the rollover count above the 16 bits on the wire.
    pub sequence: u64,
    pub timestamp: u32,
    pub ssrc: u32,
    /// One-byte header extensions (id, value); ids above 14 or longer values are left out.
    pub extensions: &'a [(u8, &'a [u8])],
}

/// Seals RTP packets with one end's SRTP session key and salt (RFC 7714 AEAD-AES-GCM).
pub struct Sealer {
    cipher: GcmCipher,
    salt: [u8; 12],
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer")
    }
}

enum GcmCipher {
    Aes128(Box<dyn AeadAes128GcmCipher>),
    Aes256(Box<dyn AeadAes256GcmCipher>),
}

impl Sealer {
    fn new(keys: &ExportedKeys, provider: &CryptoProvider) -> Option<Self> {
        let srtp = provider.srtp_provider;
        let (cipher, salt) = match keys.profile {
            SrtpProfile::AEAD_AES_128_GCM => {
                let (key, salt) =
                    session_key_and_salt::<{ AeadAes128Gcm::KEY_LEN }>(keys, provider)?;
                (
                    GcmCipher::Aes128(srtp.aead_aes_128_gcm().create_cipher(key, true)),
                    salt,
                )
            }
            SrtpProfile::AEAD_AES_256_GCM => {
                let (key, salt) =
                    session_key_and_salt::<{ AeadAes256Gcm::KEY_LEN }>(keys, provider)?;
                (
                    GcmCipher::Aes256(srtp.aead_aes_256_gcm().create_cipher(key, true)),
                    salt,
                )
            }
            _ => return None,
        };
        Some(Self { cipher, salt })
    }

    /// The SRTP packet: header, encrypted payload, tag.
    pub fn seal(&mut self, fields: &RtpFields<'_>, payload: &[u8]) -> Option<Vec<u8>> {
        // One allocation: the header with its extensions is at most 12 + 4 + 2 * 17 bytes here.
        let mut packet = Vec::with_capacity(64 + payload.len() + TAG_LEN);
        write_header(fields, &mut packet);
        let header_len = packet.len();
        packet.resize(header_len + payload.len() + TAG_LEN, 0);
        let (header, body) = packet.split_at_mut(header_len);
        let roc = (fields.sequence >> 16) as u32;
        let seq = fields.sequence as u16;
        // Same IV for both key sizes (RFC 7714 §8.1).
        let iv = AeadAes256Gcm::rtp_iv(self.salt, fields.ssrc, roc, seq);
        let sealed = match &mut self.cipher {
            GcmCipher::Aes128(cipher) => cipher.encrypt(&iv, header, payload, body),
            GcmCipher::Aes256(cipher) => cipher.encrypt(&iv, header, payload, body),
        };
        sealed.ok().map(|()| packet)
    }
}

/// This end's SRTP session key and salt for an AEAD-AES-GCM profile with a `KEY`-byte key.
fn session_key_and_salt<const KEY: usize>(
    keys: &ExportedKeys,
    provider: &CryptoProvider,
) -> Option<([u8; KEY], [u8; 12])> {
    let master = MasterKey::<KEY, 12>::split(keys)?;
    let mut key = [0; KEY];
    master.derive(provider, LABEL_RTP_ENCRYPTION, &mut key);
    Some((key, master.session_salt(provider)))
}

/// An SRTP master key and salt: one side's half of the DTLS-SRTP keying material.
struct MasterKey<const KEY: usize, const SALT: usize> {
    key: [u8; KEY],
    salt: [u8; SALT],
}

impl<const KEY: usize, const SALT: usize> MasterKey<KEY, SALT> {
    /// RFC 5764 §4.2: client key, server key, client salt, server salt.
    fn split(keys: &ExportedKeys) -> Option<Self> {
        let material = &keys.material;
        if material.len() != 2 * (KEY + SALT) {
            return None;
        }
        let (key_at, salt_at) = if keys.active {
            (0, 2 * KEY)
        } else {
            (KEY, 2 * KEY + SALT)
        };
        Some(Self {
            key: material[key_at..key_at + KEY].try_into().ok()?,
            salt: material[salt_at..salt_at + SALT].try_into().ok()?,
        })
    }

    fn session_salt(&self, provider: &CryptoProvider) -> [u8; 12] {
        let mut salt = [0; 12];
        self.derive(provider, LABEL_RTP_SALT, &mut salt);
        salt
    }

    /// RFC 3711 §4.3.3: the AES-CM PRF keyed with the master key, over the master salt with
    /// the label at byte 7 and a block counter in the last two bytes (key derivation rate 0).
    fn derive(&self, provider: &CryptoProvider, label: u8, out: &mut [u8]) {
        let mut input = [0_u8; 16];
        input[..SALT].copy_from_slice(&self.salt);
        input[7] ^= label;
        let mut block = [0_u8; 32];
        for (round, chunk) in out.chunks_mut(16).enumerate() {
            input[14..].copy_from_slice(&(round as u16).to_be_bytes());
            if KEY == 16 {
                provider
                    .srtp_provider
                    .srtp_aes_128_ecb_round(&self.key, &input, &mut block);
            } else {
                provider
                    .srtp_provider
                    .srtp_aes_256_ecb_round(&self.key, &input, &mut block);
            }
            chunk.copy_from_slice(&block[..chunk.len()]);
        }
    }
}

/// RFC 3550 §5.1 header with RFC 5285 one-byte extensions, padded to 32 bits.
fn write_header(fields: &RtpFields<'_>, header: &mut Vec<u8>) {
    let extensions = fields.extensions.iter().filter(|(id, value)| {
        (1..=ONE_BYTE_MAX_ID).contains(id) && (1..=ONE_BYTE_MAX_LEN).contains(&value.len())
    });
    let extended = extensions.clone().next().is_some();
    header.push(0x80 | if extended { 0x10 } else { 0 });
    header.push(u8::from(fields.marker) << 7 | (fields.payload_type & 0x7F));
    header.extend_from_slice(&(fields.sequence as u16).to_be_bytes());
    header.extend_from_slice(&fields.timestamp.to_be_bytes());
    header.extend_from_slice(&fields.ssrc.to_be_bytes());
    if extended {
        header.extend_from_slice(&[0xBE, 0xDE, 0, 0]);
        let start = header.len();
        for (id, value) in extensions {
            header.push(id << 4 | (value.len() - 1) as u8);
            header.extend_from_slice(value);
        }
        while (header.len() - start) % 4 != 0 {
            header.push(0);
        }
        let words = ((header.len() - start) / 4) as u16;
        header[start - 2..start].copy_from_slice(&words.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_carries_one_byte_extensions_padded_to_a_word() {
        let fields = RtpFields {
            payload_type: 111,
            marker: true,
            sequence: 0x1_0002,
            timestamp: 960,
            ssrc: 0xAABBCCDD,
            extensions: &[(4, b"a1"), (1, &[0x85]), (15, b"too high")],
        };
        let mut header = Vec::new();
        write_header(&fields, &mut header);
        assert_eq!(
            header,
            [
                0x90, 0xEF, 0x00, 0x02, 0, 0, 0x03, 0xC0, 0xAA, 0xBB, 0xCC, 0xDD, // fixed
                0xBE, 0xDE, 0x00, 0x02, // one-byte profile, two words
                0x41, b'a', b'1', 0x10, 0x85, 0, 0, 0, // mid "a1", audio level, padding
            ]
        );
    }

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
            .collect()
    }

    #[test]
    fn key_derivation_gives_the_session_key_and_salt_of_rfc_3711_b_3() {
        let master = MasterKey::<16, 14> {
            key: hex("E1F97A0D3E018BE0D64FA32C06DE4139")
                .try_into()
                .expect("16"),
            salt: hex("0EC675AD498AFEEBB6960B3AABE6").try_into().expect("14"),
        };
        let mut key = [0; 16];
        master.derive(base_provider(), LABEL_RTP_ENCRYPTION, &mut key);
        assert_eq!(key.to_vec(), hex("C61E7A93744F39EE10734AFE3FF7A087"));
        let mut salt = [0; 14];
        master.derive(base_provider(), LABEL_RTP_SALT, &mut salt);
        assert_eq!(salt.to_vec(), hex("30CBBC08863D8C85D49DB34A9AE1"));
    }

    #[test]
    fn the_master_key_is_the_writers_half_of_the_keying_material() {
        let material: Vec<u8> = (0..56).collect();
        let client = ExportedKeys {
            material: material.clone(),
            profile: SrtpProfile::AEAD_AES_128_GCM,
            active: true,
        };
        let server = ExportedKeys {
            active: false,
            ..client.clone()
        };
        let client = MasterKey::<16, 12>::split(&client).expect("56 bytes split");
        let server = MasterKey::<16, 12>::split(&server).expect("56 bytes split");
        assert_eq!(client.key[0], 0);
        assert_eq!(server.key[0], 16);
        assert_eq!(client.salt[0], 32);
        assert_eq!(server.salt[0], 44);
        assert!(MasterKey::<32, 12>::split(&ExportedKeys {
            material,
            profile: SrtpProfile::AEAD_AES_256_GCM,
            active: true
        })
        .is_none());
    }
}
