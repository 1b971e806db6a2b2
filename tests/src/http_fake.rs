//! The HTTP/1.1 plumbing the contract fakes share (SAP Commerce OData,
//! Salesforce, Marketing Cloud, Schema Registry): read one request, write
//! one response. Each fake keeps its own routes, state and error bodies;
//! only the wire handling lives here, so a fix to it reaches every fake.

use std::{
    collections::HashMap,
    io::{self, BufRead, Write},
};

/// One request as the fakes route it.
pub struct Request {
    pub method: String,
    /// The path, percent-decoded.
    pub path: String,
    /// The path as sent (for fakes whose routes decode segments themselves).
    pub raw_path: String,
    /// The query string as sent, without `?`.
    pub raw_query: String,
    /// The query's pairs, decoded.
    pub query: HashMap<String, String>,
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    pub body: String,
}

/// One answer: status, content type, body, and any further headers.
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    pub extra: Vec<(&'static str, String)>,
}

/// Reads one request (request line, headers, a `Content-Length` body);
/// `None` when the client closed the connection or sent something else.
pub fn read_request(reader: &mut impl BufRead) -> Option<Request> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let length: usize = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    Some(Request {
        method,
        path: decode(path),
        raw_path: path.to_string(),
        raw_query: query.to_string(),
        query: parse_pairs(query),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Writes `response` with `Content-Length` and the given fixed headers
/// (e.g. `Connection: close`), then the response's own `extra` headers.
pub fn write_response(writer: &mut impl Write, response: &Response, fixed: &[(&str, String)]) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
        response.status,
        reason(response.status),
        response.content_type,
        response.body.len()
    );
    let extra = response.extra.iter().map(|(k, v)| (*k, v.as_str()));
    for (k, v) in fixed.iter().map(|(k, v)| (*k, v.as_str())).chain(extra) {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    writer.write_all(head.as_bytes())?;
    writer.write_all(response.body.as_bytes())?;
    writer.flush()
}

/// The reason phrase of the statuses the fakes answer.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    }
}

/// `a=1&b=2` (query or form body) as decoded pairs.
pub fn parse_pairs(s: &str) -> HashMap<String, String> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// Percent-decoding, `+` as a space (form and query encoding).
pub fn decode(s: &str) -> String {
    percent_decode(s, true)
}

/// Percent-decoding of a path segment, where `+` is itself.
pub fn decode_path(s: &str) -> String {
    percent_decode(s, false)
}

fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use std::io::BufReader;

    use super::*;

    #[test]
    fn a_request_is_read_with_its_decoded_path_query_headers_and_body() {
        let wire = "POST /a%20b/c?x=1&y=two+words HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nbodyNEXT";
        let r = read_request(&mut BufReader::new(wire.as_bytes())).expect("a request");
        assert_eq!((r.method.as_str(), r.path.as_str(), r.raw_path.as_str()), ("POST", "/a b/c", "/a%20b/c"));
        assert_eq!(r.raw_query, "x=1&y=two+words");
        assert_eq!(r.query.get("y").map(String::as_str), Some("two words"));
        assert_eq!(r.headers.get("host").map(String::as_str), Some("h"));
        assert_eq!(r.body, "body", "only Content-Length bytes are the body");
        assert!(read_request(&mut BufReader::new(&b""[..])).is_none(), "a closed connection is no request");
    }

    #[test]
    fn decoding_keeps_a_stray_percent() {
        assert_eq!(decode("a%2Db%20c"), "a-b c");
        assert_eq!(decode("100%"), "100%");
        assert_eq!((decode("a+b"), decode_path("a+b")), ("a b".to_string(), "a+b".to_string()));
    }

    #[test]
    fn a_response_carries_its_length_and_headers() {
        let mut out = Vec::new();
        let response = Response {
            status: 404,
            content_type: "application/json",
            body: "{}".into(),
            extra: vec![("X-A", "1".into())],
        };
        write_response(&mut out, &response, &[("Connection", "close".into())]).expect("written");
        let text = String::from_utf8(out).expect("utf-8");
        assert!(text.starts_with("HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"));
        assert!(text.contains("Connection: close\r\nX-A: 1\r\n\r\n{}"));
    }
}
