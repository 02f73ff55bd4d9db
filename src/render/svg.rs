//! Layout of a shields.io-style "flat" badge as SVG text.
//!
//! Geometry follows the familiar flat style so the badge sits naturally next to other badges:
//! 20px tall, 3px corner radius, 5px padding either side of each text, an 11px sans-serif face,
//! a faint top-to-bottom gloss, and a 1px drop shadow under white text.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

use super::font::{text_width, FONT_FAMILY, FONT_SIZE_PX};

/// Badge height in CSS pixels.
pub const BADGE_HEIGHT: u32 = 20;

/// Space between a section's edge and its text, on each side.
const HORIZONTAL_PADDING: u32 = 5;

/// Longest label or message kept, in characters. Today's texts are constants, but a future
/// route reflecting user input must not be able to ask for a megabyte-wide badge.
pub const MAX_TEXT_CHARS: usize = 64;

/// The font stack in the SVG: the embedded face first (what the PNG rasteriser has, and what
/// widths were measured with), then faces of similar width browsers are likely to have.
const SVG_FONT_STACK: &str = "DejaVu Sans,Verdana,Geneva,sans-serif";

// The stack must start with the embedded family, or resvg would measure one face and draw
// another.
const _: () = assert!(starts_with(
    SVG_FONT_STACK.as_bytes(),
    FONT_FAMILY.as_bytes()
));

const fn starts_with(haystack: &[u8], prefix: &[u8]) -> bool {
    if prefix.len() > haystack.len() {
        return false;
    }
    let mut i = 0;
    while i < prefix.len() {
        if haystack[i] != prefix[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// An sRGB colour. A typed colour rather than a string, so no caller can smuggle markup into a
/// `fill` attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rgb {
    /// Red channel.
    pub r: u8,
    /// Green channel.
    pub g: u8,
    /// Blue channel.
    pub b: u8,
}

impl Rgb {
    /// A colour from its three channels.
    pub const fn new(r: u8, g: u8, b: u8) -> Self {
        Self { r, g, b }
    }

    /// Perceived brightness in 0..=1 (ITU-R BT.601 weights), used to pick a text colour that
    /// stays readable on this background.
    fn brightness(self) -> f32 {
        (0.299 * f32::from(self.r) + 0.587 * f32::from(self.g) + 0.114 * f32::from(self.b)) / 255.0
    }
}

impl fmt::Display for Rgb {
    /// `#rrggbb`, the form SVG attributes accept everywhere.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{:02x}{:02x}{:02x}", self.r, self.g, self.b)
    }
}

/// Background of the left ("label") section: the dark grey of shields' flat style.
pub const LABEL_COLOUR: Rgb = Rgb::new(0x55, 0x55, 0x55);

/// Escapes the five XML special characters so `text` is safe both as element content and
/// inside a quoted attribute value. Borrows when there is nothing to escape, the common case.
pub fn escape_xml(text: &str) -> Cow<'_, str> {
    if !text.contains(['&', '<', '>', '"', '\'']) {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 16);
    for ch in text.chars() {
        match ch {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&apos;"),
            other => escaped.push(other),
        }
    }
    Cow::Owned(escaped)
}

/// Makes arbitrary text fit for a badge: drops characters XML 1.0 forbids (escaping cannot
/// rescue those, and one would make the whole document unparsable), collapses whitespace the
/// way SVG renders it (so what we measure is what gets drawn), and caps the length.
fn normalise_text(text: &str) -> String {
    // Whitespace controls (tab, newline, ...) survive this filter only to be collapsed below.
    let printable: String = text
        .chars()
        .filter(|ch| {
            ch.is_whitespace() || !(ch.is_control() || matches!(ch, '\u{FFFE}' | '\u{FFFF}'))
        })
        .collect();
    let collapsed = printable.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.chars().count() <= MAX_TEXT_CHARS {
        return collapsed;
    }
    let mut capped: String = collapsed.chars().take(MAX_TEXT_CHARS).collect();
    capped.truncate(capped.trim_end().len());
    capped.push('\u{2026}');
    capped
}

/// One text section of the badge after measuring.
struct Section {
    text: String,
    /// Measured text width, written as `textLength` so other fonts are squeezed to fit.
    text_width: f32,
    /// Whole-pixel section width including padding; whole pixels keep the colour edge crisp.
    width: u32,
    background: Rgb,
}

