//! The `[notify]` settings (env `FEDKEY_NOTIFY_*`) and the notifier `serve` builds from
//! them. See docs/notifications.md.

use std::path::PathBuf;
use std::time::Duration;

use fedkey_crypto::Secret;
use fedkey_notify::{Channel, Mailer, NotifyPolicy, SmtpConfig, SmtpSecurity};
use serde::{Deserialize, Serialize};

use crate::config::Settings;

/// Notification settings: what is notified and through which channels (besides the signed
/// `alert_webhook_url`, which is one of them).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifySettings {
    /// Days before a key version expires to notify, each once: a list, or one
    /// comma-separated string (as `FEDKEY_NOTIFY_EXPIRY_LEAD_DAYS` gives it).
    #[serde(deserialize_with = "day_list")]
    pub expiry_lead_days: Vec<u32>,
    /// The same event (what it is about, in the same state) is not sent again within this.
    pub dedupe_window: String,
    /// Notifications per channel and minute (as many at once); 0: no limit.
    pub rate_per_minute: u32,
    /// A rotation still unfinished this long after it started is reported as stalled.
    pub rotation_stall_after: String,
    /// A Slack incoming webhook or a Teams workflow URL (`{"text": …}`). It carries a
    /// token: prefer `chat_webhook_url_file`.
    pub chat_webhook_url: Option<String>,
    pub chat_webhook_url_file: Option<PathBuf>,
    pub smtp_host: Option<String>,
    /// Default: 587 for `starttls`, 465 for `tls`, 25 for `none`.
    pub smtp_port: Option<u16>,
    /// `starttls` (required, the default), `tls` (implicit TLS) or `none`.
    pub smtp_security: String,
    /// Lab opt-in: `smtp_security = "none"` to a server that is not on loopback.
    pub smtp_allow_plain: bool,
    pub smtp_username: Option<String>,
    /// The SMTP password, read from this file (there is no inline setting).
    pub smtp_password_file: Option<PathBuf>,
    pub smtp_from: Option<String>,
    #[serde(deserialize_with = "crate::config::string_list")]
    pub smtp_to: Vec<String>,
}

impl Default for NotifySettings {
    fn default() -> Self {
        NotifySettings {
            expiry_lead_days: vec![14, 7, 1],
            dedupe_window: "6h".into(),
            rate_per_minute: 30,
            rotation_stall_after: "24h".into(),
            chat_webhook_url: None,
            chat_webhook_url_file: None,
            smtp_host: None,
            smtp_port: None,
            smtp_security: "starttls".into(),
            smtp_allow_plain: false,
            smtp_username: None,
            smtp_password_file: None,
            smtp_from: None,
            smtp_to: Vec::new(),
        }
    }
}

/// A list of day counts, or one string of comma-separated ones, or one number.
fn day_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u32>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Days {
        One(u32),
        Text(String),
        Many(Vec<u32>),
    }
    match Days::deserialize(d)? {
        Days::One(n) => Ok(vec![n]),
        Days::Many(v) => Ok(v),
        Days::Text(s) => s
            .split(',')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(|x| x.parse::<u32>().map_err(|_| serde::de::Error::custom(format!("{x:?} is not a number of days"))))
            .collect(),
    }
}

impl NotifySettings {
    /// The policy, checked: lead times between 1 and 365 days, positive durations.
    pub fn policy(&self) -> anyhow::Result<NotifyPolicy> {
        if let Some(d) = self.expiry_lead_days.iter().find(|d| !(1..=365).contains(*d)) {
            anyhow::bail!("notify.expiry_lead_days: {d} is not between 1 and 365");
        }
        let duration = |key: &str, v: &str| {
            humantime::parse_duration(v)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| anyhow::anyhow!("notify.{key}: {v:?} is not a positive duration (e.g. 6h)"))
        };
        Ok(NotifyPolicy {
            expiry_leads: self.expiry_lead_days.iter().map(|d| Duration::from_secs(u64::from(*d) * 86_400)).collect(),
            dedupe_window: duration("dedupe_window", &self.dedupe_window)?,
            rate_per_minute: self.rate_per_minute,
            rotation_stall_after: duration("rotation_stall_after", &self.rotation_stall_after)?,
            ..NotifyPolicy::default()
        })
    }

    /// The email channel's settings, when `smtp_host` is set.
    fn smtp(&self) -> anyhow::Result<Option<SmtpConfig>> {
        let Some(host) = &self.smtp_host else { return Ok(None) };
        let security = SmtpSecurity::parse(&self.smtp_security).map_err(|e| anyhow::anyhow!("notify.{e}"))?;
        let password = match &self.smtp_password_file {
            Some(f) => Some(Secret::new(crate::config::read_secret_file(f, "SMTP password")?)),
            None => None,
        };
        let port = self.smtp_port.unwrap_or(match security {
            SmtpSecurity::StartTls => 587,
            SmtpSecurity::Tls => 465,
            SmtpSecurity::None => 25,
        });
        Ok(Some(SmtpConfig {
            host: host.clone(),
            port,
            security,
            allow_plain: self.smtp_allow_plain,
            username: self.smtp_username.clone(),
            password,
            from: self.smtp_from.clone().ok_or_else(|| anyhow::anyhow!("notify.smtp_host needs notify.smtp_from"))?,
            to: self.smtp_to.clone(),
        }))
    }

    fn chat_url(&self) -> anyhow::Result<Option<String>> {
        match (&self.chat_webhook_url, &self.chat_webhook_url_file) {
            (Some(u), None) => Ok(Some(u.clone())),
            (None, Some(f)) => Ok(Some(crate::config::read_secret_file(f, "chat webhook URL")?)),
            (None, None) => Ok(None),
            (Some(_), Some(_)) => anyhow::bail!("notify: set chat_webhook_url or chat_webhook_url_file, not both"),
        }
    }
}

