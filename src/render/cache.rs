//! Every badge the service can send, rendered once at start-up.
//!
//! There are only `4 kinds × (1 SVG + MAX_SCALE PNGs)` = 20 distinct images, a few dozen KB in
//! all, so rendering them eagerly is cheaper than any lazy scheme: lookups become plain array
//! indexing with no lock, no `Option`, and no way to fail inside a request.

use std::sync::Arc;
use std::time::Instant;

use sha2::{Digest, Sha256};

use super::raster::{Rasterizer, RenderError, Scale, MAX_SCALE};
use super::{badge_svg, BadgeKind};

/// The two image formats a badge is served in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ImageFormat {
    /// Vector image; the format GitLab's admin page asks for (`check.svg`).
    Svg,
    /// Raster image, for clients that cannot show SVG.
    Png,
}

impl ImageFormat {
    /// The `Content-Type` to send with this format.
    pub const fn content_type(self) -> &'static str {
        match self {
            ImageFormat::Svg => "image/svg+xml",
            ImageFormat::Png => "image/png",
        }
    }

    /// The file extension used in URLs (`check.svg`, `check.png`).
    pub const fn extension(self) -> &'static str {
        match self {
            ImageFormat::Svg => "svg",
            ImageFormat::Png => "png",
        }
    }
}

/// One finished image: its bytes, shared rather than copied, and a validator for conditional
/// requests.
#[derive(Clone, Debug)]
pub struct RenderedBadge {
    bytes: Arc<[u8]>,
    etag: String,
    format: ImageFormat,
}

/// How much of the SHA-256 goes into an ETag: 128 bits make collisions between our 20 images
/// (or across deploys) practically impossible while keeping the header short.
const ETAG_DIGEST_BYTES: usize = 16;

impl RenderedBadge {
    fn new(bytes: Vec<u8>, format: ImageFormat) -> Self {
        let digest = Sha256::digest(&bytes);
        // Derived from the bytes, so the tag stays the same across restarts and across
        // processes behind a load balancer, and changes exactly when the artwork changes.
        let etag = format!("\"{}\"", hex::encode(&digest[..ETAG_DIGEST_BYTES]));
        Self {
            bytes: bytes.into(),
            etag,
            format,
        }
    }

    /// The image bytes. Clone the `Arc` to hand them to a response body without copying.
    pub fn bytes(&self) -> &Arc<[u8]> {
        &self.bytes
    }

    /// A strong ETag, already quoted as the `ETag` header wants (e.g. `"3f2a…"`).
    pub fn etag(&self) -> &str {
        &self.etag
    }

    /// The image's format.
    pub fn format(&self) -> ImageFormat {
        self.format
    }

    /// The `Content-Type` header value for these bytes.
    pub fn content_type(&self) -> &'static str {
        self.format.content_type()
    }
}

/// Images per kind: the SVG, then one PNG per supported scale.
const SLOTS_PER_KIND: usize = 1 + MAX_SCALE as usize;

/// All badges, pre-rendered. Share one instance (e.g. in an `Arc` or actix `web::Data`); reads
/// are lock-free and allocation-free, so any number of workers can serve from it at once.
#[derive(Clone, Debug)]
pub struct BadgeCache {
    /// Laid out as `kind × SLOTS_PER_KIND + slot`, see [`BadgeCache::slot`].
    entries: Box<[RenderedBadge]>,
}

impl BadgeCache {
    /// Renders every kind as SVG and as PNG at every scale up to [`MAX_SCALE`].
    ///
    /// Call once at start-up, before the server accepts requests (or via `web::block`): it is
    /// CPU work, a few milliseconds per PNG and some tens of milliseconds in all, which must
    /// not run on an async worker.
    ///
    /// # Errors
    /// A [`RenderError`] if any badge fails to render: a bug in the artwork, worth refusing to
    /// start over.
    pub fn new() -> Result<Self, RenderError> {
        Self::with_rasterizer(&Rasterizer::new())
    }

    /// As [`BadgeCache::new`], reusing an existing [`Rasterizer`].
    ///
    /// # Errors
    /// As [`BadgeCache::new`].
    pub fn with_rasterizer(rasterizer: &Rasterizer) -> Result<Self, RenderError> {
        let started = Instant::now();
        let mut entries = Vec::with_capacity(BadgeKind::ALL.len() * SLOTS_PER_KIND);
        for kind in BadgeKind::ALL {
            let svg = badge_svg(kind);
            let mut pngs = Vec::with_capacity(usize::from(MAX_SCALE));
            for scale in Scale::all() {
                pngs.push(RenderedBadge::new(
                    rasterizer.render_png(&svg, scale)?,
                    ImageFormat::Png,
                ));
            }
            entries.push(RenderedBadge::new(svg.into_bytes(), ImageFormat::Svg));
            entries.extend(pngs);
        }
        let total_bytes: usize = entries.iter().map(|entry| entry.bytes.len()).sum();
        tracing::debug!(
            badge.images = entries.len(),
            badge.total_bytes = total_bytes,
            badge.render_ms = started.elapsed().as_millis() as u64,
            "badge cache rendered"
        );
        Ok(Self {
            entries: entries.into_boxed_slice(),
        })
    }