impl Section {
    fn measure(text: &str, background: Rgb) -> Self {
        let text = normalise_text(text);
        let text_width = text_width(&text);
        // Rounded up so the text never touches the padding; the float-to-int cast saturates.
        let width = text_width.ceil() as u32 + 2 * HORIZONTAL_PADDING;
        Self {
            text,
            text_width,
            width,
            background,
        }
    }
}

/// Renders a flat badge with arbitrary `label` (left, on [`LABEL_COLOUR`]) and `message` (right,
/// on `colour`).
///
/// Both texts are normalised (control characters removed, whitespace collapsed, at most
/// [`MAX_TEXT_CHARS`] characters) and XML-escaped, so any input yields a well-formed SVG with no
/// injected markup. The result is accessible: `role="img"`, an `aria-label`, and a `<title>`
/// reading `label: message`.
pub fn flat_badge_svg(label: &str, message: &str, colour: Rgb) -> String {
    let label = Section::measure(label, LABEL_COLOUR);
    let message = Section::measure(message, colour);
    let total_width = label.width + message.width;
    let accessible_name = format!("{}: {}", label.text, message.text);
    let accessible_name = escape_xml(&accessible_name);

    let mut svg = String::with_capacity(1400);
    // `write!` into a String cannot fail; the results are ignored for that reason only.
    let _ = write!(
        svg,
        concat!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" "#,
            r#"viewBox="0 0 {w} {h}" role="img" aria-label="{name}">"#,
            "<title>{name}</title>",
            // The gloss: a barely visible light-to-dark wash over both sections.
            r#"<linearGradient id="gloss" x2="0" y2="100%">"#,
            r##"<stop offset="0" stop-color="#bbb" stop-opacity=".1"/>"##,
            r#"<stop offset="1" stop-opacity=".1"/>"#,
            "</linearGradient>",
            // One clip for the rounded corners, so the section boundary stays a straight edge.
            r##"<clipPath id="round"><rect width="{w}" height="{h}" rx="3" fill="#fff"/></clipPath>"##,
            r#"<g clip-path="url(#round)">"#,
            r#"<rect width="{lw}" height="{h}" fill="{lc}"/>"#,
            r#"<rect x="{lw}" width="{mw}" height="{h}" fill="{mc}"/>"#,
            r#"<rect width="{w}" height="{h}" fill="url(#gloss)"/>"#,
            "</g>",
            r#"<g text-anchor="middle" font-family="{font}" font-size="{size}" "#,
            r#"text-rendering="geometricPrecision">"#,
        ),
        w = total_width,
        h = BADGE_HEIGHT,
        name = accessible_name,
        lw = label.width,
        mw = message.width,
        lc = label.background,
        mc = message.background,
        font = SVG_FONT_STACK,
        size = FONT_SIZE_PX,
    );
    write_text(&mut svg, &label, 0);
    write_text(&mut svg, &message, label.width);
    svg.push_str("</g></svg>");
    svg
}

