//! The schema registry: every attribute of every resource type with its RFC 7643
//! characteristics. One table drives validation, filtering (case sensitivity), PATCH
//! (mutability, multi-valued rules), projection (`returned`) and the `/Schemas` and
//! `/ResourceTypes` documents, so what fedkey advertises is what it enforces.

use serde_json::{Value, json};

use crate::filter::AttrPath;

pub const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const ENTERPRISE_USER: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const SCHEMA_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";
pub const RESOURCE_TYPE_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrType {
    String,
    Boolean,
    Decimal,
    Integer,
    DateTime,
    Binary,
    Reference,
    Complex,
}

impl AttrType {
    /// The RFC 7643 spelling (`dateTime`, `complex`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            AttrType::String => "string",
            AttrType::Boolean => "boolean",
            AttrType::Decimal => "decimal",
            AttrType::Integer => "integer",
            AttrType::DateTime => "dateTime",
            AttrType::Binary => "binary",
            AttrType::Reference => "reference",
            AttrType::Complex => "complex",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutability {
    ReadOnly,
    ReadWrite,
    Immutable,
    WriteOnly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returned {
    Always,
    Never,
    Default,
    Request,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uniqueness {
    None,
    Server,
    Global,
}

#[derive(Debug, Clone, Copy)]
pub struct AttributeDef {
    pub name: &'static str,
    pub ty: AttrType,
    pub multi_valued: bool,
    pub description: &'static str,
    pub required: bool,
    pub case_exact: bool,
    pub mutability: Mutability,
    pub returned: Returned,
    pub uniqueness: Uniqueness,
    pub canonical_values: &'static [&'static str],
    pub reference_types: &'static [&'static str],
    pub sub_attributes: &'static [AttributeDef],
}

/// Builder for the static tables below.
const fn attr(name: &'static str, ty: AttrType, description: &'static str) -> AttributeDef {
    AttributeDef {
        name,
        ty,
        multi_valued: false,
        description,
        required: false,
        case_exact: false,
        mutability: Mutability::ReadWrite,
        returned: Returned::Default,
        uniqueness: Uniqueness::None,
        canonical_values: &[],
        reference_types: &[],
        sub_attributes: &[],
    }
}

const fn s(name: &'static str, description: &'static str) -> AttributeDef {
    attr(name, AttrType::String, description)
}

impl AttributeDef {
    const fn multi(mut self) -> Self {
        self.multi_valued = true;
        self
    }
    const fn required(mut self) -> Self {
        self.required = true;
        self
    }
    const fn mutability(mut self, m: Mutability) -> Self {
        self.mutability = m;
        self
    }
    const fn returned(mut self, r: Returned) -> Self {
        self.returned = r;
        self
    }
    const fn unique(mut self) -> Self {
        self.uniqueness = Uniqueness::Server;
        self
    }
    const fn canonical(mut self, v: &'static [&'static str]) -> Self {
        self.canonical_values = v;
        self
    }
    const fn refs(mut self, r: &'static [&'static str]) -> Self {
        self.reference_types = r;
        self
    }
    const fn sub(mut self, subs: &'static [AttributeDef]) -> Self {
        self.sub_attributes = subs;
        self
    }

    /// A sub-attribute by name, case-insensitively.
    pub fn sub_attribute(&self, name: &str) -> Option<&'static AttributeDef> {
        self.sub_attributes.iter().find(|a| a.name.eq_ignore_ascii_case(name))
    }

    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "name": self.name,
            "type": self.ty.as_str(),
            "multiValued": self.multi_valued,
            "description": self.description,
            "required": self.required,
            "caseExact": self.case_exact,
            "mutability": match self.mutability {
                Mutability::ReadOnly => "readOnly",
                Mutability::ReadWrite => "readWrite",
                Mutability::Immutable => "immutable",
                Mutability::WriteOnly => "writeOnly",
            },
            "returned": match self.returned {
                Returned::Always => "always",
                Returned::Never => "never",
                Returned::Default => "default",
                Returned::Request => "request",
            },
            "uniqueness": match self.uniqueness {
                Uniqueness::None => "none",
                Uniqueness::Server => "server",
                Uniqueness::Global => "global",
            },
        });
        if !self.canonical_values.is_empty() {
            v["canonicalValues"] = json!(self.canonical_values);
        }
        if !self.reference_types.is_empty() {
            v["referenceTypes"] = json!(self.reference_types);
        }
        if !self.sub_attributes.is_empty() {
            v["subAttributes"] = Value::Array(self.sub_attributes.iter().map(AttributeDef::to_json).collect());
        }
        v
    }
}

