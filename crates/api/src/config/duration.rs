//! Go's `time.Duration` text form, as `metav1.Duration` fields carry it (`90s`, `1m30s`,
//! `1.5h`, `300ms`).

use std::time::Duration;

/// Why a duration did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {text:?}: {reason}")]
pub struct DurationError {
    /// The text as written.
    pub text: String,
    /// What is wrong.
    pub reason: &'static str,
}

/// Longest accepted input, so that a hostile string cannot make parsing slow.
const DURATION_TEXT_LEN_MAX: usize = 64;

/// Parses a non-negative Go duration (`time.ParseDuration`): one or more `<number><unit>`
/// groups, units `ns`, `us`, `µs`, `ms`, `s`, `m`, `h`; a lone `0` is zero. A leading `+` is
/// allowed; a leading `-` is rejected because no duration field here may be negative.
pub fn parse_go_duration(text: &str) -> Result<Duration, DurationError> {
    let error = |reason| DurationError {
        text: text.to_owned(),
        reason,
    };
    if text.len() > DURATION_TEXT_LEN_MAX {
        return Err(error("too long"));
    }
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    if rest.starts_with('-') {
        return Err(error("must not be negative"));
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(error("empty"));
    }
    let mut total_ns: u128 = 0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_len);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        rest = after;
        let unit_ns: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            "" => return Err(error("missing unit")),
            _ => return Err(error("unknown unit")),
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && fraction.is_empty() {
            return Err(error("missing number"));
        }
        if fraction.contains('.') {
            return Err(error("malformed number"));
        }
        let whole_value: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| error("number out of range"))?
        };
        let mut value_ns = whole_value
            .checked_mul(unit_ns)
            .ok_or_else(|| error("out of range"))?;
        let mut scale = unit_ns;
        for digit in fraction.chars().take(30) {
            scale /= 10;
            let digit = u128::from(
                digit
                    .to_digit(10)
                    .ok_or_else(|| error("malformed number"))?,
            );
            value_ns += digit * scale;
        }
        total_ns = total_ns
            .checked_add(value_ns)
            .ok_or_else(|| error("out of range"))?;
    }
    // Go's Duration is an int64 of nanoseconds.
    if total_ns > i64::MAX as u128 {
        return Err(error("out of range"));
    }
    let seconds = u64::try_from(total_ns / 1_000_000_000).map_err(|_| error("out of range"))?;
    let nanos = u32::try_from(total_ns % 1_000_000_000).map_err(|_| error("out of range"))?;
    Ok(Duration::new(seconds, nanos))
}

/// Formats as Go's `Duration.String()` (`2m0s`, `1h30m0s`, `1.5s`, `300ms`, `0s`).
pub fn format_go_duration(duration: Duration) -> String {
    let total_ns = duration.as_nanos();
    if total_ns == 0 {
        return "0s".to_owned();
    }
    if total_ns < 1_000_000_000 {
        let (unit_ns, unit) = if total_ns < 1_000 {
            (1, "ns")
        } else if total_ns < 1_000_000 {
            (1_000, "µs")
        } else {
            (1_000_000, "ms")
        };
        return format!("{}{unit}", decimal(total_ns, unit_ns));
    }
    let hours = total_ns / 3_600_000_000_000;
    let minutes = (total_ns / 60_000_000_000) % 60;
    let seconds_ns = total_ns % 60_000_000_000;
    let seconds = decimal(seconds_ns, 1_000_000_000);
    if hours > 0 {
        format!("{hours}h{minutes}m{seconds}s")
    } else if minutes > 0 {
        format!("{minutes}m{seconds}s")
    } else {
        format!("{seconds}s")
    }
}

/// `value / unit` with the fraction written out and trailing zeros dropped.
fn decimal(value: u128, unit: u128) -> String {
    let whole = value / unit;
    let fraction = value % unit;
    if fraction == 0 {
        return whole.to_string();
    }
    let width = unit.ilog10() as usize;
    let digits = format!("{fraction:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let cases: [(&str, Result<Duration, ()>); 12] = [
            ("90s", Ok(Duration::from_secs(90))),
            ("1m30s", Ok(Duration::from_secs(90))),
            ("2m0s", Ok(Duration::from_secs(120))),
            ("1.5h", Ok(Duration::from_secs(5400))),
            ("300ms", Ok(Duration::from_millis(300))),
            ("0", Ok(Duration::ZERO)),
            ("0s", Ok(Duration::ZERO)),
            ("10us", Ok(Duration::from_micros(10))),
            ("-1s", Err(())),
            ("90", Err(())),
            ("1x", Err(())),
            ("", Err(())),
        ];
        for (text, want) in cases {
            assert_eq!(parse_go_duration(text).map_err(|_| ()), want, "{text}");
        }
    }

    #[test]
    fn format_table() {
        let cases = [
            (Duration::from_secs(120), "2m0s"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_secs(3), "3s"),
            (Duration::from_secs(3600), "1h0m0s"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_millis(300), "300ms"),
            (Duration::ZERO, "0s"),
        ];
        for (duration, want) in cases {
            assert_eq!(format_go_duration(duration), want);
        }
    }
}
