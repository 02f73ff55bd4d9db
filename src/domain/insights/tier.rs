//! The subscription tier of a submission, from its edition and licence.
//!
//! * `CE`, `EE Free`, or any edition whose `license_expires_at` is before `recorded_at` → Free
//! * `EE`, `EES` → Starter
//! * `EEP` → Premium
//! * `EEU` → Ultimate
//! * no edition, or one not listed → Unknown (shown as its own group, never guessed)

use chrono::{NaiveDate, NaiveDateTime};
use serde::Serialize;
use std::fmt;
use std::str::FromStr;

/// A GitLab subscription tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Tier {
    /// CE, EE without a licence, or an expired licence.
    Free,
    /// EE / EES.
    Starter,
    /// EEP.
    Premium,
    /// EEU.
    Ultimate,
    /// Edition missing or not recognised.
    Unknown,
}

impl Tier {
    /// Every tier, in display order.
    pub const ALL: [Tier; 5] = [
        Tier::Free,
        Tier::Starter,
        Tier::Premium,
        Tier::Ultimate,
        Tier::Unknown,
    ];

    /// Display and stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Free => "Free",
            Tier::Starter => "Starter",
            Tier::Premium => "Premium",
            Tier::Ultimate => "Ultimate",
            Tier::Unknown => "Unknown",
        }
    }

    /// The tier of a submission.
    pub fn of(
        edition: Option<&str>,
        license_expires_at: Option<NaiveDate>,
        recorded_at: NaiveDateTime,
    ) -> Tier {
        let Some(edition) = edition.map(str::trim) else {
            return Tier::Unknown;
        };
        let paid = match edition.to_ascii_uppercase().as_str() {
            "CE" | "EE FREE" => return Tier::Free,
            "EE" | "EES" => Tier::Starter,
            "EEP" => Tier::Premium,
            "EEU" => Tier::Ultimate,
            _ => return Tier::Unknown,
        };
        match license_expires_at {
            Some(expires) if expires < recorded_at.date() => Tier::Free,
            _ => paid,
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Tier {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Tier::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown tier `{s}`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn editions_map_to_tiers() {
        let at = NaiveDate::from_ymd_opt(2026, 3, 10)
            .unwrap()
            .and_hms_opt(12, 0, 0)
            .unwrap();
        let later = Some(NaiveDate::from_ymd_opt(2027, 1, 1).unwrap());
        let earlier = Some(NaiveDate::from_ymd_opt(2026, 3, 9).unwrap());
        let same_day = Some(NaiveDate::from_ymd_opt(2026, 3, 10).unwrap());
        assert_eq!(Tier::of(Some("CE"), None, at), Tier::Free);
        assert_eq!(Tier::of(Some("EE Free"), later, at), Tier::Free);
        assert_eq!(Tier::of(Some("EE"), later, at), Tier::Starter);
        assert_eq!(Tier::of(Some("EES"), None, at), Tier::Starter);
        assert_eq!(Tier::of(Some("EEP"), later, at), Tier::Premium);
        assert_eq!(
            Tier::of(Some("EEU"), same_day, at),
            Tier::Ultimate,
            "expires at the end of the day"
        );
        assert_eq!(
            Tier::of(Some("EEU"), earlier, at),
            Tier::Free,
            "expired licence"
        );
        assert_eq!(Tier::of(Some("EEP"), earlier, at), Tier::Free);
        assert_eq!(Tier::of(None, None, at), Tier::Unknown);
        assert_eq!(Tier::of(Some("XYZ"), None, at), Tier::Unknown);
        assert_eq!("premium".parse::<Tier>(), Ok(Tier::Premium));
    }
}