/// `value`, `display`, `type` and `primary`: the sub-attributes of most multi-valued
/// attributes (RFC 7643 §2.4).
const fn multi_valued(types: &'static [&'static str], value: AttributeDef) -> [AttributeDef; 4] {
    [
        value,
        s("display", "A human-readable name, primarily used for display purposes."),
        s("type", "A label indicating the attribute's function.").canonical(types),
        attr("primary", AttrType::Boolean, "Whether this is the primary value of the attribute."),
    ]
}

const NAME_SUBS: &[AttributeDef] = &[
    s("formatted", "The full name, formatted for display."),
    s("familyName", "The family name of the User."),
    s("givenName", "The given name of the User."),
    s("middleName", "The middle name(s) of the User."),
    s("honorificPrefix", "The honorific prefix(es) of the User."),
    s("honorificSuffix", "The honorific suffix(es) of the User."),
];
const EMAIL_SUBS: &[AttributeDef] =
    &multi_valued(&["work", "home", "other"], s("value", "Email address for the User."));
const PHONE_SUBS: &[AttributeDef] =
    &multi_valued(&["work", "home", "mobile", "fax", "pager", "other"], s("value", "Phone number of the User."));
const IM_SUBS: &[AttributeDef] = &multi_valued(
    &["aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo"],
    s("value", "Instant messaging address for the User."),
);
const PHOTO_SUBS: &[AttributeDef] = &multi_valued(
    &["photo", "thumbnail"],
    attr("value", AttrType::Reference, "URL of a photo of the User.").refs(&["external"]),
);
const ADDRESS_SUBS: &[AttributeDef] = &[
    s("formatted", "The full mailing address, formatted for display."),
    s("streetAddress", "The full street address component."),
    s("locality", "The city or locality component."),
    s("region", "The state or region component."),
    s("postalCode", "The zip code or postal code component."),
    s("country", "The country name component."),
    s("type", "A label indicating the attribute's function.").canonical(&["work", "home", "other"]),
    attr("primary", AttrType::Boolean, "Whether this is the primary address."),
];
const GROUP_REF_SUBS: &[AttributeDef] = &[
    s("value", "The identifier of the User's group.").mutability(Mutability::ReadOnly),
    attr("$ref", AttrType::Reference, "The URI of the corresponding 'Group' resource.")
        .refs(&["User", "Group"])
        .mutability(Mutability::ReadOnly),
    s("display", "A human-readable name of the group.").mutability(Mutability::ReadOnly),
    s("type", "How the membership came about.").canonical(&["direct", "indirect"]).mutability(Mutability::ReadOnly),
];
const ENTITLEMENT_SUBS: &[AttributeDef] = &multi_valued(&[], s("value", "The value of an entitlement."));
const ROLE_SUBS: &[AttributeDef] = &multi_valued(&[], s("value", "The value of a role."));
const CERT_SUBS: &[AttributeDef] =
    &multi_valued(&[], attr("value", AttrType::Binary, "The value of an X.509 certificate."));

const USER_ATTRS: &[AttributeDef] = &[
    s("userName", "Unique identifier for the User, typically used to authenticate; unique per directory, compared case-insensitively.")
        .required()
        .unique(),
    attr("name", AttrType::Complex, "The components of the user's real name.").sub(NAME_SUBS),
    s("displayName", "The name of the User, suitable for display to end-users."),
    s("nickName", "The casual way to address the user in real life."),
    attr("profileUrl", AttrType::Reference, "A fully qualified URL pointing to a page representing the User's online profile.")
        .refs(&["external"]),
    s("title", "The user's title, such as \"Vice President\"."),
    s("userType", "Used to identify the relationship between the organization and the user."),
    s("preferredLanguage", "The User's preferred written or spoken language (RFC 7231 Accept-Language format)."),
    s("locale", "The User's default location for localizing items (BCP 47)."),
    s("timezone", "The User's time zone in IANA Time Zone database format."),
    attr("active", AttrType::Boolean, "The User's administrative status."),
    s("password", "The User's cleartext password; write-only, never returned.")
        .mutability(Mutability::WriteOnly)
        .returned(Returned::Never),
    attr("emails", AttrType::Complex, "Email addresses for the user.").multi().sub(EMAIL_SUBS),
    attr("phoneNumbers", AttrType::Complex, "Phone numbers for the User.").multi().sub(PHONE_SUBS),
    attr("ims", AttrType::Complex, "Instant messaging addresses for the User.").multi().sub(IM_SUBS),
    attr("photos", AttrType::Complex, "URLs of photos of the User.").multi().sub(PHOTO_SUBS),
    attr("addresses", AttrType::Complex, "A physical mailing address for this User.").multi().sub(ADDRESS_SUBS),
    attr("groups", AttrType::Complex, "A list of groups to which the user belongs; read-only, managed through Group resources.")
        .multi()
        .mutability(Mutability::ReadOnly)
        .sub(GROUP_REF_SUBS),
    attr("entitlements", AttrType::Complex, "A list of entitlements for the User.").multi().sub(ENTITLEMENT_SUBS),
    attr("roles", AttrType::Complex, "A list of roles for the User.").multi().sub(ROLE_SUBS),
    attr("x509Certificates", AttrType::Complex, "A list of certificates issued to the User.").multi().sub(CERT_SUBS),
];

