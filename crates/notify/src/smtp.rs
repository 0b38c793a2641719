//! Email over SMTP. SMTP is not HTTP, so it does not go through the egress client, but it
//! follows the same address policy: the server's name is resolved here, each address is
//! judged by the egress deny list (`egress.allow_cidrs` opens ranges; loopback only when
//! the configured host is loopback), and the connection goes to an address that passed,
//! with the certificate checked against the configured name. STARTTLS is required unless
//! the server is on loopback or plain SMTP is explicitly allowed.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use fedkey_core::Timestamp;
use fedkey_crypto::Secret;
use fedkey_egress::Policy;
use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::channel::SendError;
use crate::event::Event;

/// One SMTP conversation's timeout (per command).
const SMTP_TIMEOUT: Duration = Duration::from_secs(15);

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS; refused when the server does not offer it.
    StartTls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Tls,
    /// No TLS: only to a loopback server, or with `smtp_allow_plain`.
    None,
}

impl SmtpSecurity {
    pub fn parse(s: &str) -> Result<SmtpSecurity, String> {
        match s {
            "starttls" => Ok(SmtpSecurity::StartTls),
            "tls" => Ok(SmtpSecurity::Tls),
            "none" => Ok(SmtpSecurity::None),
            other => Err(format!("smtp_security: {other:?} is not one of starttls, tls, none")),
        }
    }
}

/// The email channel's settings.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    /// Lab opt-in: plain SMTP to a server that is not on loopback.
    pub allow_plain: bool,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub from: String,
    pub to: Vec<String>,
}

/// A checked email channel.
pub struct Mailer {
    cfg: SmtpConfig,
    from: Mailbox,
    to: Vec<Mailbox>,
    policy: Policy,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer").field("host", &self.cfg.host).field("port", &self.cfg.port).finish_non_exhaustive()
    }
}

