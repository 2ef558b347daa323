//! Kubernetes' URL library (`url`, `isURL`, `getScheme`, `getHost`, `getHostname`, `getPort`,
//! `getEscapedPath`, `getQuery`): a string is a URL when Go's `url.ParseRequestURI` accepts it
//! (an absolute URI or an absolute path), and its parts are those Go's `url.Parse` gives.

use std::any::Any;
use std::collections::HashMap;

use cel::common::types::{CelBool, CelString, Type, STRING_TYPE};
use cel::common::value::{CowVal, StaticVal, Val};
use cel::{DeclarationError, Env, ExecutionError};

use super::{argument, string_argument, Args, Outcome};

/// The CEL type of `url(…)` values, as Kubernetes names it.
static URL_TYPE: Type = Type::new_unspecified_type("kubernetes.URL");

/// A parsed URL: the parts the library's accessors return.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Url {
    scheme: String,
    /// Host and port, unescaped, IPv6 addresses in brackets.
    host: String,
    /// The path as written (Go's `RawPath` hint), and unescaped.
    raw_path: String,
    path: String,
    raw_query: String,
}

custom_val!(Url, URL_TYPE);

/// What a string is being unescaped (or escaped) as, after Go's `net/url` encodings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Path,
    Host,
    Zone,
    UserPassword,
    QueryComponent,
    Fragment,
}

/// RFC 3986's sub-delims: `!$&'()*+,;=`.
fn is_sub_delim(c: u8) -> bool {
    matches!(
        c,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
    )
}

/// Go's `shouldEscape`.
fn should_escape(c: u8, mode: Mode) -> bool {
    if c.is_ascii_alphanumeric() {
        return false;
    }
    if matches!(mode, Mode::Host | Mode::Zone)
        && (is_sub_delim(c) || matches!(c, b':' | b'[' | b']' | b'<' | b'>' | b'"'))
    {
        return false;
    }
    match c {
        b'-' | b'_' | b'.' | b'~' => false,
        b'$' | b'&' | b'+' | b',' | b'/' | b':' | b';' | b'=' | b'?' | b'@' => match mode {
            Mode::Path => c == b'?',
            Mode::UserPassword => matches!(c, b'@' | b'/' | b'?' | b':'),
            Mode::QueryComponent => true,
            Mode::Fragment => false,
            Mode::Host | Mode::Zone => true,
        },
        b'!' | b'(' | b')' | b'*' if mode == Mode::Fragment => false,
        _ => true,
    }
}

