//! Bounds applied to every document before and while it is parsed.

/// Input limits for trust-material documents. The defaults suit real IdPs (a large Entra ID
/// JWKS is a few KiB, an aggregate-free SAML metadata document a few tens of KiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted document, in bytes.
    pub max_document_bytes: usize,
    /// Deepest accepted JSON array/object or XML element nesting.
    pub max_depth: usize,
    /// Most signing keys accepted in one document.
    pub max_keys: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_document_bytes: 1024 * 1024, max_depth: 64, max_keys: 100 }
    }
}
