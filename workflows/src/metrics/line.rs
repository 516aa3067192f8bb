//! InfluxDB line protocol, as the v2 write API takes it: parsing and writing.
//!
//! One point per line: `measurement[,tag=value…] field=value[,field=value…] [timestamp]`. Field values are
//! floats (`1`, `-1.5e3`), integers (`1i`), unsigned integers (`1u`), booleans (`t`, `true`, `F`, `FALSE`…)
//! or double-quoted strings (which may span lines). In the measurement a backslash escapes a comma, a space
//! or a backslash; in tag keys, tag values and field keys also an equals sign; in strings a double quote or a
//! backslash; before any other character a backslash is itself. Blank lines and lines starting with `#` are
//! skipped. A timestamp is an integer in the request's precision; a point without one takes the receiver's
//! clock.
//!
//! This file uses only `std`: the parser's fuzz target (`workflows/fuzz`) compiles it on its own.

use std::borrow::Cow;
use std::fmt;

/// The unit of the timestamps in a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    #[default]
    Ns,
    Us,
    Ms,
    S,
}

impl Precision {
    /// `ns`, `us`, `ms` or `s`.
    pub fn parse(s: &str) -> Option<Precision> {
        match s {
            "ns" => Some(Precision::Ns),
            "us" => Some(Precision::Us),
            "ms" => Some(Precision::Ms),
            "s" => Some(Precision::S),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Ns => "ns",
            Precision::Us => "us",
            Precision::Ms => "ms",
            Precision::S => "s",
        }
    }

    fn nanos(self) -> i64 {
        match self {
            Precision::Ns => 1,
            Precision::Us => 1_000,
            Precision::Ms => 1_000_000,
            Precision::S => 1_000_000_000,
        }
    }
}

/// A field's value.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue<'a> {
    Float(f64),
    Int(i64),
    UInt(u64),
    Bool(bool),
    Str(Cow<'a, str>),
}

/// One point: borrowed from the request body wherever nothing had to be unescaped.
#[derive(Debug, Clone, PartialEq)]
pub struct Point<'a> {
    pub measurement: Cow<'a, str>,
    /// In the order written.
    pub tags: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    /// In the order written; a key written twice keeps both here (the last one counts).
    pub fields: Vec<(Cow<'a, str>, FieldValue<'a>)>,
    /// Nanoseconds since the Unix epoch, or `None` when the line has no timestamp.
    pub timestamp: Option<i64>,
}

/// Why a request's body was refused: the first bad line, by number (from 1), and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub line: usize,
    /// The line as sent, shortened when long.
    pub text: String,
    pub message: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {} ({:?}): {}", self.line, self.text, self.message)
    }
}

impl std::error::Error for LineError {}

/// Characters of a line shown in an error.
const EXCERPT: usize = 120;

/// Parses a whole body: every point, or the first error (so that nothing of a bad request is stored).
pub fn parse(body: &[u8], precision: Precision) -> Result<Vec<Point<'_>>, LineError> {
    // A point is rarely under 30 bytes: room for most bodies' points without growing.
    let mut points = Vec::with_capacity(body.len() / 30 + 1);
    for_each_line(body, precision, |line| points.push(line.point.clone()))?;
    Ok(points)
}

/// One line as [`for_each_line`] shows it: the point, and the text it was read from.
#[derive(Debug, Default)]
pub struct Line<'a> {
    pub point: Point<'a>,
    text: &'a str,
    /// Where the measurement and tags end in `text`.
    series_end: usize,
    /// Where each field's key starts and ends in `text`, in the order written.
    keys: Vec<(usize, usize)>,
}

