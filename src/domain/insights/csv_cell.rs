//! CSV cells that a spreadsheet must not run as a formula.
//!
//! A text cell starting with `=`, `+`, `-`, `@` (or a tab / carriage return, which some
//! spreadsheets skip before looking) gets a leading `'`, so a hostname like
//! `=HYPERLINK(…)` is shown as text. Numbers are written by the callers as numbers and never
//! pass through here. (A shared helper for the whole application may replace this one.)

use std::borrow::Cow;

/// The cell text, neutralised when a spreadsheet would read it as a formula.
pub fn neutralise(text: &str) -> Cow<'_, str> {
    match text.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => Cow::Owned(format!("'{text}")),
        _ => Cow::Borrowed(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_neutralised() {
        assert_eq!(neutralise("=1+1"), "'=1+1");
        assert_eq!(neutralise("+1"), "'+1");
        assert_eq!(neutralise("-2"), "'-2");
        assert_eq!(neutralise("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(neutralise("\tx"), "'\tx");
        assert_eq!(neutralise("gitlab.example.com"), "gitlab.example.com");
        assert_eq!(neutralise(""), "");
    }
}