fn hex_value(c: u8) -> Option<u8> {
    char::from(c)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// Go's `unescape`: `%XX` decoded (and refused when malformed, or where the mode forbids it),
/// `+` a space in query components, and characters a host may not hold refused.
fn unescape(s: &str, mode: Mode) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&c) = bytes.get(i) {
        match c {
            b'%' => {
                let escape = s.get(i..(i + 3).min(s.len())).unwrap_or("%");
                let (Some(high), Some(low)) = (
                    bytes.get(i + 1).copied().and_then(hex_value),
                    bytes.get(i + 2).copied().and_then(hex_value),
                ) else {
                    return Err(format!("invalid URL escape {escape:?}"));
                };
                if mode == Mode::Host && high < 8 && escape != "%25" {
                    return Err(format!("invalid URL escape {escape:?}"));
                }
                let value = high << 4 | low;
                if mode == Mode::Zone
                    && escape != "%25"
                    && value != b' '
                    && should_escape(value, Mode::Host)
                {
                    return Err(format!("invalid URL escape {escape:?}"));
                }
                out.push(value);
                i += 3;
            }
            b'+' if mode == Mode::QueryComponent => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                if matches!(mode, Mode::Host | Mode::Zone) && c < 0x80 && should_escape(c, mode) {
                    return Err(format!(
                        "invalid character {:?} in host name",
                        char::from(c).to_string()
                    ));
                }
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Go's `escape` for a path.
fn escape_path(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &c in s.as_bytes() {
        if should_escape(c, Mode::Path) {
            out.push_str(&format!("%{c:02X}"));
        } else {
            out.push(char::from(c));
        }
    }
    out
}

/// Go's `validEncoded` for a path.
fn valid_encoded_path(s: &str) -> bool {
    s.bytes().all(|c| {
        is_sub_delim(c)
            || matches!(c, b':' | b'@' | b'[' | b']' | b'%')
            || !should_escape(c, Mode::Path)
    })
}

fn valid_optional_port(port: &str) -> bool {
    match port.strip_prefix(':') {
        Some(digits) => digits.bytes().all(|b| b.is_ascii_digit()),
        None => port.is_empty(),
    }
}

/// Go's `getScheme`: the scheme before the first `:`, if everything before it can be one.
fn split_scheme(raw: &str) -> Result<(&str, &str), String> {
    for (i, c) in raw.bytes().enumerate() {
        match c {
            b'a'..=b'z' | b'A'..=b'Z' => {}
            b'0'..=b'9' | b'+' | b'-' | b'.' if i > 0 => {}
            b':' if i == 0 => return Err("missing protocol scheme".into()),
            b':' => return Ok((&raw[..i], &raw[i + 1..])),
            _ => return Ok(("", raw)),
        }
    }
    Ok(("", raw))
}

fn parse_host(host: &str) -> Result<String, String> {
    if host.starts_with('[') {
        let close = host
            .rfind(']')
            .ok_or_else(|| "missing ']' in host".to_string())?;
        let colon_port = &host[close + 1..];
        if !valid_optional_port(colon_port) {
            return Err(format!("invalid port {colon_port:?} after host"));
        }
        if let Some(zone) = host[..close].find("%25") {
            return Ok(unescape(&host[..zone], Mode::Host)?
                + &unescape(&host[zone..close], Mode::Zone)?
                + &unescape(&host[close..], Mode::Host)?);
        }
    } else if let Some(colon) = host.rfind(':') {
        let colon_port = &host[colon..];
        if !valid_optional_port(colon_port) {
            return Err(format!("invalid port {colon_port:?} after host"));
        }
    }
    unescape(host, Mode::Host)
}

fn parse_authority(authority: &str) -> Result<String, String> {
    let at = authority.rfind('@');
    let host = parse_host(at.map_or(authority, |i| &authority[i + 1..]))?;
    if let Some(at) = at {
        let userinfo = &authority[..at];
        let valid = userinfo
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-._:~!$&'()*+,;=%@".contains(&c));
        if !valid {
            return Err("net/url: invalid userinfo".into());
        }
        match userinfo.split_once(':') {
            Some((user, password)) => {
                unescape(user, Mode::UserPassword)?;
                unescape(password, Mode::UserPassword)?;
            }
            None => {
                unescape(userinfo, Mode::UserPassword)?;
            }
        }
    }
    Ok(host)
}

/// Go's `url.parse`, for a request URI (`ParseRequestURI`) or any reference (`Parse`, given
/// the string without its fragment).
fn parse_reference(raw: &str, via_request: bool) -> Result<Url, String> {
    if raw.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err("net/url: invalid control character in URL".into());
    }
    if raw.is_empty() && via_request {
        return Err("empty url".into());
    }
    if raw == "*" {
        return Ok(Url {
            path: "*".into(),
            raw_path: "*".into(),
            ..Url::default()
        });
    }
    let (scheme, rest) = split_scheme(raw)?;
    let scheme = scheme.to_ascii_lowercase();
    let (rest, raw_query) = if rest.ends_with('?') && rest.matches('?').count() == 1 {
        (&rest[..rest.len() - 1], "")
    } else {
        rest.split_once('?').unwrap_or((rest, ""))
    };
    if !rest.starts_with('/') {
        if !scheme.is_empty() {
            // Opaque, e.g. `mailto:a@example.com`: no host, no path.
            return Ok(Url {
                scheme,
                raw_query: raw_query.into(),
                ..Url::default()
            });
        }
        if via_request {
            return Err("invalid URI for request".into());
        }
        if rest.split('/').next().unwrap_or_default().contains(':') {
            return Err("first path segment in URL cannot contain colon".into());
        }
    }
    let mut host = String::new();
    let mut path = rest;
    if (!scheme.is_empty() || !via_request && !rest.starts_with("///")) && rest.starts_with("//") {
        let authority_and_path = &rest[2..];
        let (authority, remainder) = match authority_and_path.find('/') {
            Some(i) => authority_and_path.split_at(i),
            None => (authority_and_path, ""),
        };
        host = parse_authority(authority)?;
        path = remainder;
    }
    Ok(Url {
        scheme,
        host,
        raw_path: path.into(),
        path: unescape(path, Mode::Path)?,
        raw_query: raw_query.into(),
    })
}

/// `Ok` when Go's `url.ParseRequestURI` accepts `raw`, else its error text.
pub(super) fn is_request_uri(raw: &str) -> Result<(), String> {
    parse_reference(raw, true)
        .map(|_| ())
        .map_err(|error| format!("parse {raw:?}: {error}"))
}

/// `url(raw)`: validated as `url.ParseRequestURI` does, parsed as `url.Parse` does.
fn parse(raw: &str) -> Result<Url, String> {
    let context = "URL parse error during conversion from string";
    parse_reference(raw, true).map_err(|error| format!("{context}: parse {raw:?}: {error}"))?;
    let (reference, fragment) = raw.split_once('#').unwrap_or((raw, ""));
    let url = parse_reference(reference, false)
        .map_err(|error| format!("{context}: parse {reference:?}: {error}"))?;
    unescape(fragment, Mode::Fragment)
        .map_err(|error| format!("{context}: parse {raw:?}: {error}"))?;
    Ok(url)
}

impl Url {
    /// Go's `splitHostPort`: (hostname without brackets, port).
    fn host_and_port(&self) -> (&str, &str) {
        let mut host = self.host.as_str();
        let mut port = "";
        if let Some(colon) = host.rfind(':') {
            if valid_optional_port(&host[colon..]) {
                port = &host[colon + 1..];
                host = &host[..colon];
            }
        }
        if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            host = inner;
        }
        (host, port)
    }

    /// Go's `EscapedPath`: the path as written when that is a valid encoding, else escaped.
    fn escaped_path(&self) -> String {
        if self.path == "*" {
            return "*".into();
        }
        if valid_encoded_path(&self.raw_path) {
            return self.raw_path.clone();
        }
        escape_path(&self.path)
    }

    /// Go's `Query`: keys and values unescaped, repeated keys collected, malformed pairs (a
    /// `;`, a bad escape) skipped.
    fn query(&self) -> HashMap<String, Vec<String>> {
        let mut out: HashMap<String, Vec<String>> = HashMap::new();
        for pair in self.raw_query.split('&') {
            if pair.is_empty() || pair.contains(';') {
                continue;
            }
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let (Ok(key), Ok(value)) = (
                unescape(key, Mode::QueryComponent),
                unescape(value, Mode::QueryComponent),
            ) else {
                continue;
            };
            out.entry(key).or_default().push(value);
        }
        out
    }
}

