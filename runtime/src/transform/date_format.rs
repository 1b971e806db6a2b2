//! Java `SimpleDateFormat` patterns as TimestampRouter and
//! TimestampConverter use them, always in UTC: `y M d H m s S` (widths as
//! Java reads them; `MMM` a month's short English name), `Z` / `X` (the
//! zone offset: written `+0000` / `Z`, read as an offset), text in single
//! quotes (`''` a quote), other characters literal.

#[derive(Debug, Clone, PartialEq)]
pub enum Token {
    Literal(String),
    /// A pattern letter repeated `width` times.
    Field(char, usize),
}

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

pub fn tokens(format: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\'' {
            // '' is a quote; 'text' is literal text.
            let mut text = String::new();
            if chars.peek() == Some(&'\'') {
                chars.next();
                out.push(Token::Literal("'".into()));
                continue;
            }
            loop {
                match chars.next() {
                    None => return Err("a quoted text is not closed".into()),
                    Some('\'') if chars.peek() == Some(&'\'') => {
                        chars.next();
                        text.push('\'');
                    }
                    Some('\'') => break,
                    Some(t) => text.push(t),
                }
            }
            out.push(Token::Literal(text));
        } else if c.is_ascii_alphabetic() {
            if !"yMdHmsSZX".contains(c) {
                return Err(format!("pattern letter {c} is not supported (supported: y M d H m s S Z X)"));
            }
            let mut width = 1;
            while chars.peek() == Some(&c) {
                chars.next();
                width += 1;
            }
            out.push(Token::Field(c, width));
        } else {
            out.push(Token::Literal(c.to_string()));
        }
    }
    Ok(out)
}

/// (year, month 1-12, day 1-31) of days since 1970-01-01 (proleptic Gregorian).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

