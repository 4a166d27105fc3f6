use std::time::Duration;

use super::draw::{OPENED, SERIES, THRESHOLD, clean, runs, value_range, wrap};
use super::*;

const T0: Timestamp = Timestamp::from_unix_millis(1_790_000_000_000);

fn at(secs: u64) -> Timestamp {
    T0 + Duration::from_secs(secs)
}

/// A 10-minute frame from `T0`, at the email's size.
fn frame() -> Frame {
    Frame {
        from: T0,
        to: at(600),
        size: EMAIL_SIZE,
    }
}

fn seen(points: Vec<(Timestamp, f64)>, threshold: f64, opened: Option<Timestamp>) -> Chart {
    Chart::Seen {
        series: Series {
            title: "p95 /api/items".into(),
            unit: Unit::Seconds,
            points,
        },
        threshold,
        opened,
    }
}

fn hex(c: plotters::style::RGBColor) -> String {
    format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)
}

/// The points of every `<polyline>` drawn in `color`.
fn polylines(svg: &str, color: plotters::style::RGBColor) -> Vec<Vec<(f64, f64)>> {
    let stroke = format!("stroke=\"{}\"", hex(color));
    svg.split("<polyline")
        .skip(1)
        .map(|rest| &rest[..rest.find("/>").expect("closed tag")])
        .filter(|tag| tag.contains(&stroke))
        .map(|tag| {
            let start = tag.find("points=\"").expect("points") + 8;
            let end = start + tag[start..].find('"').expect("end of points");
            tag[start..end]
                .split_whitespace()
                .map(|p| {
                    let (x, y) = p.split_once(',').expect("x,y");
                    (x.parse().expect("x"), y.parse().expect("y"))
                })
                .collect()
        })
        .collect()
}

#[test]
fn the_svg_holds_one_point_per_sample() {
    let points: Vec<_> = (0..10)
        .map(|i| (at(30 + 60 * i), 0.5 + i as f64 * 0.4))
        .collect();
    let svg = svg(&seen(points, 3.0, None), &frame()).unwrap();
    let lines = polylines(&svg, SERIES);
    assert_eq!(lines.len(), 1, "{svg}");
    assert_eq!(lines[0].len(), 10);
    // Time runs left to right, and higher values are higher up (smaller y).
    assert!(
        lines[0]
            .windows(2)
            .all(|w| w[1].0 > w[0].0 && w[1].1 < w[0].1)
    );
    assert!(svg.starts_with("<svg width=\"560\" height=\"200\""));
}

#[test]
fn the_threshold_line_is_at_its_value_and_the_opening_at_its_instant() {
    // Values 0 and 2 at two instants: the threshold 1 lies halfway between them in y, and the
    // opening, halfway in time, halfway between them in x.
    let points = vec![(at(100), 0.0), (at(500), 2.0)];
    let svg = svg(&seen(points, 1.0, Some(at(300))), &frame()).unwrap();
    let series = &polylines(&svg, SERIES)[0];
    let (low, high) = (series[0], series[1]);
    let threshold = &polylines(&svg, THRESHOLD)[0];
    assert_eq!(threshold.len(), 2);
    assert_eq!(threshold[0].1, threshold[1].1, "horizontal");
    assert!(
        (threshold[0].1 - (low.1 + high.1) / 2.0).abs() <= 1.0,
        "{svg}"
    );
    assert!(
        threshold[0].0 < low.0 && threshold[1].0 > high.0,
        "spans the frame"
    );
    let opened = &polylines(&svg, OPENED)[0];
    assert_eq!(opened[0].0, opened[1].0, "vertical");
    assert!((opened[0].0 - (low.0 + high.0) / 2.0).abs() <= 1.0, "{svg}");
    // The threshold's value is written by its line, in the series' unit.
    assert!(
        svg.contains(">\n1 s\n</text>") || svg.contains(">1 s</text>"),
        "{svg}"
    );
}

#[test]
fn an_opening_outside_the_frame_and_a_non_finite_threshold_are_not_drawn() {
    let points = vec![(at(100), 1.0), (at(200), 2.0)];
    let svg = svg(&seen(points, f64::NAN, Some(at(9_000))), &frame()).unwrap();
    assert!(polylines(&svg, THRESHOLD).is_empty());
    assert!(polylines(&svg, OPENED).is_empty());
    assert_eq!(polylines(&svg, SERIES)[0].len(), 2);
}

