use super::*;
use crate::diff::user_patch;
use fedkey_scim::schema::ENTERPRISE_USER;

fn alice() -> Value {
    json!({
        "schemas": [schema::USER, ENTERPRISE_USER],
        "id": "dir-1", "externalId": "hr-77", "userName": "Alice@Example.com", "active": true,
        "meta": {"resourceType": "User", "version": "W/\"3\""},
        "password": "never-sent",
        "name": {"givenName": "Alice", "familyName": "Liddell", "formatted": "Alice Liddell"},
        "displayName": "Alice L", "title": "  Engineer ",
        "emails": [{"value": "alice@home.net", "type": "home"}, {"value": "Alice@Example.com", "type": "work", "primary": true}],
        "groups": [{"value": "g-eng", "display": "Engineering"}],
        "roles": [{"value": "dir-role"}],
        ENTERPRISE_USER: {"department": "R&D", "employeeNumber": "42", "manager": {"value": "dir-9"}}
    })
}

/// Directory group ids (the directory gives every group a UUID).
const ENG: &str = "00000000-0000-4000-8000-0000000000e1";
const OPS: &str = "00000000-0000-4000-8000-0000000000e2";
const ADMINS: &str = "00000000-0000-4000-8000-0000000000a1";

fn groups(names: &[(&str, &str)]) -> Vec<GroupRef> {
    names.iter().map(|(id, n)| GroupRef { id: (*id).into(), display_name: (*n).into() }).collect()
}

fn user_of(d: Desired) -> Value {
    match d {
        Desired::User(v) => v,
        Desired::OutOfScope => panic!("out of scope"),
    }
}

