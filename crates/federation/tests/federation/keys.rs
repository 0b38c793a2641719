//! Test keys generated with aws-lc-rs, their public JWKs, tokens signed with jsonwebtoken, and
//! self-signed certificates (rcgen) for SAML metadata.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use fedkey_core::clock::Timestamp;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

pub struct TestKey {
    pub kid: String,
    pub alg: Algorithm,
    encoding: EncodingKey,
    pub jwk: Value,
}

fn b64u(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// PKCS#8 PrivateKeyInfo → the PKCS#1 RSAPrivateKey inside its OCTET STRING (what
/// jsonwebtoken's `from_rsa_der` takes). Test-only DER walking over a key we just made.
fn pkcs8_to_pkcs1(der: &[u8]) -> Vec<u8> {
    fn read_tlv(b: &[u8]) -> (u8, usize, usize) {
        let tag = b[0];
        if b[1] < 0x80 {
            return (tag, 2, b[1] as usize);
        }
        let n = (b[1] & 0x7f) as usize;
        let len = b[2..2 + n].iter().fold(0usize, |acc, x| (acc << 8) | *x as usize);
        (tag, 2 + n, len)
    }
    let (_, hdr, _) = read_tlv(der); // outer SEQUENCE
    let mut rest = &der[hdr..];
    let (_, h, l) = read_tlv(rest); // version
    rest = &rest[h + l..];
    let (_, h, l) = read_tlv(rest); // algorithm
    rest = &rest[h + l..];
    let (tag, h, l) = read_tlv(rest); // privateKey OCTET STRING
    assert_eq!(tag, 0x04);
    rest[h..h + l].to_vec()
}

impl TestKey {
    pub fn rsa(kid: &str) -> TestKey {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
        let pkcs8 = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair).unwrap();
        let components = aws_lc_rs::signature::RsaPublicKeyComponents::<Vec<u8>>::from(pair.public_key());
        TestKey {
            kid: kid.into(),
            alg: Algorithm::RS256,
            encoding: EncodingKey::from_rsa_der(&pkcs8_to_pkcs1(pkcs8.as_ref())),
            jwk: json!({"kty":"RSA","kid":kid,"use":"sig","alg":"RS256","n":b64u(&components.n),"e":b64u(&components.e)}),
        }
    }

    pub fn ec(kid: &str) -> TestKey {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let pkcs8 = pair.to_pkcs8v1().unwrap();
        let point = pair.public_key().as_ref().to_vec(); // 0x04 ‖ x ‖ y
        TestKey {
            kid: kid.into(),
            alg: Algorithm::ES256,
            encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk: json!({"kty":"EC","kid":kid,"crv":"P-256","x":b64u(&point[1..33]),"y":b64u(&point[33..65])}),
        }
    }

    pub fn ed(kid: &str) -> TestKey {
        let pair = Ed25519KeyPair::generate().unwrap();
        let pkcs8 = pair.to_pkcs8().unwrap();
        TestKey {
            kid: kid.into(),
            alg: Algorithm::EdDSA,
            encoding: EncodingKey::from_ed_der(pkcs8.as_ref()),
            jwk: json!({"kty":"OKP","kid":kid,"crv":"Ed25519","x":b64u(pair.public_key().as_ref())}),
        }
    }

    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }

    /// Signs with header `typ` set to `typ` (`None`: no `typ`).
    pub fn sign_typed(&self, claims: &Value, typ: Option<&str>) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        header.typ = typ.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }

    pub fn sign_without_kid(&self, claims: &Value) -> String {
        jsonwebtoken::encode(&Header::new(self.alg), claims, &self.encoding).unwrap()
    }
}

pub fn jwks(keys: &[&TestKey]) -> String {
    json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() }).to_string()
}

/// Claims valid at `now` for issuer `iss` and audience `aud`, with a fresh jti.
pub fn claims(iss: &str, aud: &str, now: Timestamp) -> Value {
    let now_s = now.0 / 1_000_000;
    json!({
        "iss": iss,
        "aud": aud,
        "sub": "scim-client",
        "iat": now_s,
        "nbf": now_s,
        "exp": now_s + 300,
        "jti": format!("jti-{}", uuid_like()),
        "scope": "scim:write",
    })
}

fn uuid_like() -> String {
    let mut b = [0u8; 16];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    hex_str(&b)
}

fn hex_str(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// DER of a fresh self-signed certificate.
pub fn certificate() -> Vec<u8> {
    let certified = rcgen::generate_simple_self_signed(vec!["idp.test".to_string()]).unwrap();
    certified.cert.der().to_vec()
}

pub fn cert_fingerprint(der: &[u8]) -> String {
    hex_str(&fedkey_crypto::sha256(der))
}

/// SAML 2.0 metadata for one IdP entity with the given signing certificates (base64 DER, wrapped
/// at 64 columns like most IdPs do), one encryption certificate, and the validity attributes.
pub fn saml_metadata(
    entity_id: &str,
    signing: &[&[u8]],
    valid_until: Option<Timestamp>,
    cache_duration: Option<&str>,
) -> String {
    let mut attrs = String::new();
    if let Some(v) = valid_until {
        attrs.push_str(&format!(r#" validUntil="{}""#, v.to_rfc3339()));
    }
    if let Some(c) = cache_duration {
        attrs.push_str(&format!(r#" cacheDuration="{c}""#));
    }
    let key_descriptor = |usage: &str, der: &[u8]| {
        let b64 = STANDARD.encode(der);
        let wrapped: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
        format!(
            r#"
    <md:KeyDescriptor{usage}>
      <ds:KeyInfo>
        <ds:X509Data>
          <ds:X509Certificate>
{}
          </ds:X509Certificate>
        </ds:X509Data>
      </ds:KeyInfo>
    </md:KeyDescriptor>"#,
            wrapped.join("\n")
        )
    };
    let mut descriptors: String = signing.iter().map(|der| key_descriptor(r#" use="signing""#, der)).collect();
    descriptors.push_str(&key_descriptor(r#" use="encryption""#, &certificate()));
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="{entity_id}"{attrs}>
  <md:IDPSSODescriptor WantAuthnRequestsSigned="false" protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">{descriptors}
    <md:NameIDFormat>urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified</md:NameIDFormat>
    <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.test/sso"/>
  </md:IDPSSODescriptor>
</md:EntityDescriptor>
"#
    )
}
