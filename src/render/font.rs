//! The one font every badge is measured and drawn with.
//!
//! Measuring and rasterising with the *same* embedded face is what keeps the layout honest: the
//! widths written into the SVG are the widths resvg draws, whatever fonts the host has (none, in a
//! container). Browsers showing the SVG may substitute another face; the SVG pins each text run
//! to the measured width with `textLength`, so it still fits its box.

use std::sync::LazyLock;

use ttf_parser::{Face, GlyphId};

/// DejaVu Sans, embedded so rendering never depends on the host's fonts.
/// Licence: `assets/fonts/LICENSE-DejaVu.txt` (Bitstream Vera licence; DejaVu changes are public
/// domain), which must ship alongside the binary's other notices.
pub(super) static FONT_DATA: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// The family name inside the embedded font; the SVG asks for it first so resvg picks it.
pub const FONT_FAMILY: &str = "DejaVu Sans";

/// Text size of badge labels, in CSS pixels (the shields.io flat style uses 11px).
pub const FONT_SIZE_PX: f32 = 11.0;

/// Parsed once: parsing walks the table directory, cheap but pointless to repeat per call.
static FACE: LazyLock<Face<'static>> = LazyLock::new(|| {
    // The bytes are compiled in, so a failure here is a broken build, caught by the unit tests.
    Face::parse(FONT_DATA, 0).expect("embedded DejaVu Sans must parse")
});

/// Width in CSS pixels of `text` set in the embedded font at [`FONT_SIZE_PX`], from glyph
/// advances plus the font's pair kerning.
///
/// Characters the font lacks are counted with the advance of its "missing glyph" box, which is
/// what the rasteriser draws for them (it has no other font to fall back to).
pub fn text_width(text: &str) -> f32 {
    let face = &*FACE;
    let px_per_unit = FONT_SIZE_PX / f32::from(face.units_per_em());
    let mut units = 0.0_f32;
    let mut previous: Option<GlyphId> = None;
    for ch in text.chars() {
        let glyph = face.glyph_index(ch).unwrap_or(GlyphId(0));
        units += f32::from(face.glyph_hor_advance(glyph).unwrap_or(0));
        if let Some(left) = previous {
            units += f32::from(kerning(face, left, glyph));
        }
        previous = Some(glyph);
    }
    units * px_per_unit
}

/// Horizontal pair adjustment from the legacy `kern` table, in font units (0 when absent).
fn kerning(face: &Face<'_>, left: GlyphId, right: GlyphId) -> i16 {
    let Some(kern) = face.tables().kern else {
        return 0;
    };
    kern.subtables
        .into_iter()
        .filter(|subtable| subtable.horizontal && !subtable.variable)
        .find_map(|subtable| subtable.glyphs_kerning(left, right))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_font_is_dejavu_sans() {
        let family = FACE
            .names()
            .into_iter()
            .filter(|name| name.name_id == ttf_parser::name_id::FAMILY)
            .find_map(|name| name.to_string());
        assert_eq!(family.as_deref(), Some(FONT_FAMILY));
    }

    #[test]
    fn width_grows_with_text() {
        let mut previous = 0.0;
        for text in ["u", "up", "up-", "up-to", "up-to-date", "up-to-date!"] {
            let width = text_width(text);
            assert!(
                width > previous,
                "{text:?} ({width}) not wider than {previous}"
            );
            previous = width;
        }
        assert_eq!(text_width(""), 0.0);
    }

    #[test]
    fn width_is_plausible_for_11px_text() {
        // DejaVu Sans averages a little over half an em per lowercase letter.
        let width = text_width("version");
        assert!((35.0..55.0).contains(&width), "width {width}");
    }

    #[test]
    fn missing_glyphs_still_take_space() {
        // U+E000 is private use: DejaVu has no glyph for it.
        assert!(text_width("\u{E000}") > 0.0);
    }
}
