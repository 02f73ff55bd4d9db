//! Version-check badges: the little "version | up-to-date" image GitLab's admin pages embed.
//!
//! An instance's admin page shows `<img src=".../check.svg?gitlab_info=...">`; whatever we answer
//! is what the admin sees, and an error instead of an image makes the badge silently vanish. So
//! every badge is rendered ahead of time into a [`BadgeCache`] and a request only picks
//! pre-made bytes: no layout, rasterising or allocation on the hot path, and nothing that can
//! fail there.
//!
//! Layout is a shields.io-style flat badge ([`flat_badge_svg`]) with widths measured from the
//! embedded DejaVu Sans ([`text_width`]); PNGs are drawn from that same SVG by resvg
//! ([`Rasterizer`]) at 1x up to [`MAX_SCALE`] for high-DPI screens.
//!
//! This module depends on nothing else in the crate, so it can be built and tested alone.

mod cache;
mod font;
mod raster;
mod svg;

pub(crate) use cache::{BadgeCache, ImageFormat};
pub(crate) use raster::Scale;
pub(crate) use svg::{flat_badge_svg, Rgb};

/// Left-hand text of every version-check badge.
pub const LABEL: &str = "version";

/// The four answers a version check can show.
///
/// The message texts are part of the protocol: third parties scrape them (spec §1.4), so they
/// must stay exactly as GitLab's own service writes them.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, strum::VariantArray, strum::EnumCount,
)]
pub enum BadgeKind {
    /// No stable release is newer than the instance's version (severity `success`).
    UpToDate,
    /// A newer stable release exists, but no security advisory affects the instance
    /// (severity `warning`).
    UpdateAvailable,
    /// The instance is exposed to a security advisory (severity `danger`).
    UpdateAsap,
    /// The version could not be judged (missing or unparsable). Still an image, so the admin
    /// page shows something instead of a broken icon; the spec wants it sent with
    /// `Cache-Control: no-store` (§1.3).
    Unknown,
}

impl BadgeKind {
    /// Right-hand text, exactly as scraped by third parties.
    pub const fn message(self) -> &'static str {
        match self {
            BadgeKind::UpToDate => "up-to-date",
            BadgeKind::UpdateAvailable => "update available",
            BadgeKind::UpdateAsap => "update asap",
            BadgeKind::Unknown => "unknown",
        }
    }

    /// Background of the message section: shields' green, orange, red and grey, so the
    /// meaning reads at a glance like every other status badge.
    pub const fn colour(self) -> Rgb {
        match self {
            BadgeKind::UpToDate => Rgb::new(0x44, 0xcc, 0x11),
            BadgeKind::UpdateAvailable => Rgb::new(0xfe, 0x7d, 0x37),
            BadgeKind::UpdateAsap => Rgb::new(0xe0, 0x5d, 0x44),
            BadgeKind::Unknown => Rgb::new(0x9f, 0x9f, 0x9f),
        }
    }

    /// The severity name used by GitLab's JSON answers and our logs (`badge.severity`).
    pub const fn severity(self) -> &'static str {
        match self {
            BadgeKind::UpToDate => "success",
            BadgeKind::UpdateAvailable => "warning",
            BadgeKind::UpdateAsap => "danger",
            BadgeKind::Unknown => "unknown",
        }
    }

    /// Position in `BadgeKind::VARIANTS` (declaration order), for array-indexed lookups.
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// The SVG of a version-check badge: [`LABEL`] on the left, the kind's message and colour on
/// the right. Prefer [`BadgeCache`] when serving; this builds a fresh string each call.
pub fn badge_svg(kind: BadgeKind) -> String {
    flat_badge_svg(LABEL, kind.message(), kind.colour())
}

#[cfg(test)]
mod tests {
    use super::*;
    use strum::VariantArray;
    use svg::LABEL_COLOUR;

    #[test]
    fn all_matches_index() {
        for (position, kind) in BadgeKind::VARIANTS.iter().enumerate() {
            assert_eq!(kind.index(), position);
        }
    }

    #[test]
    fn messages_are_the_protocol_texts() {
        let messages: Vec<_> = BadgeKind::VARIANTS
            .iter()
            .map(|kind| kind.message())
            .collect();
        assert_eq!(
            messages,
            ["up-to-date", "update available", "update asap", "unknown"]
        );
    }

    #[test]
    fn each_kind_has_its_title_and_colour() {
        for &kind in BadgeKind::VARIANTS {
            let svg = badge_svg(kind);
            let title = format!("<title>version: {}</title>", kind.message());
            assert!(svg.contains(&title), "{svg}");
            assert!(svg.contains(&kind.colour().to_string()));
            assert!(svg.contains(&LABEL_COLOUR.to_string()));
        }
    }

    #[test]
    fn badge_width_follows_message_length() {
        let width = |kind| {
            resvg::usvg::Tree::from_str(&badge_svg(kind), &Default::default())
                .unwrap()
                .size()
                .width()
        };
        assert!(width(BadgeKind::Unknown) < width(BadgeKind::UpToDate));
        assert!(width(BadgeKind::UpToDate) < width(BadgeKind::UpdateAsap));
        assert!(width(BadgeKind::UpdateAsap) < width(BadgeKind::UpdateAvailable));
    }
}
