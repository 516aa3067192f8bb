//! The line protocol's grammar and its error cases.

use super::line::*;
use std::borrow::Cow;

fn one(text: &str) -> Point<'_> {
    let mut points = parse(text.as_bytes(), Precision::Ns).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    assert_eq!(points.len(), 1, "{text:?}");
    points.remove(0)
}

fn refused(text: &str) -> LineError {
    match parse(text.as_bytes(), Precision::Ns) {
        Ok(points) => panic!("{text:?} was accepted as {points:?}"),
        Err(e) => e,
    }
}

fn field<'a>(p: &'a Point<'_>, key: &str) -> &'a FieldValue<'a> {
    &p.fields.iter().rev().find(|(k, _)| k == key).unwrap_or_else(|| panic!("no field {key} in {p:?}")).1
}

fn tags<'a>(p: &'a Point<'_>) -> Vec<(&'a str, &'a str)> {
    p.tags.iter().map(|(k, v)| (k.as_ref(), v.as_ref())).collect()
}

#[test]
fn a_point_with_tags_fields_and_a_timestamp_reads_as_written() {
    let p = one("cpu,host=hv-01,cluster=eu-1 usage_user=12.5,usage_system=3i 1700000000000000000");
    assert_eq!(p.measurement, "cpu");
    assert_eq!(tags(&p), [("host", "hv-01"), ("cluster", "eu-1")]);
    assert_eq!(field(&p, "usage_user"), &FieldValue::Float(12.5));
    assert_eq!(field(&p, "usage_system"), &FieldValue::Int(3));
    assert_eq!(p.timestamp, Some(1_700_000_000_000_000_000));
    assert!(matches!(p.measurement, Cow::Borrowed(_)), "nothing to unescape, nothing copied");
}

#[test]
fn every_field_type_and_spelling_is_recognised() {
    let p = one(concat!(
        "m a=1,b=-1.5,c=1e3,d=-2.5E-3,e=.5,f=1.,g=+4,h=42i,i=-42i,j=42u,k=\"text\",l=\"\",",
        "t1=t,t2=T,t3=true,t4=True,t5=TRUE,f1=f,f2=F,f3=false,f4=False,f5=FALSE"
    ));
    let floats = [("a", 1.0), ("b", -1.5), ("c", 1000.0), ("d", -0.0025), ("e", 0.5), ("f", 1.0), ("g", 4.0)];
    for (k, v) in floats {
        assert_eq!(field(&p, k), &FieldValue::Float(v), "{k}");
    }
    assert_eq!(field(&p, "h"), &FieldValue::Int(42));
    assert_eq!(field(&p, "i"), &FieldValue::Int(-42));
    assert_eq!(field(&p, "j"), &FieldValue::UInt(42));
    assert_eq!(field(&p, "k"), &FieldValue::Str("text".into()));
    assert_eq!(field(&p, "l"), &FieldValue::Str("".into()));
    for k in ["t1", "t2", "t3", "t4", "t5"] {
        assert_eq!(field(&p, k), &FieldValue::Bool(true), "{k}");
    }
    for k in ["f1", "f2", "f3", "f4", "f5"] {
        assert_eq!(field(&p, k), &FieldValue::Bool(false), "{k}");
    }
    assert_eq!(p.timestamp, None, "no timestamp: the receiver's clock applies");
}

#[test]
fn the_extremes_of_each_integer_type_are_accepted() {
    let p = one("m a=9223372036854775807i,b=-9223372036854775808i,c=18446744073709551615u,d=0u");
    assert_eq!(field(&p, "a"), &FieldValue::Int(i64::MAX));
    assert_eq!(field(&p, "b"), &FieldValue::Int(i64::MIN));
    assert_eq!(field(&p, "c"), &FieldValue::UInt(u64::MAX));
    assert_eq!(field(&p, "d"), &FieldValue::UInt(0));
}