/// Writes a section's text twice: a shadow one pixel lower, then the text itself, both centred
/// in the section and held to the measured width.
fn write_text(svg: &mut String, section: &Section, section_x: u32) {
    if section.text.is_empty() {
        // An empty `textLength="0"` run is an error for some renderers; draw nothing instead.
        return;
    }
    let (fill, shadow, shadow_opacity) = if section.background.brightness() > 0.7 {
        // Light background (a future pale colour): dark text with a light shadow reads better.
        ("#333", "#fff", ".6")
    } else {
        ("#fff", "#010101", ".3")
    };
    let centre = f64::from(section_x) + f64::from(section.width) / 2.0;
    let text = escape_xml(&section.text);
    // Baselines at 15 and 14 put DejaVu's x-height and caps in the vertical middle of 20px.
    let _ = write!(
        svg,
        concat!(
            r#"<text aria-hidden="true" x="{x}" y="15" fill="{shadow}" fill-opacity="{opacity}" "#,
            r#"textLength="{len:.2}" lengthAdjust="spacing">{text}</text>"#,
            r#"<text x="{x}" y="14" fill="{fill}" textLength="{len:.2}" "#,
            r#"lengthAdjust="spacing">{text}</text>"#,
        ),
        x = centre,
        shadow = shadow,
        opacity = shadow_opacity,
        fill = fill,
        len = section.text_width,
        text = text,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use resvg::usvg;

    fn parse(svg: &str) -> usvg::Tree {
        // Structure only: no fonts needed to check well-formedness and size.
        usvg::Tree::from_str(svg, &usvg::Options::default()).expect("well-formed SVG")
    }

    #[test]
    fn escapes_all_five_specials() {
        assert_eq!(
            escape_xml(r#"<a href="x">&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&apos;&lt;/a&gt;"
        );
        assert_eq!(escape_xml("<>&\"'"), "&lt;&gt;&amp;&quot;&apos;");
    }

    #[test]
    fn escaping_borrows_plain_text() {
        assert!(matches!(
            escape_xml("update asap"),
            Cow::Borrowed("update asap")
        ));
        assert_eq!(escape_xml(""), "");
        assert_eq!(escape_xml("déjà vu"), "déjà vu");
    }

    #[test]
    fn normalising_collapses_whitespace_and_drops_controls() {
        assert_eq!(normalise_text("  up \t to\n date  "), "up to date");
        assert_eq!(normalise_text("a\u{0}b\u{1b}c\u{FFFF}"), "abc");
        assert_eq!(normalise_text(" \n "), "");
    }

    #[test]
    fn normalising_caps_length() {
        let long = "x".repeat(1000);
        let capped = normalise_text(&long);
        assert_eq!(capped.chars().count(), MAX_TEXT_CHARS + 1);
        assert!(capped.ends_with('\u{2026}'));
        let exact = "y".repeat(MAX_TEXT_CHARS);
        assert_eq!(normalise_text(&exact), exact);
        // Cut right after a word: no dangling space before the ellipsis.
        let words = "abc ".repeat(100);
        let capped = normalise_text(&words);
        assert_eq!(capped.chars().count(), MAX_TEXT_CHARS);
        assert!(capped.ends_with("abc\u{2026}"), "{capped}");
    }

    #[test]
    fn svg_is_well_formed_and_titled() {
        let svg = flat_badge_svg("version", "update asap", Rgb::new(0xe0, 0x5d, 0x44));
        assert!(svg.contains("<title>version: update asap</title>"));
        assert!(svg.contains(r#"role="img""#));
        assert!(svg.contains(r#"aria-label="version: update asap""#));
        assert!(svg.contains("#e05d44"));
        let tree = parse(&svg);
        assert_eq!(tree.size().height(), BADGE_HEIGHT as f32);
    }

    #[test]
    fn hostile_text_cannot_inject_markup() {
        let svg = flat_badge_svg(
            "<script>alert(1)</script>",
            "\"/><image href='x' onload='y'/>&",
            Rgb::new(0, 0, 0),
        );
        assert!(!svg.contains("<script"));
        assert!(!svg.contains("<image"));
        assert!(svg.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        // Still exactly one title and one root: the text stayed text.
        assert_eq!(svg.matches("<title>").count(), 1);
        parse(&svg);
    }

    #[test]
    fn control_characters_do_not_break_the_document() {
        parse(&flat_badge_svg("a\u{0}b", "c\u{8}d\re", Rgb::new(1, 2, 3)));
    }

    #[test]
    fn longer_message_gives_wider_badge() {
        let width = |message: &str| {
            parse(&flat_badge_svg(
                "version",
                message,
                Rgb::new(0x44, 0xcc, 0x11),
            ))
            .size()
            .width()
        };
        assert!(width("unknown") < width("up-to-date"));
        assert!(width("up-to-date") < width("update available"));
        assert!(width("") < width("."));
    }

    #[test]
    fn sections_are_whole_pixels() {
        let svg = flat_badge_svg("version", "update available", Rgb::new(0xfe, 0x7d, 0x37));
        let width = parse(&svg).size().width();
        assert_eq!(width, width.round());
    }

    #[test]
    fn text_colour_follows_background_brightness() {
        let light = flat_badge_svg("a", "b", Rgb::new(0xee, 0xee, 0xee));
        assert!(light.contains(r##"fill="#333""##));
        let dark = flat_badge_svg("a", "b", Rgb::new(0xe0, 0x5d, 0x44));
        assert!(!dark.contains(r##"fill="#333""##));
    }

    #[test]
    fn colour_formats_as_hex() {
        assert_eq!(Rgb::new(0x4c, 0xc1, 0x0f).to_string(), "#4cc10f");
        assert_eq!(Rgb::new(0, 0, 0).to_string(), "#000000");
    }
}
