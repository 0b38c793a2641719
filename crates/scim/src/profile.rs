//! Compatibility profiles: which departures from RFC 7644 §3.5.2 a PATCH may take.
//!
//! A trust's `peer_kind` selects one (the server maps it). [`Profile::RFC`] (`generic`)
//! applies the RFC as written; the others list, one flag each, the departures that a
//! named identity provider needs because it sends them in its ordinary traffic. A flag
//! exists only for a documented client behaviour (docs/scim.md, "Compatibility
//! profiles"); a departure not listed is refused under every profile.

/// The departures from RFC 7644 a PATCH request may take. `Copy`, read-only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Profile {
    /// The profile's name, as the trust's `peer_kind` spells it (quoted in errors).
    pub name: &'static str,
    /// `replace` with a value filter that matches nothing adds a value built from the
    /// filter (`emails[type eq "work"].value` adds a work email). RFC §3.5.2.3: 400
    /// `noTarget`. Entra sends this replace to users that have no work email.
    pub unmatched_replace_adds: bool,
    /// `"True"`/`"False"` (any case) are accepted where a boolean is expected. RFC 7643
    /// §2.3.2: a boolean is a JSON `true`/`false`. Entra sends `"value":"False"` to disable.
    pub string_booleans: bool,
    /// `op` values in any case (`"Replace"`, `"Add"`). RFC 7644 §3.5.2: `"add"`,
    /// `"remove"` or `"replace"`. Entra capitalises them.
    pub capitalised_ops: bool,
    /// `remove` with a `value`: on a multi-valued attribute, removes the values matching
    /// the given ones. RFC 7644 §3.5.2.2 defines no `value` for remove (without a filter
    /// the whole attribute goes). Entra removes members with `{"op":"Remove",
    /// "path":"members","value":[{"value":"id"}]}`.
    pub remove_with_value: bool,
    /// The enterprise `manager` forms: an extension attribute named without its schema
    /// URN (`manager`, `manager[value eq "id"]`), and a bare value for a complex attribute
    /// with a `value` sub-attribute (`"value":"id"` for `{"value":"id"}`). RFC 7644 §3.10
    /// names extension attributes by their URN, and RFC 7643 §2.3.8 makes a complex
    /// value an object. Entra sends both.
    pub manager_forms: bool,
}

impl Profile {
    /// `generic`: RFC 7644 as written.
    pub const RFC: Profile = Profile {
        name: "generic",
        unmatched_replace_adds: false,
        string_booleans: false,
        capitalised_ops: false,
        remove_with_value: false,
        manager_forms: false,
    };

    /// `entra`: Microsoft Entra ID's provisioning service.
    pub const ENTRA: Profile = Profile {
        name: "entra",
        unmatched_replace_adds: true,
        string_booleans: true,
        capitalised_ops: true,
        remove_with_value: true,
        manager_forms: true,
    };

    /// `okta`: Okta's documented PATCH requests (no-path `replace` of `active`, member
    /// `remove` by filter then `add`, `replace members []`, an echoed own `id`) are RFC
    /// requests, so it takes no departure.
    pub const OKTA: Profile = Profile { name: "okta", ..Profile::RFC };

    /// The profile a `peer_kind` names; unknown names get the RFC.
    pub fn named(peer_kind: &str) -> Profile {
        [Profile::ENTRA, Profile::OKTA].into_iter().find(|p| p.name == peer_kind).unwrap_or(Profile::RFC)
    }

    /// The clause that ends an error refusing a departure: which profiles allow it.
    pub(crate) fn refusal(&self, allowed_by: &str) -> String {
        format!("the {} profile of this trust follows RFC 7644 here (the {allowed_by} profile allows it)", self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_kinds_select_profiles() {
        assert_eq!(Profile::named("entra"), Profile::ENTRA);
        assert_eq!(Profile::named("okta"), Profile::OKTA);
        assert_eq!(Profile::named("generic"), Profile::RFC);
        assert_eq!(Profile::named("other"), Profile::RFC);
        // Okta's profile is strict: only the name differs.
        assert_eq!(Profile { name: "generic", ..Profile::OKTA }, Profile::RFC);
    }
}