/// Whether `host` names loopback: `localhost`, `127.0.0.0/8` or `::1`.
pub fn is_loopback(host: &str) -> bool {
    let h = host.trim_end_matches('.');
    h.eq_ignore_ascii_case("localhost") || h.trim_matches(['[', ']']).parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Refuses plain SMTP to a server that is not on loopback unless explicitly allowed.
pub fn check_security(host: &str, security: SmtpSecurity, allow_plain: bool) -> Result<(), String> {
    if security == SmtpSecurity::None && !allow_plain && !is_loopback(host) {
        return Err(format!(
            "smtp_security = \"none\" sends mail (and the SMTP password) in the clear to {host}: use starttls or tls, \
             or set smtp_allow_plain = true for a lab"
        ));
    }
    Ok(())
}

impl Mailer {
    pub fn new(cfg: SmtpConfig, policy: Policy) -> Result<Mailer, String> {
        if cfg.host.trim().is_empty() {
            return Err("smtp_host is empty".into());
        }
        check_security(&cfg.host, cfg.security, cfg.allow_plain)?;
        let from: Mailbox = cfg.from.parse().map_err(|e| format!("smtp_from: {e}"))?;
        if cfg.to.is_empty() {
            return Err("smtp_to names no recipient".into());
        }
        let to = cfg
            .to
            .iter()
            .map(|t| t.parse::<Mailbox>().map_err(|e| format!("smtp_to {t:?}: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        if cfg.username.is_some() != cfg.password.is_some() {
            return Err("smtp_username and smtp_password_file go together".into());
        }
        if let Some(ip) = literal_ip(&cfg.host) {
            policy.check_ip(ip, ip.is_loopback()).map_err(|d| {
                format!("smtp_host {ip} is a {} address; add its range to egress.allow_cidrs", d.as_str())
            })?;
        }
        Ok(Mailer { cfg, from, to, policy })
    }

    /// The message for `event`: a one-line subject, the summary and the details as text.
    pub fn message(&self, event: &Event, now: Timestamp) -> Result<Message, String> {
        let mut b = Message::builder()
            .from(self.from.clone())
            .subject(format!("[fedkey] {}: {}", event.kind.as_str(), one_line(&event.summary)))
            .header(ContentType::TEXT_PLAIN);
        for t in &self.to {
            b = b.to(t.clone());
        }
        let details = serde_json::to_string_pretty(&event.details).unwrap_or_default();
        let body =
            format!("{}\n\nevent: {}\nat: {}\n\n{}\n", event.summary, event.kind.as_str(), now.to_rfc3339(), details);
        b.body(body).map_err(|e| e.to_string())
    }

    pub async fn send(&self, event: &Event, now: Timestamp) -> Result<(), SendError> {
        let permanent = |message: String| SendError { message, retryable: false };
        let msg = self.message(event, now).map_err(permanent)?;
        let addr = self.resolve().await?;
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(addr.ip().to_string())
            .port(addr.port())
            .timeout(Some(SMTP_TIMEOUT));
        let host = self.cfg.host.trim_matches(['[', ']']).to_owned();
        let tls = || TlsParameters::new(host.clone()).map_err(|e| permanent(format!("TLS setup: {e}")));
        b = match self.cfg.security {
            SmtpSecurity::StartTls => b.tls(Tls::Required(tls()?)),
            SmtpSecurity::Tls => b.tls(Tls::Wrapper(tls()?)),
            SmtpSecurity::None => b.tls(Tls::None),
        };
        if let (Some(user), Some(pass)) = (&self.cfg.username, &self.cfg.password) {
            b = b.credentials(Credentials::new(user.clone(), pass.expose().to_owned()));
        }
        match b.build().send(msg).await {
            Ok(r) if r.is_positive() => Ok(()),
            Ok(r) => Err(SendError { message: format!("the SMTP server answered {}", r.code()), retryable: true }),
            Err(e) => Err(SendError { message: format!("SMTP: {e}"), retryable: !e.is_permanent() }),
        }
    }

    /// The first address of the server that the egress policy allows.
    async fn resolve(&self) -> Result<SocketAddr, SendError> {
        let refused = |message: String| SendError { message, retryable: false };
        if let Some(ip) = literal_ip(&self.cfg.host) {
            self.policy
                .check_ip(ip, ip.is_loopback())
                .map_err(|d| refused(format!("smtp_host {ip} is a {} address", d.as_str())))?;
            return Ok(SocketAddr::new(ip, self.cfg.port));
        }
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((self.cfg.host.as_str(), self.cfg.port))
            .await
            .map_err(|e| SendError { message: format!("cannot resolve {}: {e}", self.cfg.host), retryable: true })?
            .collect();
        let kept = self.policy.filter_resolved(&self.cfg.host, addrs).map_err(|r| refused(r.0))?;
        kept.first()
            .copied()
            .ok_or_else(|| SendError { message: format!("{} has no address", self.cfg.host), retryable: true })
    }
}

fn literal_ip(host: &str) -> Option<IpAddr> {
    host.trim_matches(['[', ']']).parse().ok()
}

/// A subject line: no line breaks (header injection), at most 150 characters.
fn one_line(s: &str) -> String {
    let flat: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    flat.chars().take(150).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventKind;

    fn cfg(host: &str, security: SmtpSecurity, allow_plain: bool) -> SmtpConfig {
        SmtpConfig {
            host: host.into(),
            port: 25,
            security,
            allow_plain,
            username: None,
            password: None,
            from: "fedkey <fedkey@example.org>".into(),
            to: vec!["ops@example.org".into()],
        }
    }

    #[test]
    fn starttls_is_required_off_loopback() {
        let policy = Policy::deny_list(Vec::new());
        let e = Mailer::new(cfg("mail.example.org", SmtpSecurity::None, false), policy.clone()).unwrap_err();
        assert!(e.contains("in the clear") && e.contains("smtp_allow_plain"), "{e}");
        for host in ["127.0.0.1", "localhost", "::1", "[::1]"] {
            assert!(Mailer::new(cfg(host, SmtpSecurity::None, false), policy.clone()).is_ok(), "{host}");
        }
        assert!(Mailer::new(cfg("mail.example.org", SmtpSecurity::None, true), policy.clone()).is_ok());
        assert!(Mailer::new(cfg("mail.example.org", SmtpSecurity::StartTls, false), policy.clone()).is_ok());
        assert!(Mailer::new(cfg("mail.example.org", SmtpSecurity::Tls, false), policy).is_ok());
    }

    #[test]
    fn denied_addresses_and_bad_mailboxes_are_refused() {
        let policy = Policy::deny_list(Vec::new());
        let e = Mailer::new(cfg("10.1.2.3", SmtpSecurity::StartTls, false), policy.clone()).unwrap_err();
        assert!(e.contains("allow_cidrs"), "{e}");
        let mut c = cfg("mail.example.org", SmtpSecurity::StartTls, false);
        c.to = vec!["not an address".into()];
        assert!(Mailer::new(c, policy.clone()).unwrap_err().contains("smtp_to"));
        let mut c = cfg("mail.example.org", SmtpSecurity::StartTls, false);
        c.username = Some("fedkey".into());
        assert!(Mailer::new(c, policy).unwrap_err().contains("smtp_password_file"));
        assert!(SmtpSecurity::parse("ssl").is_err());
    }

    #[test]
    fn the_subject_is_one_line() {
        let m = Mailer::new(cfg("127.0.0.1", SmtpSecurity::None, false), Policy::deny_list(Vec::new())).unwrap();
        let e = Event::new(EventKind::RotationFailed, "k", "bad\r\nBcc: evil@example.org", serde_json::json!({}));
        let text = String::from_utf8(m.message(&e, Timestamp(0)).unwrap().formatted()).unwrap();
        let headers = text.split("\r\n\r\n").next().unwrap();
        assert!(!headers.contains("\r\nBcc:"), "{headers}");
        assert!(headers.contains("Subject: [fedkey] rotation_failed: bad  Bcc"), "{headers}");
    }
}