const MANAGER_SUBS: &[AttributeDef] = &[
    s("value", "The id of the SCIM resource representing the User's manager."),
    attr("$ref", AttrType::Reference, "The URI of the SCIM resource representing the User's manager.").refs(&["User"]),
    s("displayName", "The displayName of the User's manager.").mutability(Mutability::ReadOnly),
];

const ENTERPRISE_ATTRS: &[AttributeDef] = &[
    s("employeeNumber", "Numeric or alphanumeric identifier assigned to a person."),
    s("costCenter", "Identifies the name of a cost center."),
    s("organization", "Identifies the name of an organization."),
    s("division", "Identifies the name of a division."),
    s("department", "Identifies the name of a department."),
    attr("manager", AttrType::Complex, "The User's manager.").sub(MANAGER_SUBS),
];

const MEMBER_SUBS: &[AttributeDef] = &[
    s("value", "Identifier of the member of this Group.").mutability(Mutability::Immutable),
    attr("$ref", AttrType::Reference, "The URI of the member resource.")
        .refs(&["User", "Group"])
        .mutability(Mutability::Immutable),
    s("display", "A human-readable name of the member.").mutability(Mutability::Immutable),
    s("type", "The type of the member.").canonical(&["User", "Group"]).mutability(Mutability::Immutable),
];

const GROUP_ATTRS: &[AttributeDef] = &[
    s("displayName", "A human-readable name for the Group; unique per directory, compared case-insensitively.")
        .required()
        .unique(),
    attr("members", AttrType::Complex, "A list of members of the Group (Users and Groups).").multi().sub(MEMBER_SUBS),
];

#[derive(Debug)]
pub struct SchemaDef {
    pub id: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub attributes: &'static [AttributeDef],
}

impl SchemaDef {
    pub fn attribute(&self, name: &str) -> Option<&'static AttributeDef> {
        self.attributes.iter().find(|a| a.name.eq_ignore_ascii_case(name))
    }

    pub fn to_json(&self, base_url: &str) -> Value {
        json!({
            "schemas": [SCHEMA_SCHEMA],
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "attributes": self.attributes.iter().map(AttributeDef::to_json).collect::<Vec<_>>(),
            "meta": {"resourceType": "Schema", "location": format!("{base_url}/Schemas/{}", self.id)},
        })
    }
}

pub static SCHEMAS: [SchemaDef; 3] = [
    SchemaDef { id: USER, name: "User", description: "User Account", attributes: USER_ATTRS },
    SchemaDef {
        id: ENTERPRISE_USER,
        name: "EnterpriseUser",
        description: "Enterprise User",
        attributes: ENTERPRISE_ATTRS,
    },
    SchemaDef { id: GROUP, name: "Group", description: "Group", attributes: GROUP_ATTRS },
];

#[derive(Debug)]
pub struct ResourceTypeDef {
    pub id: &'static str,
    pub name: &'static str,
    pub endpoint: &'static str,
    pub description: &'static str,
    pub schema: &'static str,
    /// Schema extensions and whether each is required.
    pub extensions: &'static [(&'static str, bool)],
}

impl ResourceTypeDef {
    pub fn to_json(&self, base_url: &str) -> Value {
        json!({
            "schemas": [RESOURCE_TYPE_SCHEMA],
            "id": self.id,
            "name": self.name,
            "endpoint": self.endpoint,
            "description": self.description,
            "schema": self.schema,
            "schemaExtensions": self.extensions.iter().map(|(s, r)| json!({"schema": s, "required": r})).collect::<Vec<_>>(),
            "meta": {"resourceType": "ResourceType", "location": format!("{base_url}/ResourceTypes/{}", self.id)},
        })
    }

    /// The core schema and its extensions.
    pub fn schemas(&self) -> impl Iterator<Item = &'static SchemaDef> + '_ {
        std::iter::once(self.schema).chain(self.extensions.iter().map(|(s, _)| *s)).filter_map(schema)
    }

