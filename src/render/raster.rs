//! PNG rendering of badge SVGs with resvg.
//!
//! The PNG is drawn from the very SVG we serve, so the two formats cannot drift apart.

use std::fmt;
use std::sync::Arc;

use resvg::tiny_skia::{Pixmap, Transform};
use resvg::usvg::{self, fontdb, ImageHrefResolver};

use super::font::{FONT_DATA, FONT_FAMILY};

/// Largest supported pixel density. 4x covers every common high-DPI screen; beyond it a
/// request would only cost memory and CPU for pixels nobody sees.
pub const MAX_SCALE: u8 = 4;

/// Pixel density of a PNG badge: 1 for ordinary screens, 2 for "retina" ones, up to
/// [`MAX_SCALE`]. The badge is re-drawn at that size, not stretched, so edges and text stay sharp.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scale(u8);

impl Scale {
    /// One device pixel per CSS pixel.
    pub const ONE: Scale = Scale(1);
    /// Two device pixels per CSS pixel, the usual high-DPI density.
    pub const TWO: Scale = Scale(2);

    /// `Some` for factors 1 through [`MAX_SCALE`], `None` otherwise.
    #[cfg(test)]
    pub const fn new(factor: u8) -> Option<Scale> {
        if factor >= 1 && factor <= MAX_SCALE {
            Some(Scale(factor))
        } else {
            None
        }
    }

    /// The nearest supported scale to a requested one: 0 becomes 1, anything above
    /// [`MAX_SCALE`] becomes `MAX_SCALE`. For request parameters, where answering with *some*
    /// image beats an error (an error makes the badge vanish from the admin page).
    pub fn clamped(factor: u32) -> Scale {
        // The clamp keeps the value within u8 range, so the cast cannot truncate.
        Scale(factor.clamp(1, u32::from(MAX_SCALE)) as u8)
    }

    /// Every supported scale, smallest first.
    pub fn all() -> impl Iterator<Item = Scale> {
        (1..=MAX_SCALE).map(Scale)
    }

    /// The factor as a number.
    pub const fn get(self) -> u8 {
        self.0
    }
}

impl Default for Scale {
    fn default() -> Self {
        Scale::ONE
    }
}

/// Why a badge could not be rasterised. With our own constant SVGs none of these is expected;
/// they exist so a bug surfaces as an error at start-up rather than a panic.
#[derive(Debug)]
pub enum RenderError {
    /// The SVG did not parse.
    Svg(usvg::Error),
    /// The SVG has a zero or absurdly large pixel size.
    InvalidSize {
        /// Requested width in device pixels.
        width: f32,
        /// Requested height in device pixels.
        height: f32,
    },
    /// The PNG encoder failed.
    Png(String),
}

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RenderError::Svg(error) => write!(f, "badge SVG does not parse: {error}"),
            RenderError::InvalidSize { width, height } => {
                write!(f, "badge has an unusable pixel size {width}x{height}")
            }
            RenderError::Png(error) => write!(f, "badge PNG encoding failed: {error}"),
        }
    }
}

impl std::error::Error for RenderError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RenderError::Svg(error) => Some(error),
            _ => None,
        }
    }
}

/// Largest raster side we agree to allocate: a badge is 20px tall and rarely 200px wide, so
/// anything near this is a bug, not a badge.
const MAX_PIXELS_PER_SIDE: f32 = 4096.0;

/// Turns badge SVG into PNG bytes using only the embedded font.
///
/// Build it once and reuse it: construction indexes the embedded font. It is `Send + Sync`.
pub struct Rasterizer {
    options: usvg::Options<'static>,
}

impl Rasterizer {
    /// A rasteriser whose font database holds just the embedded DejaVu Sans, registered as
    /// the default and `sans-serif` family.
    ///
    /// System fonts are deliberately not loaded: output must be identical on a developer laptop
    /// and in a font-less container.
    pub fn new() -> Self {
        let mut fonts = fontdb::Database::new();
        // A static slice as the source: no 750 KB copy of the font.
        fonts.load_font_source(fontdb::Source::Binary(Arc::new(FONT_DATA)));
        fonts.set_sans_serif_family(FONT_FAMILY);

        let mut options = usvg::Options {
            font_family: FONT_FAMILY.to_owned(),
            fontdb: Arc::new(fonts),
            ..usvg::Options::default()
        };
        // Badge SVGs never reference images; refusing external hrefs means a future badge
        // carrying user text can never make the renderer read a file from disk.
        options.image_href_resolver = ImageHrefResolver {
            resolve_data: ImageHrefResolver::default_data_resolver(),
            resolve_string: Box::new(|_, _| None),
        };
        Self { options }
    }

