//! SAML 2.0 metadata (an `md:EntityDescriptor`): its signing certificates, validity and entityID.
//! Certificates are pinned by SHA-256 fingerprint; the metadata signature (XML-DSig) is not
//! checked here, so the transport (https) and the overlap rule carry the trust.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use fedkey_core::clock::Timestamp;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

use crate::limits::Limits;
use crate::material::SigningKey;

use super::duration::parse_iso8601_duration;
use super::{ParseError, check_size, der, loggable};

const MD_NS: &str = "urn:oasis:names:tc:SAML:2.0:metadata";
const DS_NS: &str = "http://www.w3.org/2000/09/xmldsig#";

/// Role descriptors may carry their own validUntil/cacheDuration; the strictest one wins.
const ROLE_DESCRIPTORS: [&str; 6] = [
    "RoleDescriptor",
    "IDPSSODescriptor",
    "SPSSODescriptor",
    "AuthnAuthorityDescriptor",
    "AttributeAuthorityDescriptor",
    "PDPDescriptor",
];

/// Longest accepted base64 text of one certificate.
const MAX_CERT_TEXT: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SamlMetadata {
    pub entity_id: String,
    pub keys: Vec<SigningKey>,
    pub valid_until: Option<Timestamp>,
    pub cache_duration: Option<Duration>,
}

