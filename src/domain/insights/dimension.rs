//! The `by=` dimensions a series can be split by.

use std::str::FromStr;

/// What installations are grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dimension {
    /// Tier from edition and licence.
    Tier,
    /// Edition as sent.
    Edition,
    /// `installation_type`.
    InstallationType,
    /// Sender's country.
    Country,
}

impl Dimension {
    /// The query-string name.
    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Tier => "tier",
            Dimension::Edition => "edition",
            Dimension::InstallationType => "installation_type",
            Dimension::Country => "country",
        }
    }
}

impl FromStr for Dimension {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "tier" => Ok(Dimension::Tier),
            "edition" => Ok(Dimension::Edition),
            "installation_type" => Ok(Dimension::InstallationType),
            "country" => Ok(Dimension::Country),
            other => Err(format!(
                "`by` must be tier, edition, installation_type or country, got `{other}`"
            )),
        }
    }
}

/// The group name shown for a missing value.
pub const UNKNOWN_GROUP: &str = "unknown";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for d in [
            Dimension::Tier,
            Dimension::Edition,
            Dimension::InstallationType,
            Dimension::Country,
        ] {
            assert_eq!(d.as_str().parse::<Dimension>(), Ok(d));
        }
        assert!("colour".parse::<Dimension>().unwrap_err().contains("`by`"));
    }
}