    /// Renders `svg` at `scale` times its declared size and encodes it as an RGBA PNG.
    ///
    /// CPU-bound (roughly a millisecond per badge): call it at start-up or off the async
    /// workers, never inside a request handler.
    ///
    /// # Errors
    /// [`RenderError::Svg`] if `svg` does not parse, [`RenderError::InvalidSize`] if its size
    /// is empty or beyond 4096 device pixels a side, [`RenderError::Png`] if encoding fails.
    pub fn render_png(&self, svg: &str, scale: Scale) -> Result<Vec<u8>, RenderError> {
        let tree = usvg::Tree::from_str(svg, &self.options).map_err(RenderError::Svg)?;
        let factor = f32::from(scale.get());
        let width = (tree.size().width() * factor).ceil();
        let height = (tree.size().height() * factor).ceil();
        let invalid = || RenderError::InvalidSize { width, height };
        if !(1.0..=MAX_PIXELS_PER_SIDE).contains(&width)
            || !(1.0..=MAX_PIXELS_PER_SIDE).contains(&height)
        {
            return Err(invalid());
        }
        // Both sides were just checked to be whole numbers within 1..=4096.
        let mut pixmap = Pixmap::new(width as u32, height as u32).ok_or_else(invalid)?;
        // Scaling the drawing, not the bitmap, is what keeps 2x output crisp.
        resvg::render(
            &tree,
            Transform::from_scale(factor, factor),
            &mut pixmap.as_mut(),
        );
        pixmap
            .encode_png()
            .map_err(|error| RenderError::Png(error.to_string()))
    }
}

impl Default for Rasterizer {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Rasterizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rasterizer")
            .field("fonts", &self.options.fontdb.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::super::svg::{flat_badge_svg, Rgb};
    use super::*;

    const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

    #[test]
    fn scale_bounds() {
        assert_eq!(Scale::new(0), None);
        assert_eq!(Scale::new(1), Some(Scale::ONE));
        assert_eq!(Scale::new(MAX_SCALE).map(Scale::get), Some(MAX_SCALE));
        assert_eq!(Scale::new(MAX_SCALE + 1), None);
        assert_eq!(Scale::clamped(0), Scale::ONE);
        assert_eq!(Scale::clamped(2), Scale::TWO);
        assert_eq!(Scale::clamped(u32::MAX).get(), MAX_SCALE);
        assert_eq!(Scale::all().count(), usize::from(MAX_SCALE));
    }

    #[test]
    fn font_database_holds_only_the_embedded_font() {
        let rasterizer = Rasterizer::new();
        assert_eq!(rasterizer.options.fontdb.len(), 1);
        let face = rasterizer.options.fontdb.faces().next().unwrap();
        assert_eq!(face.families[0].0, FONT_FAMILY);
    }

    #[test]
    fn text_is_actually_drawn() {
        // If the font did not resolve, usvg would silently drop the text; compare a badge with
        // text against the same badge without.
        let rasterizer = Rasterizer::new();
        let colour = Rgb::new(0x9f, 0x9f, 0x9f);
        let with_text = rasterizer
            .render_png(&flat_badge_svg("ab", "cd", colour), Scale::ONE)
            .unwrap();
        let svg = flat_badge_svg("ab", "cd", colour)
            .replace(">ab<", "><")
            .replace(">cd<", "><");
        let without_text = rasterizer.render_png(&svg, Scale::ONE).unwrap();
        let pixels = |png: &[u8]| Pixmap::decode_png(png).unwrap().data().to_vec();
        assert_ne!(pixels(&with_text), pixels(&without_text));
    }

    #[test]
    fn png_has_signature_and_scaled_size() {
        let rasterizer = Rasterizer::new();
        let svg = flat_badge_svg("version", "up-to-date", Rgb::new(0x44, 0xcc, 0x11));
        let css_width = usvg::Tree::from_str(&svg, &usvg::Options::default())
            .unwrap()
            .size()
            .width() as u32;
        for scale in Scale::all() {
            let png = rasterizer.render_png(&svg, scale).unwrap();
            assert!(png.starts_with(PNG_SIGNATURE));
            let pixmap = Pixmap::decode_png(&png).unwrap();
            let factor = u32::from(scale.get());
            assert_eq!(pixmap.width(), css_width * factor);
            assert_eq!(pixmap.height(), 20 * factor);
        }
    }

    #[test]
    fn unparsable_svg_is_an_error_not_a_panic() {
        let error = Rasterizer::new()
            .render_png("<svg", Scale::ONE)
            .unwrap_err();
        assert!(matches!(error, RenderError::Svg(_)));
        assert!(!error.to_string().is_empty());
    }

    #[test]
    fn external_images_are_not_loaded() {
        // A file that certainly exists: the resolver must refuse it anyway.
        let svg = r#"<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"><image href="/proc/self/exe" width="4" height="4"/></svg>"#;
        let tree = usvg::Tree::from_str(svg, &Rasterizer::new().options).unwrap();
        assert!(!tree.root().has_children());
    }
}