impl<'a> Line<'a> {
    /// The series of field `n` (as [`Point::fields`] numbers them) spelt as written: the line's measurement
    /// and tags, a space and the field's key, escapes and all. Two spellings are equal only for the same
    /// measurement, tags in the same order and field; one series may have several (its tags in other
    /// orders). Borrowed from the line where it is one stretch of it, as a line's first field mostly is;
    /// otherwise built in `buf`.
    pub fn spelling<'b>(&self, n: usize, buf: &'b mut String) -> &'b str
    where
        'a: 'b,
    {
        let (start, end) = self.keys[n];
        if start == self.series_end + 1 {
            return &self.text[..end];
        }
        buf.clear();
        buf.push_str(&self.text[..self.series_end]);
        buf.push(' ');
        buf.push_str(&self.text[start..end]);
        buf
    }
}

impl Default for Point<'_> {
    fn default() -> Self {
        Point { measurement: Cow::Borrowed(""), tags: Vec::new(), fields: Vec::new(), timestamp: None }
    }
}

/// Parses a whole body, showing `each` every line in turn (one [`Line`] reused, so nothing is allocated
/// per line where nothing had to be unescaped), or stops at the first error. A caller that must not keep
/// part of a bad body keeps what it was shown aside until this returns `Ok`.
pub fn for_each_line<'a>(
    body: &'a [u8],
    precision: Precision,
    mut each: impl FnMut(&Line<'a>),
) -> Result<(), LineError> {
    let text = match std::str::from_utf8(body) {
        Ok(t) => t,
        Err(e) => {
            let valid = &body[..e.valid_up_to()];
            let line = 1 + valid.iter().filter(|&&b| b == b'\n').count();
            let start = valid.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
            let text = String::from_utf8_lossy(&body[start..(start + EXCERPT).min(body.len())]);
            let text = text.split('\n').next().unwrap_or_default().to_owned();
            return Err(LineError { line, text, message: "the line is not valid UTF-8".to_owned() });
        }
    };
    let mut p = Parser { s: text, b: text.as_bytes(), i: 0, line: 1 };
    let mut line = Line::default();
    loop {
        p.skip_blank();
        if p.i >= p.b.len() {
            return Ok(());
        }
        if p.b[p.i] == b'#' {
            p.skip_to_line_end();
            continue;
        }
        let (start, number) = (p.i, p.line);
        match p.line_into(precision, &mut line) {
            Ok(()) => each(&line),
            Err(message) => {
                let line_start = text[..start].rfind('\n').map_or(0, |n| n + 1);
                let text: String = text[line_start..].chars().take_while(|&c| c != '\n').take(EXCERPT).collect();
                return Err(LineError { line: number, text: text.trim_end_matches('\r').to_owned(), message });
            }
        }
    }
}

/// Which bytes end a name (a backslash is marked too, to be looked at): a line end and the given ones.
type Stops = [bool; 256];

const fn stops(ends: &[u8]) -> Stops {
    let mut table = [false; 256];
    table[b'\n' as usize] = true;
    table[b'\r' as usize] = true;
    table[b'\\' as usize] = true;
    let mut i = 0;
    while i < ends.len() {
        table[ends[i] as usize] = true;
        i += 1;
    }
    table
}

/// The measurement and tag values end at a comma or a space; keys also at an equals sign.
static NAME_ENDS: Stops = stops(b", ");
static KEY_ENDS: Stops = stops(b",= ");

struct Parser<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
    line: usize,
}

/// Which characters a backslash escapes in a name.
#[derive(Clone, Copy)]
enum Escapes {
    /// The measurement: comma, space, backslash.
    Measurement,
    /// Tag keys and values, field keys: also the equals sign.
    Key,
}