    /// The image for `kind` in `format`. `scale` only matters for PNG (an SVG is resolution
    /// independent, so every scale returns the same SVG).
    pub fn get(&self, kind: BadgeKind, format: ImageFormat, scale: Scale) -> &RenderedBadge {
        &self.entries[Self::slot(kind, format, scale)]
    }

    /// The SVG for `kind`.
    pub fn svg(&self, kind: BadgeKind) -> &RenderedBadge {
        self.get(kind, ImageFormat::Svg, Scale::ONE)
    }

    /// The PNG for `kind` at `scale`.
    pub fn png(&self, kind: BadgeKind, scale: Scale) -> &RenderedBadge {
        self.get(kind, ImageFormat::Png, scale)
    }

    /// Index into `entries`. Always in bounds: `Scale` is 1..=MAX_SCALE by construction and
    /// `BadgeKind::ALL` lists every kind.
    fn slot(kind: BadgeKind, format: ImageFormat, scale: Scale) -> usize {
        let within_kind = match format {
            ImageFormat::Svg => 0,
            ImageFormat::Png => usize::from(scale.get()),
        };
        kind.index() * SLOTS_PER_KIND + within_kind
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use resvg::tiny_skia::Pixmap;
    use std::collections::HashSet;
    use std::sync::LazyLock;

    /// Rendering is the slow part of these tests; do it once for all of them.
    static CACHE: LazyLock<BadgeCache> = LazyLock::new(|| BadgeCache::new().unwrap());

    fn all_entries() -> impl Iterator<Item = (BadgeKind, ImageFormat, Scale, &'static RenderedBadge)>
    {
        BadgeKind::ALL.into_iter().flat_map(|kind| {
            std::iter::once((kind, ImageFormat::Svg, Scale::ONE))
                .chain(Scale::all().map(move |scale| (kind, ImageFormat::Png, scale)))
                .map(|(kind, format, scale)| (kind, format, scale, CACHE.get(kind, format, scale)))
        })
    }

    #[test]
    fn every_slot_holds_what_was_asked_for() {
        for (kind, format, scale, badge) in all_entries() {
            assert_eq!(badge.format(), format);
            match format {
                ImageFormat::Svg => {
                    let svg = std::str::from_utf8(badge.bytes()).unwrap();
                    assert!(svg.contains(kind.message()));
                    assert_eq!(badge.content_type(), "image/svg+xml");
                }
                ImageFormat::Png => {
                    assert!(badge.bytes().starts_with(b"\x89PNG\r\n\x1a\n"));
                    assert_eq!(badge.content_type(), "image/png");
                    let pixmap = Pixmap::decode_png(badge.bytes()).unwrap();
                    assert_eq!(pixmap.height(), 20 * u32::from(scale.get()));
                }
            }
        }
    }

    #[test]
    fn png_at_2x_is_twice_the_1x_size() {
        for kind in BadgeKind::ALL {
            let one = Pixmap::decode_png(CACHE.png(kind, Scale::ONE).bytes()).unwrap();
            let two = Pixmap::decode_png(CACHE.png(kind, Scale::TWO).bytes()).unwrap();
            assert_eq!(
                (two.width(), two.height()),
                (one.width() * 2, one.height() * 2)
            );
        }
    }

    #[test]
    fn every_image_has_its_own_etag() {
        let etags: HashSet<&str> = all_entries().map(|(_, _, _, badge)| badge.etag()).collect();
        assert_eq!(etags.len(), BadgeKind::ALL.len() * SLOTS_PER_KIND);
    }

    #[test]
    fn etag_is_a_quoted_strong_hex_tag() {
        let etag = CACHE.svg(BadgeKind::UpToDate).etag();
        assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
        assert!(!etag.starts_with("W/"));
        let hex_part = &etag[1..etag.len() - 1];
        assert_eq!(hex_part.len(), 2 * ETAG_DIGEST_BYTES);
        assert!(hex_part.bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn repeated_lookups_share_the_same_bytes() {
        for kind in BadgeKind::ALL {
            let first = CACHE.png(kind, Scale::TWO);
            let second = CACHE.png(kind, Scale::TWO);
            assert!(Arc::ptr_eq(first.bytes(), second.bytes()));
            assert_eq!(first.etag(), second.etag());
        }
        // SVG ignores the scale.
        let svg_one = CACHE.get(BadgeKind::Unknown, ImageFormat::Svg, Scale::ONE);
        let svg_four = CACHE.get(
            BadgeKind::Unknown,
            ImageFormat::Svg,
            Scale::new(MAX_SCALE).unwrap(),
        );
        assert!(Arc::ptr_eq(svg_one.bytes(), svg_four.bytes()));
    }

    #[test]
    fn rendering_is_deterministic() {
        // ETags must agree between processes behind one load balancer.
        let again = BadgeCache::new().unwrap();
        for kind in BadgeKind::ALL {
            assert_eq!(
                again.png(kind, Scale::TWO).etag(),
                CACHE.png(kind, Scale::TWO).etag()
            );
            assert_eq!(again.svg(kind).bytes(), CACHE.svg(kind).bytes());
        }
    }

    #[test]
    fn cache_is_shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<BadgeCache>();
        assert_send_sync::<Rasterizer>();
    }

    #[test]
    fn formats_name_their_extension() {
        assert_eq!(ImageFormat::Svg.extension(), "svg");
        assert_eq!(ImageFormat::Png.extension(), "png");
    }
}
