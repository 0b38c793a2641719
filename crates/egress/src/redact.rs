//! The one redactor: removes every secret a caller holds from text that came from elsewhere
//! (a peer may echo a key or token back in its error), then clips the text.

/// Peer-provided text is cut to this many characters by default: enough to diagnose, too
/// little to turn an error message into a data channel.
pub const DEFAULT_LIMIT: usize = 200;

pub struct Redactor<'a> {
    secrets: Vec<&'a str>,
    limit: usize,
}

impl Default for Redactor<'_> {
    fn default() -> Self {
        Redactor::new()
    }
}

impl<'a> Redactor<'a> {
    pub fn new() -> Self {
        Redactor { secrets: Vec::new(), limit: DEFAULT_LIMIT }
    }

    /// Keeps at most `chars` characters of a cleaned text.
    pub fn limit(mut self, chars: usize) -> Self {
        self.limit = chars;
        self
    }

    pub fn with(mut self, secret: &'a str) -> Self {
        // Very short values would redact ordinary words; real keys and tokens are long.
        if secret.len() >= 4 {
            self.secrets.push(secret);
        }
        self
    }

    /// Redact first, clip second: clipping first could leave a prefix of a secret behind.
    pub fn clean(&self, text: &str) -> String {
        let mut out = text.trim().to_owned();
        for s in &self.secrets {
            if out.contains(s) {
                out = out.replace(s, "[redacted]");
            }
        }
        truncate(&out, self.limit)
    }
}

/// At most `max_chars` characters, cut on a character boundary, with `…` when cut.
pub fn truncate(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_before_truncating() {
        let key = "fkp_ABCDEFGHIJKLMNOPQRSTUVWXYZ0123";
        let text = format!("{}{key}", "x".repeat(195));
        let cleaned = Redactor::new().with(key).clean(&text);
        assert!(!cleaned.contains("fkp_"), "{cleaned}");
        assert!(cleaned.ends_with('…'));
        let s = Redactor::new().with("fk_secret_key").with("ab").limit(512);
        assert_eq!(s.clean("bad token fk_secret_key here, ab"), "bad token [redacted] here, ab");
        assert_eq!(s.clean(&"x".repeat(2000)).chars().count(), 513);
    }

    #[test]
    fn truncates_on_char_boundaries() {
        let s = "é".repeat(300);
        assert_eq!(truncate(&s, DEFAULT_LIMIT).chars().count(), DEFAULT_LIMIT + 1);
        assert_eq!(truncate("short", 10), "short");
    }
}