impl Escapes {
    fn escapes(self, c: u8) -> bool {
        matches!(c, b',' | b' ' | b'\\') || (matches!(self, Escapes::Key) && c == b'=')
    }
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// Skips spaces, tabs, carriage returns and line breaks before a point.
    fn skip_blank(&mut self) {
        while let Some(c) = self.peek() {
            match c {
                b'\n' => self.line += 1,
                b' ' | b'\t' | b'\r' => {}
                _ => return,
            }
            self.i += 1;
        }
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.i += 1;
        }
    }

    fn skip_to_line_end(&mut self) {
        while let Some(c) = self.peek() {
            if c == b'\n' {
                return;
            }
            self.i += 1;
        }
    }

    fn at_line_end(&self) -> bool {
        matches!(self.peek(), None | Some(b'\n') | Some(b'\r'))
    }

    /// A name up to (not including) the first unescaped byte `stops` marks, or a line end.
    fn name(&mut self, escapes: Escapes, stops: &Stops) -> Cow<'a, str> {
        let start = self.i;
        let mut escaped = false;
        while let Some(&c) = self.b.get(self.i) {
            if stops[usize::from(c)] {
                if c == b'\\' && self.b.get(self.i + 1).is_some_and(|&n| escapes.escapes(n)) {
                    escaped = true;
                    self.i += 2;
                    continue;
                }
                if c != b'\\' {
                    break;
                }
            }
            self.i += 1;
        }
        let raw = &self.s[start..self.i];
        if !escaped {
            return Cow::Borrowed(raw);
        }
        let mut out = String::with_capacity(raw.len());
        let mut chars = raw.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '\\' {
                if let Some(&n) = chars.peek() {
                    if n.is_ascii() && escapes.escapes(n as u8) {
                        out.push(n);
                        chars.next();
                        continue;
                    }
                }
            }
            out.push(c);
        }
        Cow::Owned(out)
    }

    /// Reads one line into `out`, reusing its buffers.
    fn line_into(&mut self, precision: Precision, out: &mut Line<'a>) -> Result<(), String> {
        let start = self.i;
        out.point.tags.clear();
        out.point.fields.clear();
        out.keys.clear();
        out.point.measurement = self.name(Escapes::Measurement, &NAME_ENDS);
        if out.point.measurement.is_empty() {
            return Err("the measurement name is empty".to_owned());
        }
        let tags = &mut out.point.tags;
        while self.peek() == Some(b',') {
            self.i += 1;
            let key = self.key("tag")?;
            let value = self.name(Escapes::Key, &NAME_ENDS);
            if value.is_empty() {
                return Err(format!("tag {key:?} has an empty value"));
            }
            if tags.iter().any(|(k, _)| *k == key) {
                return Err(format!("tag {key:?} appears twice"));
            }
            tags.push((key, value));
        }
        out.series_end = self.i - start;
        if self.peek() != Some(b' ') {
            return Err("the point has no fields (field=value after a space)".to_owned());
        }
        self.skip_spaces();
        if self.at_line_end() {
            return Err("the point has no fields (field=value after a space)".to_owned());
        }
        loop {
            let key_start = self.i - start;
            let key = self.key("field")?;
            // `key` took the `=` too.
            out.keys.push((key_start, self.i - 1 - start));
            let value = self.field_value(&key)?;
            out.point.fields.push((key, value));
            if self.peek() == Some(b',') {
                self.i += 1;
                continue;
            }
            break;
        }
        out.text = &self.s[start..self.i];
        out.point.timestamp = if self.peek() == Some(b' ') {
            self.skip_spaces();
            if self.at_line_end() {
                None
            } else {
                Some(self.timestamp(precision)?)
            }
        } else {
            None
        };
        while self.peek() == Some(b' ') || self.peek() == Some(b'\r') {
            self.i += 1;
        }
        match self.peek() {
            None | Some(b'\n') => Ok(()),
            Some(_) => {
                let rest: String = self.s[self.i..].chars().take_while(|&c| c != '\n').take(40).collect();
                Err(format!("unexpected {rest:?} after the point"))
            }
        }
    }

    /// A tag or field key (`what`) and the `=` after it.
    fn key(&mut self, what: &str) -> Result<Cow<'a, str>, String> {
        let key = self.name(Escapes::Key, &KEY_ENDS);
        if key.is_empty() {
            return Err(format!("a {what} key is empty"));
        }
        if self.peek() != Some(b'=') {
            return Err(format!("{what} {key:?} has no value ({what}s are key=value)"));
        }
        self.i += 1;
        Ok(key)
    }

    fn field_value(&mut self, key: &str) -> Result<FieldValue<'a>, String> {
        if self.peek() == Some(b'"') {
            return self.string(key).map(FieldValue::Str);
        }
        let start = self.i;
        while let Some(c) = self.peek() {
            if matches!(c, b',' | b' ' | b'\n' | b'\r') {
                break;
            }
            self.i += 1;
        }
        let token = &self.s[start..self.i];
        value_of(token).ok_or_else(|| {
            if token.is_empty() {
                format!("field {key:?} has no value")
            } else {
                format!("field {key:?} has an invalid value {token:?}")
            }
        })
    }

    /// A double-quoted string; `\"` and `\\` are escapes, any other byte (a line break too) is itself.
    fn string(&mut self, key: &str) -> Result<Cow<'a, str>, String> {
        let (open_line, start) = (self.line, self.i + 1);
        self.i += 1;
        let mut escaped = false;
        loop {
            match self.peek() {
                None => return Err(format!("the string of field {key:?} (from line {open_line}) is not closed")),
                Some(b'\\') if matches!(self.b.get(self.i + 1), Some(b'"') | Some(b'\\')) => {
                    escaped = true;
                    self.i += 2;
                }
                Some(b'"') => break,
                Some(c) => {
                    if c == b'\n' {
                        self.line += 1;
                    }
                    self.i += 1;
                }
            }
        }
        let raw = &self.s[start..self.i];
        self.i += 1;
        if !escaped {
            return Ok(Cow::Borrowed(raw));
        }
        let mut out = String::with_capacity(raw.len());
        let mut chars = raw.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '\\' && matches!(chars.peek(), Some('"') | Some('\\')) {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
                continue;
            }
            out.push(c);
        }
        Ok(Cow::Owned(out))
    }

    fn timestamp(&mut self, precision: Precision) -> Result<i64, String> {
        let start = self.i;
        // The common case in one pass: digits only, no sign, in range.
        let mut n: Option<i64> = Some(0);
        while let Some(&c) = self.b.get(self.i) {
            if !c.is_ascii_digit() {
                break;
            }
            n = n.and_then(|n| n.checked_mul(10)).and_then(|n| n.checked_add(i64::from(c - b'0')));
            self.i += 1;
        }
        if let (Some(n), true) = (n, self.i > start && matches!(self.b.get(self.i), None | Some(b' ' | b'\n' | b'\r')))
        {
            return n
                .checked_mul(precision.nanos())
                .ok_or_else(|| format!("timestamp {n} {} is out of range", precision.as_str()));
        }
        while let Some(c) = self.peek() {
            if matches!(c, b' ' | b'\n' | b'\r') {
                break;
            }
            self.i += 1;
        }
        let token = &self.s[start..self.i];
        let digits = token.strip_prefix('-').unwrap_or(token);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("invalid timestamp {token:?} (an integer in {})", precision.as_str()));
        }
        token
            .parse::<i64>()
            .ok()
            .and_then(|t| t.checked_mul(precision.nanos()))
            .ok_or_else(|| format!("timestamp {token} {} is out of range", precision.as_str()))
    }
}