pub fn format_millis(tokens: &[Token], millis: i64) -> String {
    let (year, month, day) = civil_from_days(millis.div_euclid(86_400_000));
    let in_day = millis.rem_euclid(86_400_000);
    let (hour, minute, second, milli) = (in_day / 3_600_000, in_day / 60_000 % 60, in_day / 1000 % 60, in_day % 1000);
    let mut out = String::new();
    for token in tokens {
        match token {
            Token::Literal(text) => out.push_str(text),
            Token::Field('y', 2) => out.push_str(&format!("{:02}", year.rem_euclid(100))),
            Token::Field('y', w) => out.push_str(&format!("{year:0w$}")),
            Token::Field('M', w) if *w >= 3 => out.push_str(MONTHS[(month - 1) as usize % 12]),
            Token::Field('M', w) => out.push_str(&format!("{month:0w$}")),
            Token::Field('d', w) => out.push_str(&format!("{day:0w$}")),
            Token::Field('H', w) => out.push_str(&format!("{hour:0w$}")),
            Token::Field('m', w) => out.push_str(&format!("{minute:0w$}")),
            Token::Field('s', w) => out.push_str(&format!("{second:0w$}")),
            // Times are UTC: Java writes its offset as +0000 (Z) or Z (X).
            Token::Field('Z', _) => out.push_str("+0000"),
            Token::Field('X', _) => out.push('Z'),
            Token::Field(_, w) => out.push_str(&format!("{milli:0w$}")),
        }
    }
    out
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Reads `text` with the pattern into epoch milliseconds (UTC unless the
/// text carries an offset). As `SimpleDateFormat.parse`, a numeric field
/// followed directly by another takes exactly its width in digits and
/// otherwise all the digits there are; fields not in the pattern are the
/// epoch's (1970-01-01 00:00:00.000). Unlike Java's lenient default, a
/// date that does not exist (month 13, February 30) is refused rather than
/// rolled over, and text after the pattern is refused rather than ignored.
pub fn parse_millis(tokens: &[Token], text: &str) -> Result<i64, String> {
    let (mut year, mut month, mut day) = (1970i64, 1u32, 1u32);
    let (mut hour, mut minute, mut second, mut milli, mut offset_ms) = (0i64, 0i64, 0i64, 0i64, 0i64);
    let mut rest = text;
    for (i, token) in tokens.iter().enumerate() {
        match token {
            Token::Literal(lit) => {
                rest = rest.strip_prefix(lit.as_str()).ok_or_else(|| format!("expected {lit:?} at {rest:?}"))?;
            }
            Token::Field('M', w) if *w >= 3 => {
                let found = MONTHS.iter().position(|m| rest.get(..3).is_some_and(|r| r.eq_ignore_ascii_case(m)));
                let m = found.ok_or_else(|| format!("expected a month name at {rest:?}"))?;
                month = m as u32 + 1;
                rest = &rest[3..];
            }
            Token::Field(c @ ('Z' | 'X'), _) => {
                if *c == 'X' && rest.starts_with('Z') {
                    rest = &rest[1..];
                    continue;
                }
                let sign = match rest.chars().next() {
                    Some('+') => 1,
                    Some('-') => -1,
                    _ => return Err(format!("expected a zone offset at {rest:?}")),
                };
                let body = &rest[1..];
                let digits: String = body.chars().filter(|c| *c != ':').take(4).collect();
                let used = body.char_indices().take_while(|(_, c)| c.is_ascii_digit() || *c == ':').count().min(5);
                if digits.len() < 2 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(format!("expected a zone offset at {rest:?}"));
                }
                let hours: i64 = digits[..2].parse().unwrap_or(0);
                let minutes: i64 = digits.get(2..4).and_then(|m| m.parse().ok()).unwrap_or(0);
                offset_ms = sign * (hours * 60 + minutes) * 60_000;
                rest = &body[used..];
            }
            Token::Field(c, w) => {
                let fixed = matches!(tokens.get(i + 1), Some(Token::Field(next, nw)) if *next != 'Z' && *next != 'X' && !(*next == 'M' && *nw >= 3));
                let available = rest.bytes().take_while(u8::is_ascii_digit).count();
                let take = if fixed { (*w).min(available) } else { available };
                if take == 0 {
                    return Err(format!("expected digits for {} at {rest:?}", c.to_string().repeat(*w)));
                }
                let n: i64 = rest[..take].parse().map_err(|_| format!("number too long at {rest:?}"))?;
                rest = &rest[take..];
                match c {
                    // SimpleDateFormat reads a two-digit `yy` year within
                    // 80 years before and 20 after now; without a clock
                    // here, it is read as 20yy.
                    'y' if *w <= 2 && take == 2 => year = 2000 + n,
                    'y' => year = n,
                    'M' => month = u32::try_from(n).unwrap_or(0),
                    'd' => day = u32::try_from(n).unwrap_or(0),
                    'H' => hour = n,
                    'm' => minute = n,
                    's' => second = n,
                    _ => milli = n,
                }
            }
        }
    }
    if !rest.is_empty() {
        return Err(format!("unexpected text {rest:?} after the pattern"));
    }
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return Err(format!("{year:04}-{month:02}-{day:02} is not a date"));
    }
    if hour > 23 || minute > 59 || second > 59 || milli > 999 {
        return Err(format!("{hour:02}:{minute:02}:{second:02}.{milli:03} is not a time of day"));
    }
    let days = days_from_civil(year, month, day);
    Ok(days * 86_400_000 + hour * 3_600_000 + minute * 60_000 + second * 1000 + milli - offset_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_agree_with_the_calendar() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        let t = tokens("yy/M/d MMM H:m:s 'o''clock' ''").unwrap();
        assert_eq!(format_millis(&t, 951_782_400_000 + 3_723_000), "00/2/29 Feb 1:2:3 o'clock '");
    }

    #[test]
    fn parsing_reads_what_formatting_writes() {
        let millis = 1_700_000_000_123;
        for pattern in
            ["yyyy-MM-dd'T'HH:mm:ss.SSSX", "yyyyMMddHHmmssSSS", "d MMM yyyy H:m:s.S Z", "yyyy-MM-dd HH:mm:ss.SSSXXX"]
        {
            let t = tokens(pattern).unwrap();
            let text = format_millis(&t, millis);
            assert_eq!(parse_millis(&t, &text), Ok(millis), "{pattern}: {text}");
        }
        let t = tokens("yyyy-MM-dd HH:mmXXX").unwrap();
        assert_eq!(parse_millis(&t, "2023-11-15 00:13+02:00"), Ok(1_699_999_980_000));
        let t = tokens("yyyy-MM-dd").unwrap();
        assert_eq!(parse_millis(&t, "2024-02-29"), Ok(19_782 * 86_400_000));
        assert!(parse_millis(&t, "2023-02-29").unwrap_err().contains("not a date"));
        assert!(parse_millis(&t, "2023-02-28x").unwrap_err().contains("\"x\""));
        assert!(parse_millis(&t, "2023/02/28").is_err());
        for d in [-1, 0, 59, 60, 365, 11_016, 19_782, -719_468] {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
    }
}