#[test]
fn every_text_is_escaped_and_nothing_is_fetched_or_run() {
    let chart = Chart::Seen {
        series: Series {
            title: "<script>alert(\"x\")</script> & 'co'\u{0}\u{1b}".into(),
            unit: Unit::Ratio,
            points: vec![(at(60), 0.1), (at(120), 0.2)],
        },
        threshold: 0.05,
        opened: None,
    };
    let svg = svg(&chart, &frame()).unwrap();
    assert!(!svg.contains("<script"), "{svg}");
    assert!(svg.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &apos;co&apos;"));
    assert!(!svg.contains('\u{0}') && !svg.contains('\u{1b}'));
    for forbidden in [
        "href",
        "url(",
        "onload",
        "onclick",
        "<image",
        "<foreignObject",
    ] {
        assert!(!svg.contains(forbidden), "{forbidden} in {svg}");
    }
    // The ratio reads as a percentage.
    assert!(svg.contains("5%"), "{svg}");
}

#[test]
fn the_png_decodes_at_the_frame_size() {
    let points: Vec<_> = (0..20).map(|i| (at(30 * i), (i % 7) as f64)).collect();
    for chart in [
        seen(points, 3.0, Some(at(300))),
        Chart::Blind {
            title: "p95".into(),
            reason: "connection refused".into(),
        },
    ] {
        let bytes = png(&chart, &frame()).unwrap();
        let decoder = ::png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().expect("a PNG");
        let info = reader.info();
        assert_eq!((info.width, info.height), EMAIL_SIZE);
        assert_eq!(info.color_type, ::png::ColorType::Rgb);
        let mut image = vec![0; reader.output_buffer_size().unwrap()];
        reader.next_frame(&mut image).expect("the pixels");
        // Something was drawn besides the white background.
        assert!(image.iter().any(|b| *b < 200));
    }
}

#[test]
fn the_png_draws_the_threshold_in_its_colour() {
    let bytes = png(&seen(vec![(at(60), 1.0)], 2.0, None), &frame()).unwrap();
    let mut reader = ::png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .unwrap();
    let mut image = vec![0; reader.output_buffer_size().unwrap()];
    reader.next_frame(&mut image).unwrap();
    let red = [THRESHOLD.0, THRESHOLD.1, THRESHOLD.2];
    assert!(image.chunks(3).any(|p| p == red));
}

#[test]
fn the_blind_chart_says_why() {
    let chart = Chart::Blind {
        title: "Error ratio".into(),
        reason: "Prometheus cannot be read: connect: connection refused <127.0.0.1:9090>".into(),
    };
    let svg = svg(&chart, &frame()).unwrap();
    assert!(svg.contains("Error ratio"));
    assert!(svg.contains("connection refused"), "{svg}");
    assert!(svg.contains("&lt;127.0.0.1:9090&gt;"), "{svg}");
    assert!(polylines(&svg, SERIES).is_empty());
}

#[test]
fn empty_non_finite_and_absurd_inputs_do_not_panic() {
    let nan = vec![
        (at(10), f64::NAN),
        (at(20), f64::INFINITY),
        (at(30), f64::NEG_INFINITY),
    ];
    let cases = [
        seen(Vec::new(), 3.0, None),
        seen(nan, f64::INFINITY, Some(at(20))),
        seen(vec![(at(10), 1e300), (at(20), -1e300)], 0.0, None),
        seen(vec![(at(10), 0.0)], 0.0, None),
        Chart::Blind {
            title: String::new(),
            reason: "x".repeat(5_000),
        },
    ];
    let frames = [
        frame(),
        Frame {
            from: at(600),
            to: T0,
            size: (0, u32::MAX),
        },
        Frame {
            from: Timestamp::EPOCH,
            to: Timestamp::LATEST,
            size: (1, 1),
        },
    ];
    for chart in &cases {
        for f in &frames {
            let s = svg(chart, f).unwrap();
            assert!(s.ends_with("</svg>\n"), "{s}");
            png(chart, f).unwrap();
        }
    }
    // No finite sample, no series line.
    let s = svg(&cases[1], &frame()).unwrap();
    assert!(polylines(&s, SERIES).is_empty());
}

#[test]
fn runs_break_at_non_finite_values_gaps_and_the_frame_edges() {
    let points = vec![
        (at(0), 1.0),
        (at(15), 1.0),
        (at(30), f64::NAN),
        (at(45), 1.0),
        (at(60), 1.0),
        (at(75), 1.0),
        (at(300), 1.0), // no data for 225 s: a gap
        (at(315), 1.0),
        (at(900), 1.0), // outside the frame
    ];
    let frame = frame().seconds();
    let lens: Vec<usize> = runs(&points, frame).iter().map(Vec::len).collect();
    assert_eq!(lens, [2, 3, 2]);
}

#[test]
fn the_value_axis_holds_the_values_and_the_threshold() {
    assert_eq!(value_range(&[], 3.0), (0.0, 3.3));
    let (lo, hi) = value_range(&[(0.0, 5.0)], 3.0);
    assert_eq!(lo, 0.0);
    assert!(hi > 5.0);
    let (lo, _) = value_range(&[(0.0, -2.0)], 1.0);
    assert_eq!(lo, -2.0);
    assert_eq!(value_range(&[], f64::NAN), (0.0, 1.1));
}

#[test]
fn units_read_as_the_symptom_lines_do() {
    assert_eq!(Unit::Seconds.format(3.0), "3 s");
    assert_eq!(Unit::Seconds.format(0.25), "0.25 s");
    assert_eq!(Unit::Ratio.format(0.125), "12.5%");
    assert_eq!(Unit::Ratio.format(0.0), "0%");
    assert_eq!(Unit::Number.format(1234.6), "1235");
    assert_eq!(Unit::Number.format(-0.0001), "0");
}

#[test]
fn text_is_cleaned_and_wrapped() {
    assert_eq!(clean("a\nb\tc"), "a b c");
    assert_eq!(clean(&"é".repeat(400)).chars().count(), 301);
    assert_eq!(
        wrap("one two three four", 9, 5),
        ["one two", "three", "four"]
    );
    assert_eq!(wrap("abcdefghij", 4, 5), ["abcd", "efgh", "ij"]);
    assert_eq!(wrap("a b c d e f", 1, 2), ["a", "b…"]);
    assert!(wrap("", 10, 3).is_empty());
}