#[test]
fn escapes_in_names_and_strings_are_undone() {
    let p = one(r#"disk\ io\,total,mount\=point=/var\ lib,dev=sd\,a read\ bytes=1,msg="say \"hi\" \\ bye" 5"#);
    assert_eq!(p.measurement, "disk io,total");
    assert_eq!(tags(&p), [("mount=point", "/var lib"), ("dev", "sd,a")]);
    assert_eq!(field(&p, "read bytes"), &FieldValue::Float(1.0));
    assert_eq!(field(&p, "msg"), &FieldValue::Str(r#"say "hi" \ bye"#.into()));
}

#[test]
fn a_backslash_before_any_other_character_is_itself_and_two_make_one() {
    let p = one(r#"my\\measure\x,path=C:\temp\\dir v="a\nb\q" 1"#);
    assert_eq!(p.measurement, r"my\measure\x");
    assert_eq!(tags(&p), [("path", r"C:\temp\dir")]);
    assert_eq!(field(&p, "v"), &FieldValue::Str(r"a\nb\q".into()));
    let p = one(r"m,t=a\ b v=1");
    assert_eq!(tags(&p), [("t", "a b")], "an escaped space does not end the tag set");
}

#[test]
fn an_equals_sign_in_a_tag_value_or_the_measurement_needs_no_escape() {
    let p = one("a=b,k=x=y v=1");
    assert_eq!(p.measurement, "a=b");
    assert_eq!(tags(&p), [("k", "x=y")]);
}

#[test]
fn a_string_may_span_lines_and_later_errors_name_the_right_line() {
    let points = parse(b"log msg=\"first\nsecond\" 1\nlog msg=\"ok\" 2\n", Precision::Ns).expect("is accepted");
    assert_eq!(points.len(), 2);
    assert_eq!(field(&points[0], "msg"), &FieldValue::Str("first\nsecond".into()));
    let e = refused("log msg=\"a\nb\" 1\nlog msg=\"ok\" 2\nlog msg=oops 3\n");
    assert_eq!(e.line, 4);
    assert_eq!(e.text, "log msg=oops 3");
}

#[test]
fn blank_lines_comments_leading_space_and_crlf_are_skipped() {
    let body = "# a comment\r\n\r\n   cpu v=1 10\r\n\t\n# cpu v=2 20\nmem v=3 30   \r\n\n";
    let points = parse(body.as_bytes(), Precision::Ns).expect("is accepted");
    let got: Vec<(&str, Option<i64>)> = points.iter().map(|p| (p.measurement.as_ref(), p.timestamp)).collect();
    assert_eq!(got, [("cpu", Some(10)), ("mem", Some(30))]);
    assert!(parse(b"", Precision::Ns).expect("is accepted").is_empty(), "an empty body is no points");
    assert_eq!(one("cpu  v=1   7").timestamp, Some(7), "several spaces between the parts");
}

#[test]
fn timestamps_are_scaled_from_the_request_s_precision() {
    let cases =
        [(Precision::Ns, 1_i64), (Precision::Us, 1_000), (Precision::Ms, 1_000_000), (Precision::S, 1_000_000_000)];
    for (precision, scale) in cases {
        let points = parse(b"m v=1 1700000000\nm v=1 -5\nm v=1", precision).expect("is accepted");
        let got: Vec<Option<i64>> = points.iter().map(|p| p.timestamp).collect();
        assert_eq!(got, [Some(1_700_000_000 * scale), Some(-5 * scale), None], "{precision:?}");
    }
    assert_eq!(Precision::parse("ms"), Some(Precision::Ms));
    assert_eq!(Precision::parse("h"), None);
}

#[test]
fn malformed_lines_are_refused_naming_the_line_and_what_is_wrong() {
    let cases: &[(&str, &str)] = &[
        ("cpu", "has no fields"),
        ("cpu ", "has no fields"),
        ("cpu,host=a", "has no fields"),
        (",host=a v=1", "measurement name is empty"),
        (" v=1", "has no fields"),
        ("cpu,host v=1", "tag \"host\" has no value"),
        ("cpu,host= v=1", "tag \"host\" has an empty value"),
        ("cpu,=a v=1", "tag key is empty"),
        ("cpu,host=a,host=b v=1", "tag \"host\" appears twice"),
        ("cpu =1", "field key is empty"),
        ("cpu v", "field \"v\" has no value"),
        ("cpu v=", "field \"v\" has no value"),
        ("cpu v=1,", "field key is empty"),
        ("cpu v=1x", "invalid value \"1x\""),
        ("cpu v=NaN", "invalid value \"NaN\""),
        ("cpu v=inf", "invalid value \"inf\""),
        ("cpu v=-Infinity", "invalid value"),
        ("cpu v=1e", "invalid value \"1e\""),
        ("cpu v=--1", "invalid value"),
        ("cpu v=1.2.3", "invalid value"),
        ("cpu v=0x10", "invalid value"),
        ("cpu v=.", "invalid value"),
        ("cpu v=tru", "invalid value \"tru\""),
        ("cpu v=1e999", "invalid value \"1e999\""),
        ("cpu v=1.5i", "invalid value \"1.5i\""),
        ("cpu v=-1u", "invalid value \"-1u\""),
        ("cpu v=i", "invalid value \"i\""),
        ("cpu v=9223372036854775808i", "invalid value"),
        ("cpu v=18446744073709551616u", "invalid value"),
        ("cpu v=\"open", "is not closed"),
        ("cpu v=\"a\"b", "unexpected \"b\" after the point"),
        ("cpu v=1 12a", "invalid timestamp \"12a\""),
        ("cpu v=1 1.5", "invalid timestamp"),
        ("cpu v=1 9223372036854775808", "out of range"),
        ("cpu v=1 10 20", "unexpected \"20\" after the point"),
        ("cpu v=1\rjunk", "unexpected \"junk\""),
    ];
    for (line, expected) in cases {
        let body = format!("ok v=1 1\n{line}\nok v=1 2\n");
        let e = refused(&body);
        assert_eq!((e.line, e.text.as_str()), (2, *line), "{line:?}");
        assert!(e.message.contains(expected), "{line:?}: {:?} does not say {expected:?}", e.message);
        assert!(e.to_string().starts_with("line 2 ("), "{e}");
    }
}

#[test]
fn a_timestamp_that_overflows_at_its_precision_is_refused() {
    let e = parse(b"m v=1 9300000000000", Precision::S).expect_err("is refused");
    assert!(e.message.contains("9300000000000 s is out of range"), "{}", e.message);
    assert!(parse(b"m v=1 9200000000", Precision::S).is_ok());
}

#[test]
fn invalid_utf8_is_refused_naming_its_line() {
    let e = parse(b"ok v=1\nbad v=\"\xff\"\n", Precision::Ns).expect_err("is refused");
    assert_eq!(e.line, 2);
    assert!(e.message.contains("UTF-8"), "{}", e.message);
}

#[test]
fn a_long_bad_line_is_shortened_in_the_error() {
    let line = format!("cpu v={}x", "1".repeat(500));
    let e = refused(&line);
    assert_eq!(e.text.chars().count(), 120);
}

#[test]
fn written_points_read_back_the_same() {
    let points = vec![
        Point {
            measurement: "disk io,total\\".into(),
            tags: vec![("mount=point".into(), "/var lib,x\\".into()), ("dev".into(), "sda".into())],
            fields: vec![
                ("read bytes".into(), FieldValue::UInt(u64::MAX)),
                ("f".into(), FieldValue::Float(-1.25e-300)),
                ("g".into(), FieldValue::Float(1e300)),
                ("n".into(), FieldValue::Int(i64::MIN)),
                ("ok".into(), FieldValue::Bool(true)),
                ("s".into(), FieldValue::Str("line one\nsays \"hi\" \\ ".into())),
            ],
            timestamp: Some(-1),
        },
        Point {
            measurement: "m".into(),
            tags: vec![],
            fields: vec![("v".into(), FieldValue::Float(0.1))],
            timestamp: None,
        },
    ];
    let mut body = String::new();
    for p in &points {
        p.write_to(&mut body).expect("is accepted");
    }
    assert_eq!(parse(body.as_bytes(), Precision::Ns).expect("is accepted"), points, "{body}");
}

#[test]
fn a_point_line_protocol_cannot_carry_is_not_written() {
    let base = Point {
        measurement: "m".into(),
        tags: vec![],
        fields: vec![("v".into(), FieldValue::Int(1))],
        timestamp: None,
    };
    let bad = [
        Point { measurement: "a\nb".into(), ..base.clone() },
        Point { measurement: "#m".into(), ..base.clone() },
        Point { measurement: "".into(), ..base.clone() },
        Point { tags: vec![("t".into(), "".into())], ..base.clone() },
        Point { fields: vec![], ..base.clone() },
        Point { fields: vec![("v".into(), FieldValue::Float(f64::NAN))], ..base.clone() },
        Point { fields: vec![("v".into(), FieldValue::Float(f64::INFINITY))], ..base.clone() },
    ];
    for p in bad {
        let mut out = String::from("kept\n");
        assert!(p.write_to(&mut out).is_err(), "{p:?}");
        assert_eq!(out, "kept\n", "a refused point leaves nothing behind");
    }
}

/// Each field's spelling, read back as a line of its own (with a value), names the same measurement, tags
/// and field: so two equal spellings are one series.
fn spellings_read_back(text: &str) -> Vec<String> {
    let mut spelt = Vec::new();
    for_each_line(text.as_bytes(), Precision::Ns, |line| {
        let mut buf = String::new();
        for (n, (key, _)) in line.point.fields.iter().enumerate() {
            let spelling = line.spelling(n, &mut buf).to_owned();
            let line_again = format!("{spelling}=0");
            let again = one(&line_again);
            assert_eq!(again.measurement, line.point.measurement, "{spelling:?}");
            assert_eq!(again.tags, line.point.tags, "{spelling:?}");
            assert_eq!(again.fields[0].0, *key, "{spelling:?}");
            spelt.push(spelling);
        }
    })
    .unwrap_or_else(|e| panic!("{text:?}: {e}"));
    spelt
}

#[test]
fn a_spelling_names_one_series_whatever_the_escapes_and_spacing() {
    let spelt = spellings_read_back(concat!(
        "cpu,host=a value=1\n",
        "cpu,host=a   value=1,other=2 5\n",
        "cpu,host=a\\ b\\=c,x=\\\\ va\\,lue=1,va\\ lue=2\n",
        "c\\ pu,host=a value=1\n",
        "cpu,host=a\\  value=1\n",
    ));
    assert_eq!(spelt[0], "cpu,host=a value", "a first field after one space is a stretch of the line");
    assert_eq!(spelt[1], spelt[0], "more spaces spell the same");
    assert_eq!(spelt[2], "cpu,host=a other");
    let mut distinct = spelt[2..].to_vec();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), spelt.len() - 2, "different series spell differently: {spelt:?}");
}
