//! JUnit XML, as CI systems read it: one testcase per case, failures with the wire transcript.

use super::Report;
use crate::case::Verdict;

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\t' | '\r') => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

pub fn to_junit(report: &Report) -> String {
    let s = &report.summary;
    let skipped = s.unimplemented + s.expected_failure;
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    xml.push_str(&format!(
        "<testsuites name=\"conformance\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{skipped}\" time=\"{:.3}\">\n",
        s.total, s.fail + s.stale, s.harness_error, report.duration_ms as f64 / 1000.0
    ));
    xml.push_str(&format!(
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{skipped}\">\n",
        escape(&report.protocol), s.total, s.fail + s.stale, s.harness_error
    ));
    for case in &report.cases {
        let (family, name) = case.id.rsplit_once('/').unwrap_or(("", &case.id));
        xml.push_str(&format!(
            "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\">\n",
            escape(family),
            escape(name),
            case.duration_ms as f64 / 1000.0
        ));
        xml.push_str(&verdict_element(&case.verdict, &case.transcript.join("\n")));
        xml.push_str("    </testcase>\n");
    }
    xml.push_str("  </testsuite>\n</testsuites>\n");
    xml
}

fn verdict_element(verdict: &Verdict, transcript: &str) -> String {
    match verdict {
        Verdict::Pass => String::new(),
        Verdict::Fail {
            requirement,
            expected,
            actual,
        } => format!(
            "      <failure message=\"{}\">expected: {}\nactual: {}\n\n{}</failure>\n",
            escape(requirement),
            escape(expected),
            escape(actual),
            escape(transcript)
        ),
        Verdict::Stale { reason } => format!(
            "      <failure message=\"stale expectation: {}\"/>\n",
            escape(reason)
        ),
        Verdict::HarnessError { reason } => {
            format!("      <error message=\"{}\"/>\n", escape(reason))
        }
        Verdict::Unimplemented { reason } | Verdict::ExpectedFailure { reason } => {
            format!(
                "      <skipped message=\"{}\"/>\n",
                escape(&format!("{}: {reason}", verdict.label()))
            )
        }
        Verdict::NonStrict { reason } => format!(
            "      <system-out>NON-STRICT: {}</system-out>\n",
            escape(reason)
        ),
        Verdict::Informational { note } => {
            format!("      <system-out>INFO: {}</system-out>\n", escape(note))
        }
    }
}