/// A field value other than a string, or `None` when the token is none.
fn value_of(token: &str) -> Option<FieldValue<'static>> {
    match token {
        "t" | "T" | "true" | "True" | "TRUE" => return Some(FieldValue::Bool(true)),
        "f" | "F" | "false" | "False" | "FALSE" => return Some(FieldValue::Bool(false)),
        _ => {}
    }
    if let Some(n) = token.strip_suffix('i') {
        let digits = n.strip_prefix('-').unwrap_or(n);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        return n.parse().ok().map(FieldValue::Int);
    }
    if let Some(n) = token.strip_suffix('u') {
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        return n.parse().ok().map(FieldValue::UInt);
    }
    float(token).map(FieldValue::Float)
}

/// `[-+]digits[.digits][e[-+]digits]` (or `.digits`), finite: not `NaN`, `inf` or hexadecimal.
fn float(token: &str) -> Option<f64> {
    let b = token.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'-') | Some(b'+')) {
        i += 1;
    }
    let int_start = i;
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    let mut digits = i - int_start;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let frac_start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        digits += i - frac_start;
    }
    if digits == 0 {
        return None;
    }
    if matches!(b.get(i), Some(b'e') | Some(b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'-') | Some(b'+')) {
            i += 1;
        }
        let exp_start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == exp_start {
            return None;
        }
    }
    if i != b.len() {
        return None;
    }
    token.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// Why a point cannot be written as line protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteError(pub String);

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WriteError {}