#[test]
fn serde_shape_round_trips_and_rejects_typos() {
    let text = r#"{"scopeFilter": "active eq true", "scopeGroups": ["Engineering"],
        "userAttributes": [
          {"target": "userName", "source": {"copy": "emails[type eq \"work\"].value"}, "transforms": ["lower"]},
          {"target": "name.formatted", "source": {"join": {"paths": ["name.givenName", "name.familyName"]}}},
          {"target": "title", "source": {"constant": "Staff"}, "default": "x"}],
        "roles": [{"group": "Admins", "assign": {"appRole": "admin"}}, {"group": "g-2", "assign": {"appGroup": "crm"}}],
        "leaver": "delete"}"#;
    let m: Mapping = serde_json::from_str(text).unwrap();
    assert_eq!(m.leaver, LeaverPolicy::Delete);
    assert_eq!(m.user_attributes[0].transforms, vec![Transform::Lower]);
    assert_eq!(
        m.user_attributes[1].source,
        Source::Join { paths: vec!["name.givenName".into(), "name.familyName".into()], separator: " ".into() }
    );
    assert_eq!(m.roles[1].assign, RoleAssignment::AppGroup("crm".into()));
    let back: Mapping = serde_json::from_value(serde_json::to_value(&m).unwrap()).unwrap();
    assert_eq!(back, m);
    m.validate().unwrap();
    assert!(serde_json::from_str::<Mapping>(r#"{"scopefilter": "x"}"#).is_err());
    assert_eq!(serde_json::from_str::<Mapping>("{}").unwrap().leaver, LeaverPolicy::Deactivate);
}

#[test]
fn default_rules_copy_standard_attributes_and_never_secrets_or_ids() {
    let u = user_of(Mapping::default().desired_user(&alice(), &[]).unwrap());
    assert_eq!(
        u,
        json!({
            "schemas": [schema::USER, ENTERPRISE_USER],
            "externalId": "dir-1", "userName": "Alice@Example.com", "active": true,
            "name": {"givenName": "Alice", "familyName": "Liddell", "formatted": "Alice Liddell"},
            "displayName": "Alice L", "title": "  Engineer ",
            "emails": [{"value": "alice@home.net", "type": "home"}, {"value": "Alice@Example.com", "type": "work", "primary": true}],
            ENTERPRISE_USER: {"department": "R&D", "employeeNumber": "42"}
        })
    );
    // Without extension attributes, the extension is not announced.
    let mut plain = alice();
    plain.as_object_mut().unwrap().remove(ENTERPRISE_USER);
    let u = user_of(Mapping::default().desired_user(&plain, &[]).unwrap());
    assert_eq!(u["schemas"], json!([schema::USER]));
    let managed: Vec<String> =
        Mapping::default().managed_user_attributes().unwrap().iter().map(|m| m.path().to_string()).collect();
    assert!(managed.contains(&"externalId".to_owned()) && managed.contains(&"emails".to_owned()));
    assert!(managed.contains(&format!("{ENTERPRISE_USER}:department")));
    for never in ["id", "meta", "password", "groups", "roles", &format!("{ENTERPRISE_USER}:manager")] {
        assert!(!managed.iter().any(|m| m == never), "{never} must not be managed");
    }
}

#[test]
fn custom_rules_copy_join_constant_transform_default() {
    let m: Mapping = serde_json::from_value(json!({"userAttributes": [
        {"target": "userName", "source": {"copy": "emails[type eq \"work\"].value"}, "transforms": ["lower"]},
        {"target": "displayName", "source": {"join": {"paths": ["name.givenName", "nickName", "name.familyName"], "separator": " "}}},
        {"target": "title", "source": {"copy": "title"}, "transforms": ["trim", "upper"]},
        {"target": "emails[type eq \"work\"].value", "source": {"copy": "emails.value"}},
        {"target": "emails[type eq \"work\"].primary", "source": {"constant": true}},
        {"target": "phoneNumbers[type eq \"mobile\"].value", "source": {"copy": "phoneNumbers[type eq \"mobile\"].value"}},
        {"target": "userType", "source": {"copy": "userType"}, "default": "Employee"},
        {"target": "nickName", "source": {"copy": "externalId"}},
        {"target": format!("{ENTERPRISE_USER}:costCenter"), "source": {"constant": "CC-1"}},
        {"target": "name.familyName", "source": {"copy": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"}}
    ]}))
    .unwrap();
    m.validate().unwrap();
    let u = user_of(m.desired_user(&alice(), &[]).unwrap());
    assert_eq!(
        u,
        json!({
            "schemas": [schema::USER, ENTERPRISE_USER],
            "externalId": "dir-1", "userName": "alice@example.com", "displayName": "Alice Liddell",
            "title": "ENGINEER", "emails": [{"type": "work", "value": "Alice@Example.com", "primary": true}],
            "userType": "Employee", "nickName": "hr-77", "name": {"familyName": "R&D"},
            ENTERPRISE_USER: {"costCenter": "CC-1"}
        })
    );
    let managed: Vec<String> = m.managed_user_attributes().unwrap().iter().map(|m| m.path().to_string()).collect();
    assert_eq!(
        managed,
        [
            "externalId",
            "userName",
            "displayName",
            "title",
            "emails",
            "phoneNumbers",
            "userType",
            "nickName",
            &format!("{ENTERPRISE_USER}:costCenter"),
            "name.familyName"
        ]
    );
}

#[test]
fn scope_filter_and_scope_groups() {
    let m = Mapping {
        scope_filter: Some("active eq true and emails[type eq \"work\"].value ew \"@example.com\"".into()),
        scope_groups: vec![GroupSelector::Name("engineering".into()), GroupSelector::Id(OPS.into())],
        ..Mapping::default()
    };
    let eng = groups(&[(ENG, "Engineering")]);
    assert!(matches!(m.desired_user(&alice(), &eng).unwrap(), Desired::User(_)));
    assert!(matches!(m.desired_user(&alice(), &groups(&[(OPS, "Operations")])).unwrap(), Desired::User(_)));
    assert_eq!(m.desired_user(&alice(), &groups(&[("g-x", "Sales")])).unwrap(), Desired::OutOfScope);
    assert_eq!(m.desired_user(&alice(), &[]).unwrap(), Desired::OutOfScope);
    let mut inactive = alice();
    inactive["active"] = json!(false);
    assert_eq!(m.desired_user(&inactive, &eng).unwrap(), Desired::OutOfScope);
    // Without group scope, only the filter counts.
    let m = Mapping { scope_groups: vec![], ..m };
    assert!(matches!(m.desired_user(&alice(), &[]).unwrap(), Desired::User(_)));
}

#[test]
fn role_rules_assign_roles_and_app_groups() {
    let m: Mapping = serde_json::from_value(json!({"roles": [
        {"group": {"name": "Admins"}, "assign": {"appRole": "admin"}},
        {"group": {"id": ENG}, "assign": {"appRole": "developer"}},
        {"group": {"name": "engineering"}, "assign": {"appRole": "developer"}},
        {"group": ENG, "assign": {"appGroup": "crm-eng"}},
        {"group": "Sales", "assign": {"appGroup": "crm-sales"}}
    ]}))
    .unwrap();
    let member_of = groups(&[(ENG, "Engineering")]);
    let u = user_of(m.desired_user(&alice(), &member_of).unwrap());
    assert_eq!(u["roles"], json!([{"value": "developer"}]));
    assert_eq!(m.app_groups(&member_of), ["crm-eng"]);
    assert_eq!(m.managed_app_groups(), ["crm-eng", "crm-sales"]);
    let admin = groups(&[("g-a", "ADMINS"), ("g-s", "Sales")]);
    let u = user_of(m.desired_user(&alice(), &admin).unwrap());
    assert_eq!(u["roles"], json!([{"value": "admin"}]));
    assert_eq!(m.app_groups(&admin), ["crm-sales"]);
    // No matching group: no roles, and `roles` is managed, so a diff removes stale ones.
    let u = user_of(m.desired_user(&alice(), &[]).unwrap());
    assert!(u.get("roles").is_none());
    let managed = m.managed_user_attributes().unwrap();
    let ops = user_patch(&json!({"userName": "Alice@Example.com", "roles": [{"value": "admin"}]}), &u, &managed);
    assert!(
        ops.iter()
            .any(|o| o.op == fedkey_scim::patch::OpKind::Remove && o.path.as_ref().unwrap().to_string() == "roles")
    );
}

#[test]
fn validation_reports_every_problem_with_its_rule() {
    let m: Mapping = serde_json::from_value(json!({
        "scopeFilter": "userName eq",
        "scopeGroups": [" "],
        "userAttributes": [
            {"target": "nope", "source": {"copy": "userName"}},
            {"target": "id", "source": {"copy": "userName"}},
            {"target": "groups", "source": {"copy": "groups"}},
            {"target": "password", "source": {"constant": "x"}},
            {"target": "emails.value", "source": {"copy": "userName"}},
            {"target": "active", "source": {"constant": "maybe"}},
            {"target": "title", "source": {"copy": "emails[type eq]"}},
            {"target": "userName", "source": {"copy": "userName"}},
            {"target": "userName", "source": {"copy": "displayName"}},
            {"target": "roles", "source": {"copy": "roles"}},
            {"target": "displayName", "source": {"join": {"paths": []}}},
            {"target": "emails[type co \"w\"].value", "source": {"copy": "userName"}}
        ],
        "groupAttributes": [{"target": "members", "source": {"copy": "members"}}],
        "roles": [{"group": "", "assign": {"appRole": "r"}}, {"group": {"id": "Admins"}, "assign": {"appRole": "r"}}]
    }))
    .unwrap();
    let e = m.validate().unwrap_err();
    let expect = [
        "scopeFilter: invalid filter",
        "scopeGroups[0]: empty group name",
        "roles[0].group: empty group name",
        "roles[1].group: \"Admins\" is not a directory group id",
        "userAttributes[0] (target \"nope\"): User resources have no attribute nope",
        "userAttributes[1] (target \"id\"): id is set by fedkey",
        "userAttributes[2] (target \"groups\"): read-only",
        "userAttributes[3] (target \"password\"): passwords are never provisioned",
        "userAttributes[4] (target \"emails.value\"): emails.value does not say which value",
        "userAttributes[5] (target \"active\"): constant: active must be a boolean",
        "userAttributes[6] (target \"title\"): source \"emails[type eq]\"",
        "userAttributes[8] (target \"userName\"): overlaps userAttributes[7]",
        "userAttributes[9] (target \"roles\"): roles are assigned by the role rules",
        "userAttributes[10] (target \"displayName\"): join needs at least one path",
        "userAttributes[11] (target \"emails[type co \\\"w\\\"].value\"): a target selector may only join",
        "groupAttributes[0] (target \"members\"): members are reconciled",
    ];
    for x in expect {
        assert!(e.problems.iter().any(|p| p.starts_with(x)), "missing {x:?} in {:#?}", e.problems);
    }
    assert_eq!(e.problems.len(), expect.len(), "{:#?}", e.problems);
    // desired_user refuses to run an invalid mapping, naming the resource.
    let err = m.desired_user(&alice(), &[]).unwrap_err();
    assert_eq!((err.resource.as_str(), err.rule.as_str()), ("user dir-1 (Alice@Example.com)", "mapping"));
}

#[test]
fn mapping_errors_name_the_resource_and_the_rule() {
    let m: Mapping = serde_json::from_value(json!({"userAttributes": [
        {"target": "userName", "source": {"copy": "userName"}},
        {"target": "title", "source": {"copy": "active"}, "transforms": ["upper"]}
    ]}))
    .unwrap();
    let e = m.desired_user(&alice(), &[]).unwrap_err();
    assert_eq!(e.resource, "user dir-1 (Alice@Example.com)");
    assert_eq!(e.rule, "userAttributes[1] (target \"title\")");
    assert!(e.message.contains("text only"), "{e}");
    // A type mismatch at the target.
    let m: Mapping = serde_json::from_value(json!({"userAttributes": [
        {"target": "userName", "source": {"copy": "userName"}},
        {"target": "active", "source": {"copy": "displayName"}}
    ]}))
    .unwrap();
    let e = m.desired_user(&alice(), &[]).unwrap_err();
    assert_eq!(e.rule, "userAttributes[1] (target \"active\")");
    assert!(e.to_string().contains("active must be a boolean"), "{e}");
    // A required attribute the rules did not produce.
    let m: Mapping = serde_json::from_value(json!({"userAttributes": [
        {"target": "userName", "source": {"copy": "nickName"}}
    ]}))
    .unwrap();
    let e = m.desired_user(&alice(), &[]).unwrap_err();
    assert_eq!((e.rule.as_str(), e.message.as_str()), ("schema", "userName is required"));
    // No directory id to match by.
    let mut anon = alice();
    anon.as_object_mut().unwrap().remove("id");
    let e = Mapping::default().desired_user(&anon, &[]).unwrap_err();
    assert_eq!(e.rule, "externalId");
}

#[test]
fn groups_map_display_name_and_external_id() {
    let g = json!({"id": "g-1", "displayName": "Engineering", "members": [{"value": "dir-1"}], "meta": {}});
    assert_eq!(
        Mapping::default().desired_group(&g).unwrap(),
        json!({"schemas": [schema::GROUP], "externalId": "g-1", "displayName": "Engineering"})
    );
    let m: Mapping = serde_json::from_value(json!({"groupAttributes": [
        {"target": "displayName", "source": {"copy": "displayName"}, "transforms": ["lower"]}
    ]}))
    .unwrap();
    assert_eq!(m.desired_group(&g).unwrap()["displayName"], "engineering");
    let paths: Vec<String> = m.managed_group_attributes().unwrap().iter().map(|a| a.path().to_string()).collect();
    assert_eq!(paths, ["externalId", "displayName"]);
    let e = m.desired_group(&json!({"id": "g-2"})).unwrap_err();
    assert_eq!((e.resource.as_str(), e.rule.as_str()), ("group g-2", "schema"));
}

/// `users_follow_groups` is false only where memberships cannot change the desired user:
/// for those mappings the user comes out the same with other groups (both the `member_of`
/// list and the user's own `groups` attribute); for the others some membership change
/// shows.
#[test]
fn users_follow_groups_exactly_when_memberships_can_change_the_user() {
    let rules = |title: Value| json!({"userAttributes": [{"target": "userName", "source": {"copy": "userName"}}, {"target": "title", "source": title}]});
    let copy = |path: &str| rules(json!({"copy": path}));
    let cases = [
        (json!({}), false),
        (json!({"scopeFilter": "active eq true"}), false),
        (copy("title"), false),
        (rules(json!({"constant": "groups"})), false),
        (json!({"scopeGroups": ["Engineering"]}), true),
        (json!({"roles": [{"group": "Admins", "assign": {"appRole": "admin"}}]}), true),
        (json!({"roles": [{"group": "Admins", "assign": {"appGroup": "crm-admins"}}]}), true),
        (json!({"scopeFilter": "groups[display eq \"Engineering\"]"}), true),
        (copy("groups.display"), true),
        (rules(json!({"join": {"paths": ["title", "Groups.display"]}})), true),
    ];
    let member_of = groups(&[(ENG, "Engineering"), (ADMINS, "Admins")]);
    let mut regrouped = alice();
    regrouped["groups"] = json!([{"value": "g-x", "display": "Sales"}]);
    for (v, follows) in cases {
        let m: Mapping = serde_json::from_value(v.clone()).unwrap();
        m.validate().unwrap();
        assert_eq!(m.users_follow_groups(), follows, "{v}");
        let variants = [
            m.desired_user(&alice(), &member_of).unwrap(),
            m.desired_user(&alice(), &[]).unwrap(),
            m.desired_user(&regrouped, &member_of).unwrap(),
        ];
        let app_groups = [m.app_groups(&member_of), m.app_groups(&[])];
        let same = variants.iter().all(|d| *d == variants[0]) && app_groups[0] == app_groups[1];
        assert_eq!(same, !follows, "{v}: {variants:?} {app_groups:?}");
    }
}

/// A rule names exactly one group: by id, only that id; by name, only when it says so. A
/// group someone named after the privileged group's id earns nothing (issue 16, row 1).
#[test]
fn a_group_named_after_another_groups_id_does_not_meet_a_rule_by_id() {
    let m: Mapping = serde_json::from_value(json!({
        "scopeGroups": [ADMINS],
        "roles": [{"group": ADMINS, "assign": {"appRole": "admin"}}, {"group": {"id": ADMINS}, "assign": {"appGroup": "crm-admins"}}]
    }))
    .unwrap();
    m.validate().unwrap();
    let impostor = groups(&[(ENG, ADMINS)]);
    assert_eq!(m.desired_user(&alice(), &impostor).unwrap(), Desired::OutOfScope);
    assert!(m.app_groups(&impostor).is_empty());
    let upper = groups(&[(ENG, &ADMINS.to_uppercase())]);
    assert_eq!(m.desired_user(&alice(), &upper).unwrap(), Desired::OutOfScope);
    let admin = groups(&[(ADMINS, "Admins")]);
    assert_eq!(user_of(m.desired_user(&alice(), &admin).unwrap())["roles"], json!([{"value": "admin"}]));
    assert_eq!(m.app_groups(&admin), ["crm-admins"]);
    // Written back in the explicit form.
    let back = serde_json::to_value(&m).unwrap();
    assert_eq!(back["scopeGroups"], json!([{"id": ADMINS}]));
    assert_eq!(back["roles"][0]["group"], json!({"id": ADMINS}));
}

#[test]
fn a_group_name_matching_two_groups_is_not_applied_and_bad_selectors_are_refused() {
    let m: Mapping =
        serde_json::from_value(json!({"roles": [{"group": {"name": "admins"}, "assign": {"appRole": "admin"}}]}))
            .unwrap();
    let two = groups(&[(ADMINS, "Admins"), (ENG, "ADMINS")]);
    assert!(user_of(m.desired_user(&alice(), &two).unwrap()).get("roles").is_none());
    let one = groups(&[(ADMINS, "Admins")]);
    assert_eq!(user_of(m.desired_user(&alice(), &one).unwrap())["roles"], json!([{"value": "admin"}]));
    for bad in [json!({"idd": ADMINS}), json!({"id": ADMINS, "name": "x"}), json!(7), json!({"name": 3})] {
        let e = serde_json::from_value::<Mapping>(json!({"scopeGroups": [bad]})).unwrap_err();
        assert!(e.to_string().contains(r#"{"id": "<group id>"} or {"name": "<displayName>"}"#), "{e}");
    }
    let upper: Mapping = serde_json::from_value(json!({"scopeGroups": [ADMINS.to_uppercase()]})).unwrap();
    assert!(upper.validate().unwrap_err().problems[0].contains("not a directory group id"));
}