/// The channels configured in `s`, checked (egress policy, STARTTLS rule, addresses): a
/// bad one stops `serve` at start rather than failing silently later.
pub fn channels(s: &Settings, egress: &fedkey_egress::Egress) -> anyhow::Result<Vec<Channel>> {
    let mut out = Vec::new();
    match (&s.alert_webhook_url, &s.alert_webhook_secret) {
        (Some(u), Some(k)) => {
            let url = egress
                .check_url(u, fedkey_egress::UrlRules::HTTPS_ONLY)
                .map_err(|e| anyhow::anyhow!("alert_webhook_url: {e}"))?;
            out.push(Channel::Webhook { url, secret: Secret::new(k.clone()) });
        }
        (Some(_), None) => anyhow::bail!("alert_webhook_url needs alert_webhook_secret (or _FILE) to sign alerts"),
        (None, _) => {}
    }
    if let Some(u) = s.notify.chat_url()? {
        // The URL's path is its token: the error names the rule, never the URL.
        egress.check_url(&u, fedkey_egress::UrlRules::HTTPS_ONLY).map_err(|_| {
            anyhow::anyhow!(
                "notify.chat_webhook_url is refused by the egress policy: https is required (plain http only to loopback), and no address on the deny list"
            )
        })?;
        out.push(Channel::Chat { url: Secret::new(u) });
    }
    if let Some(cfg) = s.notify.smtp()? {
        let mailer = Mailer::new(cfg, egress.policy().clone()).map_err(|e| anyhow::anyhow!("notify: {e}"))?;
        out.push(Channel::Email(Box::new(mailer)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_settings_parse_and_are_checked() {
        let s = Settings::from_toml("[notify]\nexpiry_lead_days = [30, 3]\ndedupe_window = \"1h\"").unwrap();
        let p = s.notify.policy().unwrap();
        assert_eq!(p.expiry_leads, [Duration::from_secs(30 * 86_400), Duration::from_secs(3 * 86_400)]);
        assert_eq!(p.dedupe_window, Duration::from_secs(3600));
        let s = Settings::from_toml("[notify]\nexpiry_lead_days = \"14, 7,1\"").unwrap();
        assert_eq!(s.notify.expiry_lead_days, [14, 7, 1]);
        let e = Settings::from_toml("[notify]\nexpiry_lead_days = [0]").unwrap().notify.policy().unwrap_err();
        assert!(e.to_string().contains("expiry_lead_days"), "{e}");
        let e = Settings::from_toml("[notify]\nsmtp_hots = \"x\"").unwrap_err().to_string();
        assert!(e.contains("unknown setting"), "{e}");
    }

    #[test]
    fn plain_smtp_off_loopback_is_refused_at_start() {
        let egress = fedkey_egress::Egress::strict().unwrap();
        let s = Settings::from_toml(
            "[notify]\nsmtp_host = \"mail.example.org\"\nsmtp_security = \"none\"\nsmtp_from = \"f@example.org\"\nsmtp_to = \"ops@example.org\"",
        )
        .unwrap();
        let e = channels(&s, &egress).err().unwrap().to_string();
        assert!(e.contains("smtp_allow_plain"), "{e}");
        let s = Settings::from_toml(
            "[notify]\nsmtp_host = \"127.0.0.1\"\nsmtp_security = \"none\"\nsmtp_from = \"f@example.org\"\nsmtp_to = [\"a@example.org\", \"b@example.org\"]",
        )
        .unwrap();
        assert_eq!(channels(&s, &egress).unwrap().len(), 1);
    }

    #[test]
    fn a_refused_chat_url_is_not_shown() {
        let egress = fedkey_egress::Egress::strict().unwrap();
        let s =
            Settings::from_toml("[notify]\nchat_webhook_url = \"http://hooks.example.org/services/T0/B0/SECRETTOKEN\"")
                .unwrap();
        let e = channels(&s, &egress).err().unwrap().to_string();
        assert!(e.contains("https") && !e.contains("SECRETTOKEN"), "{e}");
    }
}