impl Point<'_> {
    /// Appends the point as one line (with its line break) to `out`, timestamp in nanoseconds. Names may
    /// not contain line breaks, and a point needs a measurement, a field, and non-empty tag values and keys.
    pub fn write_to(&self, out: &mut String) -> Result<(), WriteError> {
        let start = out.len();
        let result = self.write_unchecked(out);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    fn write_unchecked(&self, out: &mut String) -> Result<(), WriteError> {
        name_into(out, &self.measurement, Escapes::Measurement, "measurement")?;
        for (k, v) in &self.tags {
            out.push(',');
            name_into(out, k, Escapes::Key, "tag key")?;
            out.push('=');
            name_into(out, v, Escapes::Key, "tag value")?;
        }
        if self.fields.is_empty() {
            return Err(WriteError("a point needs at least one field".to_owned()));
        }
        for (n, (k, v)) in self.fields.iter().enumerate() {
            out.push(if n == 0 { ' ' } else { ',' });
            name_into(out, k, Escapes::Key, "field key")?;
            out.push('=');
            use std::fmt::Write as _;
            // Writing into a String cannot fail.
            let _ = match v {
                // `{:?}` is the shortest text that reads back as the same float, and never "inf" or "NaN"
                // for finite values; non-finite values have no line-protocol form.
                FieldValue::Float(f) if f.is_finite() => write!(out, "{f:?}"),
                FieldValue::Float(f) => return Err(WriteError(format!("field {k:?} is {f}, which has no form"))),
                FieldValue::Int(i) => write!(out, "{i}i"),
                FieldValue::UInt(u) => write!(out, "{u}u"),
                FieldValue::Bool(b) => write!(out, "{b}"),
                FieldValue::Str(s) => {
                    out.push('"');
                    for c in s.chars() {
                        if c == '"' || c == '\\' {
                            out.push('\\');
                        }
                        out.push(c);
                    }
                    out.push('"');
                    Ok(())
                }
            };
        }
        if let Some(t) = self.timestamp {
            out.push(' ');
            out.push_str(&t.to_string());
        }
        out.push('\n');
        Ok(())
    }
}

/// Appends a tag key, tag value or field key with what line protocol escapes in one escaped.
pub fn push_escaped_key(out: &mut String, name: &str) {
    for c in name.chars() {
        if c.is_ascii() && Escapes::Key.escapes(c as u8) {
            out.push('\\');
        }
        out.push(c);
    }
}

fn name_into(out: &mut String, name: &str, escapes: Escapes, what: &str) -> Result<(), WriteError> {
    if name.is_empty() {
        return Err(WriteError(format!("a {what} is empty")));
    }
    if name.contains(['\n', '\r']) {
        return Err(WriteError(format!("the {what} {name:?} has a line break")));
    }
    if matches!(escapes, Escapes::Measurement) && name.starts_with('#') {
        return Err(WriteError(format!("the measurement {name:?} would read as a comment")));
    }
    for c in name.chars() {
        if c.is_ascii() && escapes.escapes(c as u8) {
            out.push('\\');
        }
        out.push(c);
    }
    Ok(())
}
