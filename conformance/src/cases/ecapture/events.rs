//! Every field rule of `Event`, checked on a sample of captured events.

use super::{each, event_sample};
use crate::case::{Case, CaseResult, Outcome};
use crate::target::Ctx;
use crate::wire::ecapture::Event;
use std::net::IpAddr;

/// Unix nanoseconds between 2001 and 2286 have 19 digits; seconds, milliseconds and
/// microseconds of today's dates have 10, 13 and 16.
const NANOS_SINCE_2001: std::ops::Range<i64> = 1_000_000_000_000_000_000..i64::MAX;
/// The `type` values in use: the document's 0-4 and eCapture's 5 (WebSocket).
const KNOWN_TYPES: std::ops::RangeInclusive<u32> = 0..=5;

pub fn cases() -> Vec<Case> {
    vec![
        Case::must("ecapture/event/length-equals-payload")
            .documented("002 §Event: uint32 length：payload 的有效长度（字节数）")
            .sends("nothing: reads a sample of events")
            .requires("length equals the number of payload bytes")
            .run(|c| Box::pin(length_equals_payload(c))),
        Case::must("ecapture/event/ports-in-range")
            .documented("002 §Event: uint32 src_port / dst_port：源端口和目标端口")
            .sends("nothing: reads a sample of events")
            .requires("src_port and dst_port are TCP/UDP ports: at most 65535")
            .run(|c| Box::pin(ports_in_range(c))),
        Case::must("ecapture/event/addresses-are-ips")
            .documented("002 §Event: string src_ip / dst_ip：源 IP 地址和目标 IP 地址")
            .sends("nothing: reads a sample of events")
            .requires("src_ip and dst_ip parse as IPv4 or IPv6 addresses")
            .run(|c| Box::pin(addresses_are_ips(c))),
        Case::should("ecapture/event/timestamp-nanoseconds")
            .inferred("E3: event timestamps are Unix nanoseconds")
            .sends("nothing: reads a sample of events")
            .requires("timestamp is a Unix time in nanoseconds (19 digits)")
            .run(|c| Box::pin(timestamp_nanoseconds(c))),
        Case::should("ecapture/event/uuid-shape")
            .inferred("E3: uuid is Pid_Tid_Comm_Fd_DataType")
            .sends("nothing: reads a sample of events")
            .requires(
                "uuid is <pid>_<tid>_<comm>_<fd>_<datatype> with numeric pid, tid, fd and datatype",
            )
            .run(|c| Box::pin(uuid_shape(c))),
        Case::should("ecapture/event/type-known")
            .documented("002 §Event: uint32 type 0-4 (eCapture also uses 5, WebSocket; E3)")
            .sends("nothing: reads a sample of events")
            .requires("type is one of 0-5")
            .run(|c| Box::pin(type_known(c))),
    ]
}

fn describe(event: &Event) -> String {
    format!(
        "uuid={} type={} {}:{} -> {}:{} length={} payload={} bytes timestamp={}",
        event.uuid,
        event.r#type,
        event.src_ip,
        event.src_port,
        event.dst_ip,
        event.dst_port,
        event.length,
        event.payload.len(),
        event.timestamp
    )
}

async fn length_equals_payload(ctx: Ctx) -> CaseResult {
    let events = event_sample(&ctx).await?;
    each(
        &events,
        "length equal to the payload's size",
        describe,
        |e| e.length as usize == e.payload.len(),
    )?;
    Ok(Outcome::Pass)
}

async fn ports_in_range(ctx: Ctx) -> CaseResult {
    let events = event_sample(&ctx).await?;
    each(&events, "ports of at most 65535", describe, |e| {
        e.src_port <= 65_535 && e.dst_port <= 65_535
    })?;
    Ok(Outcome::Pass)
}

async fn addresses_are_ips(ctx: Ctx) -> CaseResult {
    let events = event_sample(&ctx).await?;
    each(
        &events,
        "IP addresses in src_ip and dst_ip",
        describe,
        |e| e.src_ip.parse::<IpAddr>().is_ok() && e.dst_ip.parse::<IpAddr>().is_ok(),
    )?;
    Ok(Outcome::Pass)
}

async fn timestamp_nanoseconds(ctx: Ctx) -> CaseResult {
    let events = event_sample(&ctx).await?;
    each(&events, "a timestamp in Unix nanoseconds", describe, |e| {
        NANOS_SINCE_2001.contains(&e.timestamp)
    })?;
    Ok(Outcome::Pass)
}

async fn uuid_shape(ctx: Ctx) -> CaseResult {
    let events = event_sample(&ctx).await?;
    each(&events, "a uuid Pid_Tid_Comm_Fd_DataType", describe, |e| {
        is_capture_uuid(&e.uuid)
    })?;
    Ok(Outcome::Pass)
}

/// `<pid>_<tid>_<comm>_<fd>_<datatype>`; the command name may itself hold underscores.
pub fn is_capture_uuid(uuid: &str) -> bool {
    let parts: Vec<&str> = uuid.split('_').collect();
    let numeric = |s: &&str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    parts.len() >= 5
        && parts[..2].iter().all(numeric)
        && parts[parts.len() - 2..].iter().all(numeric)
        && parts[2..parts.len() - 2].iter().any(|p| !p.is_empty())
}

async fn type_known(ctx: Ctx) -> CaseResult {
    let events = event_sample(&ctx).await?;
    each(&events, "a type of 0-5", describe, |e| {
        KNOWN_TYPES.contains(&e.r#type)
    })?;
    Ok(Outcome::Pass)
}

#[cfg(test)]
mod tests {
    use super::is_capture_uuid;

    #[test]
    fn capture_uuids_are_told_from_others() {
        assert!(is_capture_uuid("4242_4243_curl_5_0"));
        assert!(is_capture_uuid("1_2_my_prog_3_1"));
        assert!(!is_capture_uuid("7d6f3c2e-8a1b-4c55-9e0f-2b3a4c5d6e7f"));
        assert!(!is_capture_uuid("4242_x_curl_5_0"));
        assert!(!is_capture_uuid("1_2__3_4"));
    }
}
