//! Every badge the service can send, rendered once at start-up.
//!
//! There are only `4 kinds × (1 SVG + MAX_SCALE PNGs)` = 20 distinct images, a few dozen KB in
//! all, so rendering them eagerly is cheaper than any lazy scheme: lookups become plain array
//! indexing with no lock, no `Option`, and no way to fail inside a request.
//!
//! Each entry is kept as response parts (`Bytes` body, `ETag` and `Content-Type` header
//! values), so a handler clones pointers and builds nothing.

use std::sync::OnceLock;
use std::time::Instant;

use actix_web::http::header::HeaderValue;
use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::raster::{Rasterizer, RenderError, Scale, MAX_SCALE};
use super::{badge_svg, BadgeKind};
use strum::{EnumCount, VariantArray};

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
}

/// One finished image as response parts: its bytes and its `ETag` and `Content-Type` header
/// values, all cheap to clone.
#[derive(Clone, Debug)]
pub struct RenderedBadge {
    bytes: Bytes,
    etag: HeaderValue,
    content_type: HeaderValue,
    #[cfg(test)]
    format: ImageFormat,
}

/// How much of the SHA-256 goes into an ETag: 128 bits make collisions between our 20 images
/// (or across deploys) practically impossible while keeping the header short.
const ETAG_DIGEST_BYTES: usize = 16;

/// How an entry's bytes are kept: owned and reference-counted, or copied once into memory
/// that lives as long as the process (see [`BadgeCache::global`]).
#[derive(Clone, Copy)]
enum Storage {
    /// For the tests' own, dropped, caches.
    #[cfg(test)]
    Counted,
    Static,
}

impl Storage {
    fn keep(self, bytes: Vec<u8>) -> Bytes {
        match self {
            #[cfg(test)]
            Storage::Counted => Bytes::from(bytes),
            Storage::Static => Bytes::from_static(Box::leak(bytes.into_boxed_slice())),
        }
    }
}

impl RenderedBadge {
    fn new(bytes: Vec<u8>, format: ImageFormat, storage: Storage) -> Self {
        let digest = Sha256::digest(&bytes);
        // Derived from the bytes, so the tag stays the same across restarts and across
        // processes behind a load balancer, and changes exactly when the artwork changes.
        let etag = format!("\"{}\"", hex::encode(&digest[..ETAG_DIGEST_BYTES]));
        let etag = HeaderValue::from_maybe_shared(storage.keep(etag.into_bytes()))
            .expect("a quoted hex digest is a valid header value");
        Self {
            bytes: storage.keep(bytes),
            etag,
            content_type: HeaderValue::from_static(format.content_type()),
            #[cfg(test)]
            format,
        }
    }

    /// The image bytes; clone them to hand them to a response body without copying.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    #[cfg(test)]
    /// A strong ETag, already quoted as the `ETag` header wants (e.g. `"3f2a…"`).
    pub fn etag(&self) -> &str {
        self.etag.to_str().expect("ETags are ASCII")
    }

    /// The `ETag` header value.
    pub fn etag_header(&self) -> &HeaderValue {
        &self.etag
    }

    #[cfg(test)]
    /// The image's format.
    pub fn format(&self) -> ImageFormat {
        self.format
    }

    #[cfg(test)]
    /// The `Content-Type` header value for these bytes.
    pub fn content_type(&self) -> &'static str {
        self.format.content_type()
    }

    /// The `Content-Type` header value, ready to send.
    pub fn content_type_header(&self) -> &HeaderValue {
        &self.content_type
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
    #[cfg(test)]
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

    /// The process-wide cache the check routes serve from, rendered on first use (call that
    /// first use off the async workers; start-up does). Its bytes live as long as the
    /// process, so every response shares them as static `Bytes`: cloning is a pointer copy
    /// with no reference count for the workers to contend on.
    ///
    /// # Panics
    /// If a badge cannot be rendered: a bug in the artwork, found at start-up.
    pub fn global() -> &'static BadgeCache {
        static GLOBAL: OnceLock<BadgeCache> = OnceLock::new();
        GLOBAL.get_or_init(|| {
            Self::render(&Rasterizer::new(), Storage::Static).expect("badges render")
        })
    }

    #[cfg(test)]
    /// As [`BadgeCache::new`], reusing an existing [`Rasterizer`].
    ///
    /// # Errors
    /// As [`BadgeCache::new`].
    pub fn with_rasterizer(rasterizer: &Rasterizer) -> Result<Self, RenderError> {
        Self::render(rasterizer, Storage::Counted)
    }

    fn render(rasterizer: &Rasterizer, storage: Storage) -> Result<Self, RenderError> {
        let started = Instant::now();
        let mut entries = Vec::with_capacity(BadgeKind::COUNT * SLOTS_PER_KIND);
        for &kind in BadgeKind::VARIANTS {
            let svg = badge_svg(kind);
            let mut pngs = Vec::with_capacity(usize::from(MAX_SCALE));
            for scale in Scale::all() {
                pngs.push(RenderedBadge::new(
                    rasterizer.render_png(&svg, scale)?,
                    ImageFormat::Png,
                    storage,
                ));
            }
            entries.push(RenderedBadge::new(
                svg.into_bytes(),
                ImageFormat::Svg,
                storage,
            ));
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

    #[cfg(test)]
    /// The SVG for `kind`.
    pub fn svg(&self, kind: BadgeKind) -> &RenderedBadge {
        self.get(kind, ImageFormat::Svg, Scale::ONE)
    }

    #[cfg(test)]
    /// The PNG for `kind` at `scale`.
    pub fn png(&self, kind: BadgeKind, scale: Scale) -> &RenderedBadge {
        self.get(kind, ImageFormat::Png, scale)
    }

    /// Index into `entries`. Always in bounds: `Scale` is 1..=MAX_SCALE by construction and
    /// `BadgeKind::VARIANTS` lists every kind.
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
        BadgeKind::VARIANTS.iter().copied().flat_map(|kind| {
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
        for &kind in BadgeKind::VARIANTS {
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
        assert_eq!(etags.len(), BadgeKind::COUNT * SLOTS_PER_KIND);
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
        for &kind in BadgeKind::VARIANTS {
            let first = CACHE.png(kind, Scale::TWO);
            let second = CACHE.png(kind, Scale::TWO);
            assert_eq!(first.bytes().as_ptr(), second.bytes().as_ptr());
            assert_eq!(first.etag(), second.etag());
        }
        // SVG ignores the scale.
        let svg_one = CACHE.get(BadgeKind::Unknown, ImageFormat::Svg, Scale::ONE);
        let svg_four = CACHE.get(
            BadgeKind::Unknown,
            ImageFormat::Svg,
            Scale::new(MAX_SCALE).unwrap(),
        );
        assert_eq!(svg_one.bytes().as_ptr(), svg_four.bytes().as_ptr());
    }

    #[test]
    fn rendering_is_deterministic() {
        // ETags must agree between processes behind one load balancer.
        let again = BadgeCache::new().unwrap();
        for &kind in BadgeKind::VARIANTS {
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
}
