//! Warnings: complete, one-line messages about something that was ignored
//! or repaired on the way to an answer (a damaged state file reset, a
//! malformed setting replaced by its default). Collected while the work
//! runs, shown once by whoever presents the answer, and serialised as a list
//! of strings in JSON documents.

use serde::Serialize;

/// The warnings gathered so far, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Warnings(Vec<String>);

impl Warnings {
    pub const fn new() -> Self {
        Warnings(Vec::new())
    }

    /// Adds one warning. A line break inside it becomes a space: each
    /// warning stays one line on a terminal and in a log.
    pub fn push(&mut self, line: impl Into<String>) {
        let mut line = line.into();
        if line.contains(['\n', '\r']) {
            line = line.replace(['\n', '\r'], " ");
        }
        self.0.push(line);
    }

    /// Prints each warning to stderr.
    pub fn emit(&self) {
        for line in &self.0 {
            eprintln!("{line}");
        }
    }

    /// The lines, for callers that show them differently.
    pub fn into_lines(self) -> Vec<String> {
        self.0
    }
}

impl std::ops::Deref for Warnings {
    type Target = [String];
    fn deref(&self) -> &[String] {
        &self.0
    }
}

impl Extend<String> for Warnings {
    fn extend<I: IntoIterator<Item = String>>(&mut self, lines: I) {
        for line in lines {
            self.push(line);
        }
    }
}

impl From<Vec<String>> for Warnings {
    fn from(lines: Vec<String>) -> Self {
        let mut w = Warnings::new();
        w.extend(lines);
        w
    }
}

impl IntoIterator for Warnings {
    type Item = String;
    type IntoIter = std::vec::IntoIter<String>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a Warnings {
    type Item = &'a String;
    type IntoIter = std::slice::Iter<'a, String>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_warning_is_one_line() {
        let mut w = Warnings::new();
        w.push("a\nb");
        w.extend(Some("c\r\nd".to_string()));
        assert_eq!(&*w, ["a b", "c  d"]);
        assert_eq!(serde_json::to_string(&w).unwrap(), r#"["a b","c  d"]"#);
    }
}
