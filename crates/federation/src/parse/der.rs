//! Just enough DER to tell a certificate from arbitrary bytes: an outer SEQUENCE whose length
//! matches the input exactly and whose first element (tbsCertificate) is itself a SEQUENCE.
//! Signatures in SAML metadata are pinned by fingerprint, not chained, so nothing more is read.

const SEQUENCE: u8 = 0x30;

/// Returns (header length, content length) of the TLV at the start of `bytes`.
fn tlv(bytes: &[u8]) -> Option<(usize, usize)> {
    let first_len = *bytes.get(1)?;
    if first_len < 0x80 {
        return Some((2, usize::from(first_len)));
    }
    let n = usize::from(first_len & 0x7f);
    if n == 0 || n > 4 {
        return None;
    }
    let mut len = 0usize;
    for i in 0..n {
        len = (len << 8) | usize::from(*bytes.get(2 + i)?);
    }
    // DER: long form only for lengths that need it.
    if len < 0x80 {
        return None;
    }
    Some((2 + n, len))
}

pub(crate) fn check_certificate(der: &[u8]) -> Result<(), &'static str> {
    if der.first() != Some(&SEQUENCE) {
        return Err("not a DER SEQUENCE");
    }
    let (hdr, len) = tlv(der).ok_or("bad DER length")?;
    if hdr.checked_add(len) != Some(der.len()) {
        return Err("DER length does not match the data");
    }
    let inner = &der[hdr..];
    if inner.first() != Some(&SEQUENCE) {
        return Err("no tbsCertificate");
    }
    let (ihdr, ilen) = tlv(inner).ok_or("bad DER length")?;
    if ihdr.checked_add(ilen).is_none_or(|end| end > inner.len()) {
        return Err("tbsCertificate overruns the data");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_nested_sequences_and_rejects_garbage() {
        assert!(check_certificate(&[0x30, 0x04, 0x30, 0x02, 0x05, 0x00]).is_ok());
        assert!(check_certificate(&[0x30, 0x05, 0x30, 0x02, 0x05, 0x00]).is_err());
        assert!(check_certificate(&[0x04, 0x00]).is_err());
        assert!(check_certificate(&[0x30, 0x81, 0x02, 0x30, 0x00]).is_err()); // non-minimal length
        assert!(check_certificate(&[]).is_err());
        assert!(check_certificate(&[0x30, 0x02, 0x30, 0x7f]).is_err());
    }
}