/// Parses SAML metadata. Rejects any DOCTYPE (before parsing), non-UTF-8 input, aggregates
/// (`EntitiesDescriptor`), expired `validUntil`, and metadata with neither `validUntil` nor
/// `cacheDuration` (the lifecycle doc makes one of them mandatory).
pub fn parse_saml_metadata(bytes: &[u8], now: Timestamp, limits: &Limits) -> Result<SamlMetadata, ParseError> {
    check_size(bytes, limits)?;
    if contains_doctype(bytes) {
        return Err(ParseError::DocType);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| ParseError::NotUtf8)?;
    let mut reader = NsReader::from_str(text);

    let mut depth = 0usize;
    let mut entity_id: Option<String> = None;
    let mut valid_until: Option<Timestamp> = None;
    let mut cache_duration: Option<Duration> = None;
    let mut keys: Vec<SigningKey> = Vec::new();
    let mut cert_index = 0usize;
    // Depth of the signing KeyDescriptor we are inside, if any.
    let mut signing_kd: Option<usize> = None;
    // Base64 text of the certificate being read.
    let mut cert_text: Option<String> = None;

    loop {
        let (ns, event) = reader.read_resolved_event().map_err(|e| ParseError::Xml(loggable(&e.to_string())))?;
        let in_ns = |want: &str| matches!(&ns, ResolveResult::Bound(n) if n.as_ref() == want);
        match event {
            Event::DocType(_) => return Err(ParseError::DocType),
            Event::Start(ref e) | Event::Empty(ref e) => {
                let is_start = matches!(event, Event::Start(_));
                let element_depth = depth + 1;
                if element_depth > limits.max_depth {
                    return Err(ParseError::TooDeep { limit: limits.max_depth });
                }
                if cert_text.is_some() {
                    return Err(ParseError::BadCertificate {
                        index: cert_index,
                        reason: "element inside the certificate".into(),
                    });
                }
                let local = e.local_name();
                let local = local.as_ref();
                if element_depth == 1 {
                    if !(in_ns(MD_NS) && local == "EntityDescriptor") {
                        return Err(ParseError::UnexpectedRoot { found: truncate(e.name().as_ref()) });
                    }
                    let id = attr(e, "entityID")?.filter(|s| !s.is_empty());
                    entity_id = Some(id.ok_or(ParseError::MissingField("entityID"))?);
                    read_validity(e, &mut valid_until, &mut cache_duration)?;
                } else if in_ns(MD_NS) && ROLE_DESCRIPTORS.contains(&local) {
                    read_validity(e, &mut valid_until, &mut cache_duration)?;
                } else if in_ns(MD_NS) && local == "KeyDescriptor" && is_start && signing_kd.is_none() {
                    let usage = attr(e, "use")?;
                    if usage.as_deref().is_none_or(|u| u == "signing") {
                        signing_kd = Some(element_depth);
                    }
                } else if in_ns(DS_NS) && local == "X509Certificate" && signing_kd.is_some() {
                    if is_start {
                        cert_text = Some(String::new());
                    } else {
                        // An empty <ds:X509Certificate/> cannot be a certificate.
                        return Err(ParseError::BadCertificate { index: cert_index, reason: "empty".into() });
                    }
                }
                if is_start {
                    depth = element_depth;
                }
            }
            Event::Text(t) => append_cert_text(&mut cert_text, &t, cert_index)?,
            Event::CData(t) => append_cert_text(&mut cert_text, &t, cert_index)?,
            Event::GeneralRef(r) => {
                if let Some(buf) = cert_text.as_mut() {
                    // Only character references (e.g. `&#13;`) can appear in base64 text.
                    match r.resolve_char_ref() {
                        Ok(Some(c)) if c.is_ascii_whitespace() => buf.push(c),
                        _ => {
                            return Err(ParseError::BadCertificate { index: cert_index, reason: "not base64".into() });
                        }
                    }
                }
            }
            Event::End(_) => {
                if let Some(b64) = cert_text.take() {
                    let key = certificate_key(&b64, cert_index)?;
                    cert_index += 1;
                    if !keys.iter().any(|k| k.fingerprint == key.fingerprint) {
                        if keys.len() >= limits.max_keys {
                            return Err(ParseError::TooManyKeys { limit: limits.max_keys });
                        }
                        keys.push(key);
                    }
                }
                if signing_kd == Some(depth) {
                    signing_kd = None;
                }
                depth = depth.saturating_sub(1);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    let entity_id = entity_id.ok_or(ParseError::Xml("no root element".into()))?;
    if depth != 0 {
        return Err(ParseError::Xml("document ends inside an element".into()));
    }
    if let Some(until) = valid_until
        && until <= now
    {
        return Err(ParseError::Expired { valid_until: until.to_rfc3339() });
    }
    if valid_until.is_none() && cache_duration.is_none() {
        return Err(ParseError::MissingValidity);
    }
    if keys.is_empty() {
        return Err(ParseError::NoSigningKeys);
    }
    Ok(SamlMetadata { entity_id, keys, valid_until, cache_duration })
}

/// Case-insensitive search for `<!DOCTYPE` anywhere, comments included: entity tricks
/// (billion laughs, external entities) start there, and metadata never needs one.
fn contains_doctype(bytes: &[u8]) -> bool {
    const NEEDLE: &[u8] = b"<!doctype";
    bytes.windows(NEEDLE.len()).any(|w| w.eq_ignore_ascii_case(NEEDLE))
}

/// A name from the document, for an error: short, without control characters.
fn truncate(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(64).collect()
}

fn attr(e: &BytesStart<'_>, name: &str) -> Result<Option<String>, ParseError> {
    for a in e.attributes() {
        let a = a.map_err(|err| ParseError::Xml(loggable(&err.to_string())))?;
        if a.key.as_ref() == name {
            let v = a
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map_err(|err| ParseError::Xml(loggable(&err.to_string())))?;
            return Ok(Some(v.trim().to_owned()));
        }
    }
    Ok(None)
}

fn read_validity(
    e: &BytesStart<'_>,
    valid_until: &mut Option<Timestamp>,
    cache_duration: &mut Option<Duration>,
) -> Result<(), ParseError> {
    if let Some(v) = attr(e, "validUntil")? {
        // SAML times are UTC; some IdPs leave out the `Z`.
        let t = Timestamp::parse_rfc3339(&v)
            .or_else(|| Timestamp::parse_rfc3339(&format!("{v}Z")))
            .ok_or(ParseError::Invalid { field: "validUntil", reason: "not an xs:dateTime".into() })?;
        *valid_until = Some(valid_until.map_or(t, |cur| cur.min(t)));
    }
    if let Some(v) = attr(e, "cacheDuration")? {
        let d = parse_iso8601_duration(&v)
            .ok_or(ParseError::Invalid { field: "cacheDuration", reason: "not an ISO 8601 duration".into() })?;
        *cache_duration = Some(cache_duration.map_or(d, |cur| cur.min(d)));
    }
    Ok(())
}

fn append_cert_text(buf: &mut Option<String>, text: &str, index: usize) -> Result<(), ParseError> {
    if let Some(buf) = buf.as_mut() {
        if buf.len() + text.len() > MAX_CERT_TEXT {
            return Err(ParseError::BadCertificate { index, reason: "too long".into() });
        }
        buf.push_str(text);
    }
    Ok(())
}

fn certificate_key(b64: &str, index: usize) -> Result<SigningKey, ParseError> {
    let compact: String = b64.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let der = STANDARD
        .decode(compact.as_bytes())
        .map_err(|_| ParseError::BadCertificate { index, reason: "not base64".into() })?;
    der::check_certificate(&der).map_err(|reason| ParseError::BadCertificate { index, reason: reason.into() })?;
    Ok(SigningKey { kid: None, alg: None, fingerprint: hex::encode(fedkey_crypto::sha256(&der)), jwk: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp(1_800_000_000_000_000);
    // A structurally valid DER: SEQUENCE { SEQUENCE { NULL } }.
    const FAKE_DER_B64: &str = "MAQwAgUA";

    fn doc(attrs: &str, body: &str) -> String {
        format!(
            r#"<?xml version="1.0"?>
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="https://idp.test/saml" {attrs}>
  <md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">{body}</md:IDPSSODescriptor>
</md:EntityDescriptor>"#
        )
    }

    fn kd(usage: &str, b64: &str) -> String {
        format!(
            r#"<md:KeyDescriptor {usage}><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{b64}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"#
        )
    }

    #[test]
    fn reads_signing_keys_validity_and_entity_id() {
        let body = format!("{}{}", kd(r#"use="signing""#, FAKE_DER_B64), kd(r#"use="encryption""#, "MAUwAwUBAA=="));
        let m = parse_saml_metadata(doc(r#"cacheDuration="PT6H""#, &body).as_bytes(), NOW, &Limits::default()).unwrap();
        assert_eq!(m.entity_id, "https://idp.test/saml");
        assert_eq!(m.cache_duration, Some(Duration::from_secs(6 * 3600)));
        assert_eq!(m.valid_until, None);
        assert_eq!(m.keys.len(), 1);
        assert_eq!(m.keys[0].fingerprint, hex::encode(fedkey_crypto::sha256(&[0x30, 4, 0x30, 2, 5, 0])));
    }

    #[test]
    fn keys_without_use_count_as_signing_and_validity_is_the_strictest() {
        let body = format!("{}\n{}", kd("", FAKE_DER_B64), kd(r#"use="signing""#, "MAUwAwUBAA=="));
        let text = doc(r#"validUntil="2027-01-20T00:00:00Z""#, &body)
            .replace("<md:IDPSSODescriptor ", r#"<md:IDPSSODescriptor validUntil="2027-01-19T00:00:00Z" "#);
        let m = parse_saml_metadata(text.as_bytes(), NOW, &Limits::default()).unwrap();
        assert_eq!(m.keys.len(), 2);
        assert_eq!(m.valid_until, Timestamp::parse_rfc3339("2027-01-19T00:00:00Z"));
    }

    #[test]
    fn rejects_doctype_expiry_missing_validity_and_bad_certs() {
        let l = Limits::default();
        let good = kd(r#"use="signing""#, FAKE_DER_B64);
        let with_doctype = format!("<!DOCTYPE x [<!ENTITY a \"b\">]>{}", doc(r#"cacheDuration="PT1H""#, &good));
        assert_eq!(parse_saml_metadata(with_doctype.as_bytes(), NOW, &l), Err(ParseError::DocType));
        let expired = doc(r#"validUntil="2020-01-01T00:00:00Z""#, &good);
        assert!(matches!(parse_saml_metadata(expired.as_bytes(), NOW, &l), Err(ParseError::Expired { .. })));
        assert_eq!(parse_saml_metadata(doc("", &good).as_bytes(), NOW, &l), Err(ParseError::MissingValidity));
        let bad_b64 = doc(r#"cacheDuration="PT1H""#, &kd("", "!!!notbase64"));
        assert!(matches!(parse_saml_metadata(bad_b64.as_bytes(), NOW, &l), Err(ParseError::BadCertificate { .. })));
        let not_der = doc(r#"cacheDuration="PT1H""#, &kd("", "aGVsbG8gd29ybGQ="));
        assert!(matches!(parse_saml_metadata(not_der.as_bytes(), NOW, &l), Err(ParseError::BadCertificate { .. })));
        let no_keys = doc(r#"cacheDuration="PT1H""#, "");
        assert_eq!(parse_saml_metadata(no_keys.as_bytes(), NOW, &l), Err(ParseError::NoSigningKeys));
    }

    #[test]
    fn valid_until_without_zone_is_utc_and_garbage_is_rejected() {
        let good = kd("", FAKE_DER_B64);
        let m =
            parse_saml_metadata(doc(r#"validUntil="2027-01-19T00:00:00""#, &good).as_bytes(), NOW, &Limits::default())
                .unwrap();
        assert_eq!(m.valid_until, Timestamp::parse_rfc3339("2027-01-19T00:00:00Z"));
        let bad = doc(r#"validUntil="next tuesday""#, &good);
        assert!(matches!(
            parse_saml_metadata(bad.as_bytes(), NOW, &Limits::default()),
            Err(ParseError::Invalid { field: "validUntil", .. })
        ));
    }

    #[test]
    fn rejects_wrong_root_and_deep_nesting() {
        let l = Limits { max_depth: 8, ..Limits::default() };
        let agg = r#"<md:EntitiesDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata"/>"#;
        assert!(matches!(parse_saml_metadata(agg.as_bytes(), NOW, &l), Err(ParseError::UnexpectedRoot { .. })));
        let deep = format!(
            r#"<md:EntityDescriptor xmlns:md="{MD_NS}" entityID="x" cacheDuration="PT1H">{}{}</md:EntityDescriptor>"#,
            "<a>".repeat(20),
            "</a>".repeat(20)
        );
        assert_eq!(parse_saml_metadata(deep.as_bytes(), NOW, &l), Err(ParseError::TooDeep { limit: 8 }));
        assert!(matches!(
            parse_saml_metadata(b"<a><b></a>", NOW, &l),
            Err(ParseError::UnexpectedRoot { .. } | ParseError::Xml(_))
        ));
        assert_eq!(parse_saml_metadata(&[0xff, 0xfe, 0x3c], NOW, &l), Err(ParseError::NotUtf8));
    }

    /// Found by the `saml` fuzz harness: quick-xml quotes the document in its errors (here
    /// a 1,000-byte end tag with line breaks), and the error reaches logs and the API.
    #[test]
    fn xml_errors_do_not_carry_document_text() {
        let tag = "b\n".repeat(500);
        let bad = format!(r#"<md:EntityDescriptor xmlns:md="{MD_NS}" entityID="x" cacheDuration="PT1H"><a></{tag}>"#);
        let e = parse_saml_metadata(bad.as_bytes(), NOW, &Limits::default()).unwrap_err();
        assert!(matches!(e, ParseError::Xml(_)), "{e:?}");
        let msg = e.to_string();
        assert!(msg.len() <= 256, "{} bytes: {msg}", msg.len());
        assert!(!msg.chars().any(char::is_control), "{msg:?}");
    }

    /// Found by the `saml` fuzz harness: the root element's name went into the error with
    /// its control characters.
    #[test]
    fn unexpected_root_names_are_printable() {
        let e = parse_saml_metadata(b"<\x1b[2J\x1fa/>", NOW, &Limits::default()).unwrap_err();
        assert!(matches!(e, ParseError::UnexpectedRoot { .. }), "{e:?}");
        assert!(!e.to_string().chars().any(char::is_control), "{e}");
    }
}