/// Registers the URL library's functions on `env`.
pub(super) fn register(env: &mut Env) -> Result<(), DeclarationError> {
    let url = || URL_TYPE.to_owned();
    env.add_type(url())?;
    env.add_overload("url", "string_to_url", vec![STRING_TYPE], string_to_url)?;
    env.add_overload("isURL", "is_url_string", vec![STRING_TYPE], is_url)?;
    let accessors: [(&str, &str, cel::common::functions::Function); 6] = [
        ("getScheme", "url_get_scheme", get_scheme),
        ("getHost", "url_get_host", get_host),
        ("getHostname", "url_get_hostname", get_hostname),
        ("getPort", "url_get_port", get_port),
        ("getEscapedPath", "url_get_escaped_path", get_escaped_path),
        ("getQuery", "url_get_query", get_query),
    ];
    for (name, id, function) in accessors {
        env.add_member_overload(name, id, url(), vec![], function)?;
    }
    Ok(())
}

fn text<'b, 'v>(value: impl Into<String>) -> Outcome<'b, 'v> {
    Ok(CowVal::owned(CelString::from(value.into())))
}

fn string_to_url<'b, 'v>(args: Args<'b, 'v>) -> Outcome<'b, 'v> {
    let raw = string_argument(&args, 0)?;
    let url = parse(raw).map_err(|error| ExecutionError::function_error("url", error))?;
    Ok(CowVal::owned(url))
}

fn is_url<'b, 'v>(args: Args<'b, 'v>) -> Outcome<'b, 'v> {
    let raw = string_argument(&args, 0)?;
    Ok(CowVal::owned(CelBool::from(
        parse_reference(raw, true).is_ok(),
    )))
}

