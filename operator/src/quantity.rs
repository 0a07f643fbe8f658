//! Kubernetes resource quantities (`500m`, `1.5Gi`, `2e3`), parsed exactly so that requests and
//! limits compare as the API server compares them, without floating-point rounding.

/// Largest magnitude the API server keeps (2^63 - 1 units); larger quantities are capped to it.
const MAX_UNITS: i128 = i64::MAX as i128;
/// Values are held in billionths of a unit: `n` (10^-9) is the finest suffix of the grammar.
const NANO: i32 = 9;
/// Mantissas longer than this are refused rather than risk overflowing the arithmetic.
const MAX_DIGITS: usize = 30;

/// The pattern of a non-negative quantity, for the CRD schema: the API server's quantity grammar
/// without the minus sign, and with integer exponents only, as its parser requires.
pub const NON_NEGATIVE_PATTERN: &str =
    r"^\+?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE][+-]?[0-9]+))?$";

/// A quantity's value in billionths of its unit (nano-cores, nano-bytes), rounded up as the API
/// server rounds, and capped at 2^63 - 1 units.
pub fn nanos(quantity: &str) -> Result<i128, String> {
    let invalid = || format!("{quantity:?} is not a quantity (examples: 500m, 1.5, 256Mi, 1Gi)");
    let (negative, rest) = match quantity.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, quantity.strip_prefix('+').unwrap_or(quantity)),
    };
    let number_end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(number_end);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
        return Err(invalid());
    }
    let (exp10, exp2): (i64, u32) = match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        s => (
            exponent(&s[1..])
                .filter(|_| s.starts_with(['e', 'E']))
                .ok_or_else(invalid)?,
            0,
        ),
    };
    let digits = format!("{whole}{fraction}");
    let digits = digits.trim_start_matches('0');
    if digits.len() > MAX_DIGITS {
        return Err(invalid());
    }
    let mantissa: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse().map_err(|_| invalid())?
    };
    let scale = exp10 - fraction.len() as i64 + i64::from(NANO);
    let cap = MAX_UNITS * 10i128.pow(NANO as u32);
    let scaled = if mantissa == 0 {
        0
    } else if scale >= 0 {
        u32::try_from(scale)
            .ok()
            .and_then(|s| 10i128.checked_pow(s))
            .and_then(|p| mantissa.checked_mul(p))
            .and_then(|v| v.checked_mul(1i128 << exp2))
            .map_or(cap, |v| v.min(cap))
    } else {
        // Finer than a nano-unit: round up, as the API server does.
        let divisor = u32::try_from(-scale)
            .ok()
            .and_then(|s| 10i128.checked_pow(s));
        let shifted = mantissa.saturating_mul(1i128 << exp2);
        divisor.map_or(1, |d| (shifted + d - 1) / d).min(cap)
    };
    Ok(if negative { -scaled } else { scaled })
}

/// A decimal exponent: an optionally signed integer.
fn exponent(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Anything beyond a few hundred saturates either way.
    s.parse::<i64>()
        .ok()
        .or(Some(if s.starts_with('-') { -1000 } else { 1000 }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GI: i128 = 1 << 30;
    const N: i128 = 1_000_000_000;

    #[test]
    fn every_suffix_of_the_grammar() {
        for (q, units_times_nano) in [
            ("0", 0),
            ("1", N),
            ("+1", N),
            ("500m", N / 2),
            ("1.5", 3 * N / 2),
            (".5", N / 2),
            ("2.", 2 * N),
            ("100n", 100),
            ("3u", 3000),
            ("1k", 1000 * N),
            ("1M", 1_000_000 * N),
            ("1G", 1_000_000_000 * N),
            ("1T", 1_000_000_000_000 * N),
            ("1Ki", 1024 * N),
            ("256Mi", 256 * (1 << 20) * N),
            ("1Gi", GI * N),
            ("1.5Gi", 3 * GI / 2 * N),
            ("1e3", 1000 * N),
            ("1E3", 1000 * N),
            ("5e-1", N / 2),
            ("1e+2", 100 * N),
            ("-1Gi", -GI * N),
            ("0.000Mi", 0),
        ] {
            assert_eq!(nanos(q), Ok(units_times_nano), "{q}");
        }
    }

    #[test]
    fn large_and_fine_quantities_are_capped_and_rounded_up() {
        let cap = MAX_UNITS * N;
        assert_eq!(nanos("1Ei"), Ok((1i128 << 60) * N));
        assert_eq!(nanos("16Ei"), Ok(cap));
        assert_eq!(nanos("1e400"), Ok(cap));
        assert_eq!(nanos("1P").unwrap() * 1000, nanos("1E").unwrap());
        assert_eq!(nanos("0.1n"), Ok(1), "rounded up to the finest unit");
        assert_eq!(nanos("1e-400"), Ok(1));
        assert_eq!(nanos("1.0000000001"), Ok(N + 1));
    }

    #[test]
    fn comparisons_are_exact() {
        assert!(nanos("1024Mi").unwrap() == nanos("1Gi").unwrap());
        assert!(nanos("1G").unwrap() < nanos("1Gi").unwrap());
        assert!(nanos("4Gi").unwrap() > nanos("1Gi").unwrap());
        assert!(nanos("999m").unwrap() < nanos("1").unwrap());
    }

    #[test]
    fn malformed_quantities_are_refused() {
        for q in [
            "", "-", "+", ".", "Gi", "1gi", "1 Gi", "1.2.3", "1e", "e3", "1e1.5", "1Gii", "--1",
            "1KiB", "0x10", "1,5",
        ] {
            let e = nanos(q).expect_err(q);
            assert!(e.contains("is not a quantity"), "{e}");
        }
        assert!(nanos(&"9".repeat(40)).is_err());
    }

    #[test]
    fn the_schema_pattern_accepts_what_parses_and_is_not_negative() {
        let re = regex::Regex::new(NON_NEGATIVE_PATTERN).unwrap();
        let pattern = |q: &str| re.is_match(q);
        for q in [
            "0", "1", "+1", "500m", ".5", "2.", "1Gi", "1e3", "5e-1", "1E",
        ] {
            assert!(pattern(q), "{q}");
            assert!(nanos(q).unwrap() >= 0, "{q}");
        }
        for q in ["-1Gi", "-0", "1gi", "1e1.5", "", "1 Gi"] {
            assert!(!pattern(q), "{q}");
        }
    }
}