    /// Resolves an attribute path against this resource type: a URN selects the schema,
    /// otherwise the core schema is searched first, then the extensions. Returns the
    /// schema, the attribute and (for `a.b`) the sub-attribute.
    pub fn resolve(&self, path: &AttrPath) -> Option<Resolved> {
        let candidates: Vec<&'static SchemaDef> = match &path.uri {
            Some(uri) => schema(uri).filter(|s| self.schemas().any(|x| x.id == s.id)).into_iter().collect(),
            None => self.schemas().collect(),
        };
        for sch in candidates {
            if let Some(a) = sch.attribute(&path.name) {
                let sub = match &path.sub {
                    Some(sub) => Some(a.sub_attribute(sub)?),
                    None => None,
                };
                return Some(Resolved { schema: sch, attribute: a, sub });
            }
        }
        None
    }
}

/// An attribute path resolved against the registry.
#[derive(Debug, Clone, Copy)]
pub struct Resolved {
    pub schema: &'static SchemaDef,
    pub attribute: &'static AttributeDef,
    pub sub: Option<&'static AttributeDef>,
}

impl Resolved {
    /// The definition the path finally names (the sub-attribute if there is one).
    pub fn target(&self) -> &'static AttributeDef {
        self.sub.unwrap_or(self.attribute)
    }
}

pub static RESOURCE_TYPES: [ResourceTypeDef; 2] = [
    ResourceTypeDef {
        id: "User",
        name: "User",
        endpoint: "/Users",
        description: "User Account",
        schema: USER,
        extensions: &[(ENTERPRISE_USER, false)],
    },
    ResourceTypeDef {
        id: "Group",
        name: "Group",
        endpoint: "/Groups",
        description: "Group",
        schema: GROUP,
        extensions: &[],
    },
];

/// A schema by its URN (case-insensitive, as URNs are).
pub fn schema(id: &str) -> Option<&'static SchemaDef> {
    SCHEMAS.iter().find(|s| s.id.eq_ignore_ascii_case(id))
}

/// A resource type by id or name (`User`, `Group`).
pub fn resource_type(id: &str) -> Option<&'static ResourceTypeDef> {
    RESOURCE_TYPES.iter().find(|r| r.id.eq_ignore_ascii_case(id))
}

/// The attributes every resource has (RFC 7643 §3.1), not part of any schema document.
pub const COMMON_ATTRIBUTES: [&str; 4] = ["id", "externalId", "meta", "schemas"];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter;

    fn path(s: &str) -> AttrPath {
        match filter::parse(&format!("{s} pr")).unwrap() {
            filter::Filter::Present(p) => p,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn resolves_paths_case_insensitively_and_by_urn() {
        let user = resource_type("user").unwrap();
        let r = user.resolve(&path("USERNAME")).unwrap();
        assert_eq!(r.attribute.name, "userName");
        assert!(!r.attribute.case_exact && r.attribute.uniqueness == Uniqueness::Server);
        let r = user.resolve(&path("emails.value")).unwrap();
        assert_eq!((r.attribute.name, r.sub.map(|a| a.name)), ("emails", Some("value")));
        assert!(r.attribute.multi_valued);
        let r = user.resolve(&path(&format!("{ENTERPRISE_USER}:manager.value"))).unwrap();
        assert_eq!(r.schema.id, ENTERPRISE_USER);
        // Unqualified names fall through to the extension.
        assert_eq!(user.resolve(&path("department")).unwrap().schema.id, ENTERPRISE_USER);
        assert!(user.resolve(&path("members")).is_none());
        assert!(user.resolve(&path("emails.nope")).is_none());
        assert!(user.resolve(&path(&format!("{GROUP}:displayName"))).is_none(), "a schema the type lacks");
        let pw = user.resolve(&path("password")).unwrap().attribute;
        assert_eq!((pw.mutability, pw.returned), (Mutability::WriteOnly, Returned::Never));
    }

    #[test]
    fn documents_are_complete() {
        let doc = schema(USER).unwrap().to_json("http://h/scim/v2/acme");
        assert_eq!(doc["id"], USER);
        assert_eq!(doc["meta"]["location"], format!("http://h/scim/v2/acme/Schemas/{USER}"));
        let attrs = doc["attributes"].as_array().unwrap();
        assert_eq!(attrs.len(), USER_ATTRS.len());
        for a in attrs {
            for k in ["name", "type", "multiValued", "required", "caseExact", "mutability", "returned", "uniqueness"] {
                assert!(a.get(k).is_some(), "{} lacks {k}", a["name"]);
            }
        }
        let emails = attrs.iter().find(|a| a["name"] == "emails").unwrap();
        assert_eq!(emails["subAttributes"][2]["canonicalValues"], json!(["work", "home", "other"]));
        let rt = resource_type("User").unwrap().to_json("http://h");
        assert_eq!(rt["schemaExtensions"][0]["schema"], ENTERPRISE_USER);
        assert_eq!(resource_type("Group").unwrap().endpoint, "/Groups");
    }
}