fn get_scheme<'b, 'v>(args: Args<'b, 'v>) -> Outcome<'b, 'v> {
    text(argument::<Url>(&args, 0)?.scheme.clone())
}

fn get_host<'b, 'v>(args: Args<'b, 'v>) -> Outcome<'b, 'v> {
    text(argument::<Url>(&args, 0)?.host.clone())
}

fn get_hostname<'b, 'v>(args: Args<'b, 'v>) -> Outcome<'b, 'v> {
    text(argument::<Url>(&args, 0)?.host_and_port().0)
}

fn get_port<'b, 'v>(args: Args<'b, 'v>) -> Outcome<'b, 'v> {
    text(argument::<Url>(&args, 0)?.host_and_port().1)
}

fn get_escaped_path<'b, 'v>(args: Args<'b, 'v>) -> Outcome<'b, 'v> {
    text(argument::<Url>(&args, 0)?.escaped_path())
}

fn get_query<'b, 'v>(args: Args<'b, 'v>) -> Outcome<'b, 'v> {
    let query = argument::<Url>(&args, 0)?.query();
    let map: Box<dyn Val> = Box::<dyn Val>::try_from(cel::Value::from(query))?;
    Ok(CowVal::Owned(map))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_matches_go_net_url() {
        // (input, Ok((scheme, host, escaped path, raw query)) or an error fragment)
        type Case = (
            &'static str,
            Result<(&'static str, &'static str, &'static str, &'static str), &'static str>,
        );
        let cases: &[Case] = &[
            (
                "https://user:pass@example.com:80/path?query=val#fragment",
                Ok(("https", "example.com:80", "/path", "query=val")),
            ),
            ("/absolute-path", Ok(("", "", "/absolute-path", ""))),
            ("HTTP://Example.com", Ok(("http", "Example.com", "", ""))),
            ("https://[::1]:80/", Ok(("https", "[::1]:80", "/", ""))),
            (
                "https://example.com/path with spaces/",
                Ok(("https", "example.com", "/path%20with%20spaces/", "")),
            ),
            (
                "https://example.com/a%2Fb",
                Ok(("https", "example.com", "/a%2Fb", "")),
            ),
            (
                "https://example.com/a!b",
                Ok(("https", "example.com", "/a!b", "")),
            ),
            ("mailto:a@example.com", Ok(("mailto", "", "", ""))),
            ("*", Ok(("", "", "*", ""))),
            ("//host/path", Ok(("", "host", "/path", ""))),
            ("https://a:b:c/", Err("invalid port \":c\" after host")),
            ("../relative-path", Err("invalid URI for request")),
            ("", Err("empty url")),
            (":foo", Err("missing protocol scheme")),
            ("https://exa mple.com/", Err("invalid character")),
            ("https://example.com/%zz", Err("invalid URL escape \"%zz\"")),
            ("https://[::1/", Err("missing ']' in host")),
            ("https://us er@example.com/", Err("invalid userinfo")),
            ("https://example.com/\n", Err("invalid control character")),
        ];
        for (raw, want) in cases {
            let got = parse(raw);
            match (want, &got) {
                (Ok((scheme, host, path, query)), Ok(url)) => assert_eq!(
                    (
                        url.scheme.as_str(),
                        url.host.as_str(),
                        url.escaped_path().as_str(),
                        url.raw_query.as_str()
                    ),
                    (*scheme, *host, *path, *query),
                    "{raw}"
                ),
                (Err(fragment), Err(error)) => {
                    assert!(error.contains(fragment), "{raw}: {error}");
                }
                _ => panic!("{raw}: want {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn query_and_host_parts() {
        let Ok(url) = parse("https://[fe80::1%25en0]:8080/p?k1=a&k2=b&k2=c&x+y=%41&bad=%zz&s;x=1")
        else {
            panic!("parses");
        };
        assert_eq!(url.host_and_port(), ("fe80::1%en0", "8080"));
        let query = url.query();
        assert_eq!(query.get("k1"), Some(&vec!["a".to_string()]));
        assert_eq!(
            query.get("k2"),
            Some(&vec!["b".to_string(), "c".to_string()])
        );
        assert_eq!(query.get("x y"), Some(&vec!["A".to_string()]));
        assert_eq!(query.len(), 3, "{query:?}");
    }
}
