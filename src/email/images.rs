//! The symptom charts of an email as inline images: each chart drawn as a PNG at
//! [`EMAIL_SIZE`] (mail clients strip SVG), named by a `Content-ID` that the HTML part's
//! `<img src="cid:…">` refers to, in a `multipart/related` part with the HTML (RFC 2387).
//!
//! Pure and deterministic like the rest of the email: the same charts and page key give the same
//! bytes and the same IDs. A `Content-ID` is unique per email (the chart's place, then the
//! `Message-ID`'s local part, which is the page key) and worldwide (our `Message-ID` domain).

use lettre::message::header::ContentType;
use lettre::message::{Attachment, MultiPart, SinglePart};

use crate::chart::{self, EMAIL_SIZE, SymptomChart};

/// One chart drawn for the email.
#[derive(Debug, Clone)]
pub(super) struct Image {
    /// The `Content-ID`, without angle brackets: `chart1.<page key>@harven-watchdog`.
    pub cid: String,
    /// The file name a client shows when it lists the image: `chart-1-<rule>.png`.
    pub filename: String,
    pub png: Vec<u8>,
    pub size: (u32, u32),
}

/// Each of `charts` drawn, in order; `None` where drawing failed (the email then says so in words).
/// `message_id` is the email's `<local@domain>`, which the IDs are made from.
pub(super) fn draw(charts: &[SymptomChart], message_id: &str) -> Vec<Option<Image>> {
    let local = message_id.trim_start_matches('<').trim_end_matches('>');
    charts
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let n = i + 1;
            match chart::png(&c.chart, &c.frame(EMAIL_SIZE)) {
                Ok(png) => Some(Image {
                    cid: format!("chart{n}.{local}"),
                    filename: format!("chart-{n}-{}.png", file_safe(&c.rule)),
                    png,
                    size: EMAIL_SIZE,
                }),
                Err(e) => {
                    tracing::warn!(rule = %c.rule, error = %e, "a symptom chart could not be drawn; the email says so instead");
                    None
                }
            }
        })
        .collect()
}

/// `html` with the drawn `images` in one `multipart/related` part (the HTML first, as the root the
/// images belong to); `None` when no image was drawn, so the HTML stays a plain part.
pub(super) fn related(html: SinglePart, images: &[Option<Image>]) -> Option<MultiPart> {
    let mut drawn = images.iter().flatten().peekable();
    drawn.peek()?;
    let png = ContentType::parse("image/png").expect("a valid media type");
    let mut related = MultiPart::related().singlepart(html);
    for image in drawn {
        related = related.singlepart(
            Attachment::new_inline_with_name(image.cid.clone(), image.filename.clone())
                .body(image.png.clone(), png.clone()),
        );
    }
    Some(related)
}

/// `text` with only ASCII letters, digits, `.`, `_` and `-` (anything else `_`): a file name every
/// client takes, whatever a runbook names its rules.
fn file_safe(text: &str) -> String {
    text.chars()
        .take(80)
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}
