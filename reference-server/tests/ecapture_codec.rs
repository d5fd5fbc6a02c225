//! The ecapture codec: arbitrary bytes never panic the collector's decoder, and every entry
//! the encoder writes decodes back to itself.

use bytes::Bytes;
use proptest::prelude::*;
use prost::Message as _;
use reference_server::clients::collector::{decode, Report};
use reference_server::protocol::ecapture::pb::{log_entry::Payload, Event, Heartbeat, LogEntry};
use reference_server::protocol::ecapture::{entries, Encoder, EventRecord, Frame};

fn any_event() -> impl Strategy<Value = Event> {
    (
        any::<i64>(),
        ".{0,40}",
        (".{0,15}", any::<u32>(), ".{0,15}", any::<u32>()),
        (any::<i64>(), ".{0,16}", any::<u32>()),
        proptest::collection::vec(any::<u8>(), 0..512),
    )
        .prop_map(
            |(
                timestamp,
                uuid,
                (src_ip, src_port, dst_ip, dst_port),
                (pid, pname, kind),
                payload,
            )| Event {
                timestamp,
                uuid,
                src_ip,
                src_port,
                dst_ip,
                dst_port,
                pid,
                pname,
                r#type: kind,
                length: payload.len() as u32,
                payload: Bytes::from(payload),
            },
        )
}

fn any_entry() -> impl Strategy<Value = LogEntry> {
    prop_oneof![
        any_event().prop_map(entries::event),
        (any::<i64>(), any::<i64>()).prop_map(|(t, c)| entries::heartbeat(t, c)),
        ".{0,200}".prop_map(|line| entries::run_log(&line)),
        (0i32..3).prop_map(|log_type| LogEntry {
            log_type,
            payload: None
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let report = decode(&bytes);
        // Whatever it is, it can be reported.
        let _ = report.record();
        let _ = report.readable();
    }

    #[test]
    fn every_encoded_entry_decodes_back_to_itself(entry in any_entry()) {
        let Frame::Binary(bytes) = Encoder::default().encode(entry.clone()) else {
            panic!("the clean encoder writes binary frames");
        };
        prop_assert_eq!(decode(&bytes), Report::Entry(entry.clone()));
        prop_assert_eq!(LogEntry::decode(bytes).expect("decodes"), entry);
    }

    #[test]
    fn every_event_survives_its_json_record(event in any_event()) {
        let record = EventRecord::from_event(&event);
        let line = serde_json::to_string(&record).expect("serializes");
        let back: EventRecord = serde_json::from_str(&line).expect("parses");
        prop_assert_eq!(back.to_event().expect("valid"), event);
    }

    #[test]
    fn a_heartbeat_decodes_by_its_oneof_with_log_type_absent(count in any::<i64>()) {
        let bytes = entries::heartbeat(1, count).encode_to_vec();
        let decoded = LogEntry::decode(&bytes[..]).expect("decodes");
        prop_assert_eq!(decoded.log_type, 0);
        let is_heartbeat = matches!(decoded.payload, Some(Payload::HeartbeatPayload(Heartbeat { count: c, .. })) if c == count);
        prop_assert!(is_heartbeat);
    }
}
