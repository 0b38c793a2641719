use super::elements::tidied;
use super::*;
use crate::filter::{AttrPath, CompValue, CompareOp, Filter};
use crate::profile::Profile;
use crate::schema::{ENTERPRISE_USER, GROUP, ResourceTypeDef, USER, resource_type};
use proptest::prelude::*;
use serde_json::json;

/// The profile of the tests written for Entra's and Okta's shapes (the widest).
const E: &Profile = &Profile::ENTRA;
const RFC: &Profile = &Profile::RFC;

const MANAGER_ID: &str = "26118915-6090-4610-87e4-49d8ca9f808d";
const BABS: &str = "2819c223-7f76-453a-919d-413861904646";
const MANDY: &str = "902c246b-6245-4190-8e05-00816be7344a";

fn user() -> Value {
    json!({
        "schemas": [USER],
        "id": BABS,
        "externalId": "701984",
        "userName": "bjensen@example.com",
        "name": {"formatted": "Ms. Barbara J Jensen, III", "familyName": "Jensen", "givenName": "Barbara"},
        "displayName": "Babs Jensen",
        "active": true,
        "emails": [
            {"value": "bjensen@example.com", "type": "work", "primary": true},
            {"value": "babs@jensen.org", "type": "home"}
        ],
        "addresses": [{"type": "home", "streetAddress": "456 Hollywood Blvd", "locality": "Hollywood"}],
        "meta": {"resourceType": "User", "created": "2010-01-23T04:56:22Z", "version": "W/\"3694e05e9dff590\""}
    })
}

fn enterprise_user() -> Value {
    let mut u = user();
    u["schemas"] = json!([USER, ENTERPRISE_USER]);
    u[ENTERPRISE_USER] = json!({
        "employeeNumber": "701984",
        "department": "Tour Operations",
        "manager": {"value": MANAGER_ID, "$ref": format!("../Users/{MANAGER_ID}"), "displayName": "John Smith"}
    });
    u
}

fn group() -> Value {
    json!({
        "schemas": [GROUP],
        "id": "e9e30dba-f08f-4109-8486-d5c6a331660a",
        "displayName": "Tour Guides",
        "members": [
            {"value": BABS, "$ref": format!("https://example.com/v2/Users/{BABS}"), "display": "Babs Jensen"},
            {"value": MANDY, "$ref": format!("https://example.com/v2/Users/{MANDY}"), "display": "Mandy Pepperidge"}
        ],
        "meta": {"resourceType": "Group"}
    })
}

/// Applies a full request body under a profile.
fn run_body_as(p: &Profile, rt: &str, res: &mut Value, body: &Value) -> Result<Vec<String>, ScimError> {
    let ops = parse_request(body, p)?;
    apply(resource_type(rt).unwrap(), res, &ops, p)
}

fn run_as(p: &Profile, rt: &str, res: &mut Value, ops: Value) -> Result<Vec<String>, ScimError> {
    run_body_as(p, rt, res, &json!({"schemas": [PATCH_OP_SCHEMA], "Operations": ops}))
}

fn run(rt: &str, res: &mut Value, ops: Value) -> Result<Vec<String>, ScimError> {
    run_as(E, rt, res, ops)
}

fn ok_as(p: &Profile, rt: &str, res: &mut Value, ops: Value) -> Vec<String> {
    run_as(p, rt, res, ops).unwrap_or_else(|e| panic!("{}", e.detail))
}

fn ok(rt: &str, res: &mut Value, ops: Value) -> Vec<String> {
    ok_as(E, rt, res, ops)
}

fn ok_body(rt: &str, res: &mut Value, body: &str) -> Vec<String> {
    ok_body_as(E, rt, res, body)
}

fn ok_body_as(p: &Profile, rt: &str, res: &mut Value, body: &str) -> Vec<String> {
    let body: Value = serde_json::from_str(body).unwrap();
    run_body_as(p, rt, res, &body).unwrap_or_else(|e| panic!("{}", e.detail))
}

/// Found by the `patch` fuzz harness: PATCH stored `""` where create and replace read
/// no value, so `replace userName ""` left a user without a usable userName.
#[test]
fn an_empty_string_is_no_value_as_on_create() {
    let mut res = user();
    let before = res.clone();
    let e = run("User", &mut res, json!([{"op": "replace", "path": "userName", "value": ""}])).unwrap_err();
    assert_eq!((e.status_code(), e.scim_type), (400, Some(ScimType::InvalidValue)), "{}", e.detail);
    assert_eq!(res, before);
    ok("User", &mut res, json!([{"op": "replace", "path": "displayName", "value": ""}]));
    assert!(res.get("displayName").is_none(), "{res}");
    ok("User", &mut res, json!([{"op": "add", "path": "name.givenName", "value": [""]}]));
    assert!(res["name"].get("givenName").is_none(), "{res}");
    ok("User", &mut res, json!([{"op": "add", "path": "emails", "value": [{"value": "", "type": "other"}]}]));
    assert!(!res["emails"].as_array().unwrap().iter().any(|e| e.get("value") == Some(&json!(""))), "{res}");
    let stored: Map<String, Value> = res
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| !["id", "meta", "schemas"].contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(crate::resource::normalize(resource_type("User").unwrap(), &res).unwrap(), Value::Object(stored));
}

/// Runs a PATCH that must fail; checks the resource is byte-identical and returns the
/// error type.
fn fail(rt: &str, res: &Value, ops: Value) -> ScimType {
    fail_as(E, rt, res, ops)
}

fn fail_as(p: &Profile, rt: &str, res: &Value, ops: Value) -> ScimType {
    let mut copy = res.clone();
    let before = copy.to_string();
    let e = run_as(p, rt, &mut copy, ops).expect_err("the PATCH should fail");
    assert_eq!(copy.to_string(), before, "a failed PATCH must leave the resource as it was");
    assert_eq!(e.status_code(), 400, "{}", e.detail);
    e.scim_type.unwrap()
}

fn schemas_of(res: &Value) -> Vec<&str> {
    res["schemas"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect()
}

fn ext(attr: &str) -> String {
    format!("{ENTERPRISE_USER}:{attr}")
}

// --- parsing -------------------------------------------------------------------------

#[test]
fn parse_request_is_case_insensitive_and_tolerates_schemas() {
    let ops = parse_request(
        &json!({"operations": [
            {"op": "Add", "path": "emails", "value": []},
            {"OP": "replace", "value": {"active": false}},
            {"op": "REMOVE", "path": "  "},
            {"op": "remove", "path": null},
        ]}),
        E,
    )
    .unwrap();
    assert_eq!(
        ops.iter().map(|o| o.op).collect::<Vec<_>>(),
        [OpKind::Add, OpKind::Replace, OpKind::Remove, OpKind::Remove]
    );
    assert!(matches!(&ops[0].path, Some(PatchPath::Attribute { attr, filter: None }) if attr.name == "emails"));
    assert!(ops[1].path.is_none() && ops[2].path.is_none() && ops[3].path.is_none());
    assert_eq!(ops[1].value, Some(json!({"active": false})));
    let ops =
        parse_request(&json!({"schemas": ["urn:wrong"], "Operations": [{"op": "remove", "path": "x"}]}), E).unwrap();
    assert_eq!(ops.len(), 1);
}

#[test]
fn parse_request_rejects_malformed_bodies() {
    for (body, want) in [
        (json!([]), ScimType::InvalidSyntax),
        (json!({"schemas": [PATCH_OP_SCHEMA]}), ScimType::InvalidSyntax),
        (json!({"Operations": {"op": "add"}}), ScimType::InvalidSyntax),
        (json!({"Operations": []}), ScimType::InvalidSyntax),
        (json!({"Operations": ["add"]}), ScimType::InvalidSyntax),
        (json!({"Operations": [{"path": "title", "value": "x"}]}), ScimType::InvalidSyntax),
        (json!({"Operations": [{"op": "delete", "path": "title"}]}), ScimType::InvalidSyntax),
        (json!({"Operations": [{"op": 1, "path": "title"}]}), ScimType::InvalidSyntax),
        (json!({"Operations": [{"op": "remove", "path": 7}]}), ScimType::InvalidSyntax),
        (json!({"Operations": [{"op": "add", "path": "title"}]}), ScimType::InvalidSyntax),
        (json!({"Operations": [{"op": "replace"}]}), ScimType::InvalidSyntax),
        (json!({"Operations": [{"op": "remove", "path": "a.b.c"}]}), ScimType::InvalidPath),
        (json!({"Operations": [{"op": "remove", "path": "emails[type xx \"w\"]"}]}), ScimType::InvalidFilter),
    ] {
        let e = parse_request(&body, E).expect_err(&body.to_string());
        assert_eq!(e.scim_type, Some(want), "{body}: {}", e.detail);
        assert_eq!(e.status_code(), 400);
    }
    let e =
        parse_request(&json!({"Operations": [{"op": "add", "path": "x", "value": 1}, {"op": "nope"}]}), E).unwrap_err();
    assert!(e.detail.starts_with("operation 2:"), "{}", e.detail);
}

#[test]
fn paths_parse_into_attribute_filter_and_sub() {
    let p = PatchPath::parse(r#"emails[type eq "work"].value"#).unwrap();
    let PatchPath::Attribute { attr, filter: Some(f) } = &p else { panic!("{p:?}") };
    assert_eq!((attr.uri.as_deref(), attr.name.as_str(), attr.sub.as_deref()), (None, "emails", Some("value")));
    assert_eq!(f.to_string(), r#"type eq "work""#);
    assert_eq!(p.to_string(), r#"emails[type eq "work"].value"#);

    let p = PatchPath::parse(&format!("{ENTERPRISE_USER}:manager.value")).unwrap();
    let PatchPath::Attribute { attr, filter: None } = &p else { panic!("{p:?}") };
    assert_eq!(
        (attr.uri.as_deref(), attr.name.as_str(), attr.sub.as_deref()),
        (Some(ENTERPRISE_USER), "manager", Some("value"))
    );
    assert_eq!(p.to_string(), format!("{ENTERPRISE_USER}:manager.value"));

    assert_eq!(
        PatchPath::parse(&ENTERPRISE_USER.to_lowercase()).unwrap(),
        PatchPath::Schema(ENTERPRISE_USER.to_owned())
    );
    // A ']' inside a quoted value does not close the filter.
    let p = PatchPath::parse(r#"members[value eq "a]b"]"#).unwrap();
    let PatchPath::Attribute { filter: Some(f), .. } = &p else { panic!("{p:?}") };
    assert_eq!(f.to_string(), r#"value eq "a]b""#);

    for (bad_path, want) in [
        ("", ScimType::InvalidPath),
        ("1abc", ScimType::InvalidPath),
        ("name.givenName.x", ScimType::InvalidPath),
        (r#"emails.value[type eq "x"]"#, ScimType::InvalidPath),
        (r#"emails[type eq "x""#, ScimType::InvalidPath),
        (r#"emails[type eq "x"]value"#, ScimType::InvalidPath),
        (r#"emails[type eq "x"].1"#, ScimType::InvalidPath),
        (":userName", ScimType::InvalidPath),
        ("urn:x:", ScimType::InvalidPath),
        ("emails[type eq]", ScimType::InvalidFilter),
    ] {
        let e = PatchPath::parse(bad_path).expect_err(bad_path);
        assert_eq!(e.scim_type, Some(want), "{bad_path:?}: {}", e.detail);
    }
    assert!(PatchPath::parse(&"a".repeat(MAX_PATH_LEN + 1)).is_err());
}

// --- Entra ID, bodies verbatim from scim-interop.md -----------------------------------

#[test]
fn entra_replace_active_with_a_string_boolean() {
    let mut u = user();
    let changed = ok_body(
        "User",
        &mut u,
        r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Replace","path":"active","value":"False"}]}"#,
    );
    assert_eq!(u["active"], json!(false));
    assert_eq!(changed, ["active"]);
}

const ENTRA_UPDATE: &str = r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[
 {"op":"Replace","path":"emails[type eq \"work\"].value","value":"updatedEmail@microsoft.com"},
 {"op":"Replace","path":"name.familyName","value":"updatedFamilyName"},
 {"op":"Replace","path":"addresses[type eq \"work\"].formatted","value":"18/2111"},
 {"op":"Add","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department","value":"Retail"}]}"#;

#[test]
fn entra_update_replaces_matches_and_adds_where_nothing_matches() {
    let mut u = user();
    let changed = ok_body("User", &mut u, ENTRA_UPDATE);
    // The work email existed: its value is replaced in place, the rest kept.
    assert_eq!(
        u["emails"],
        json!([
            {"value": "updatedEmail@microsoft.com", "type": "work", "primary": true},
            {"value": "babs@jensen.org", "type": "home"}
        ])
    );
    assert_eq!(
        u["name"],
        json!({"formatted": "Ms. Barbara J Jensen, III", "familyName": "updatedFamilyName", "givenName": "Barbara"})
    );
    // No work address: one is added, built from the filter.
    assert_eq!(
        u["addresses"],
        json!([
            {"type": "home", "streetAddress": "456 Hollywood Blvd", "locality": "Hollywood"},
            {"type": "work", "formatted": "18/2111"}
        ])
    );
    assert_eq!(u[ENTERPRISE_USER], json!({"department": "Retail"}));
    assert_eq!(schemas_of(&u), [USER, ENTERPRISE_USER]);
    assert_eq!(changed, ["addresses", "emails", "name", &ext("department")]);
}

#[test]
fn entra_replace_of_a_missing_work_email_adds_it() {
    let mut u = user();
    u["emails"] = json!([{"value": "babs@jensen.org", "type": "home"}]);
    ok_body("User", &mut u, ENTRA_UPDATE);
    assert_eq!(
        u["emails"],
        json!([{"value": "babs@jensen.org", "type": "home"}, {"type": "work", "value": "updatedEmail@microsoft.com"}])
    );
    // Without any emails at all.
    let mut u = user();
    u.as_object_mut().unwrap().remove("emails");
    ok_body("User", &mut u, ENTRA_UPDATE);
    assert_eq!(u["emails"], json!([{"type": "work", "value": "updatedEmail@microsoft.com"}]));
}

#[test]
fn entra_no_path_replace_with_dotted_and_urn_keys() {
    let mut u = user();
    let changed = ok_body(
        "User",
        &mut u,
        r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[
 {"op":"replace","value":{"displayName":"Bjfe","name.givenName":"Kkom","name.familyName":"Unua",
   "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber":"Aklq"}}]}"#,
    );
    assert_eq!(u["displayName"], "Bjfe");
    assert_eq!(u["name"], json!({"formatted": "Ms. Barbara J Jensen, III", "givenName": "Kkom", "familyName": "Unua"}));
    assert_eq!(u[ENTERPRISE_USER], json!({"employeeNumber": "Aklq"}));
    assert_eq!(schemas_of(&u), [USER, ENTERPRISE_USER]);
    assert_eq!(changed, ["displayName", "name", &ext("employeeNumber")]);
}

#[test]
fn entra_manager_as_a_bare_string() {
    let mut u = user();
    let changed = ok_body(
        "User",
        &mut u,
        r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[
 {"op":"add","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager","value":"2c2f6fb8-254f-492e-b7fe-c09c5a61c8a2"}]}"#,
    );
    assert_eq!(u[ENTERPRISE_USER], json!({"manager": {"value": "2c2f6fb8-254f-492e-b7fe-c09c5a61c8a2"}}));
    assert_eq!(schemas_of(&u), [USER, ENTERPRISE_USER]);
    assert_eq!(changed, [ext("manager")]);

    // A new manager replaces the old one whole: the old displayName and $ref go.
    let mut u = enterprise_user();
    ok("User", &mut u, json!([{"op": "add", "path": "manager", "value": "m2"}]));
    assert_eq!(u[ENTERPRISE_USER]["manager"], json!({"value": "m2"}));
    // The same manager again merges: what was stored stays.
    let mut u = enterprise_user();
    let before = u.clone();
    let changed = ok("User", &mut u, json!([{"op": "add", "path": "manager", "value": {"value": MANAGER_ID}}]));
    assert_eq!(u, before);
    assert!(changed.is_empty());
}

#[test]
fn entra_adds_members_dropping_null_sub_attributes() {
    let mut g = group();
    let changed = ok_body(
        "Group",
        &mut g,
        r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[
 {"op":"Add","path":"members","value":[{"$ref":null,"value":"f648f8d5ea4e4cd38e9c"}]}]}"#,
    );
    let members = g["members"].as_array().unwrap();
    assert_eq!(members.len(), 3);
    assert_eq!(members[2], json!({"value": "f648f8d5ea4e4cd38e9c"}));
    assert_eq!(changed, ["members"]);
    // Entra retries: the same body again adds no second copy.
    let changed = ok(
        "Group",
        &mut g,
        json!([{"op": "Add", "path": "members", "value": [{"$ref": null, "value": "f648f8d5ea4e4cd38e9c"}]}]),
    );
    assert_eq!(g["members"].as_array().unwrap().len(), 3);
    assert!(changed.is_empty());
}

#[test]
fn entra_remove_with_a_value_array_removes_only_those_members() {
    let mut g = group();
    g["members"].as_array_mut().unwrap().push(json!({"value": "u1091"}));
    let changed = ok_body(
        "Group",
        &mut g,
        r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[
 {"op":"Remove","path":"members","value":[{"value":"u1091"}]}]}"#,
    );
    assert_eq!(g["members"], group()["members"]);
    assert_eq!(changed, ["members"]);
    // Values match case-insensitively (members.value is not caseExact), and only the
    // listed ones go even when several are listed.
    let mut g = group();
    ok(
        "Group",
        &mut g,
        json!([{"op": "remove", "path": "members", "value": [{"value": BABS.to_uppercase()}, {"value": "nobody"}]}]),
    );
    assert_eq!(g["members"].as_array().unwrap().len(), 1);
    assert_eq!(g["members"][0]["value"], MANDY);
    // Listing every member removes them all, and the group survives.
    ok("Group", &mut g, json!([{"op": "remove", "path": "members", "value": [{"value": MANDY}]}]));
    assert!(g.get("members").is_none());
    assert_eq!(g["displayName"], "Tour Guides");
}

#[test]
fn entra_remove_member_by_value_filter() {
    let mut g = group();
    g["members"].as_array_mut().unwrap().push(json!({"value": "7f4bc1a3-285e-48ae-8202-5accb43efb0e"}));
    let changed = ok_body(
        "Group",
        &mut g,
        r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[
 {"op":"remove","path":"members[value eq \"7f4bc1a3-285e-48ae-8202-5accb43efb0e\"]"}]}"#,
    );
    assert_eq!(g["members"], group()["members"]);
    assert_eq!(changed, ["members"]);
}

#[test]
fn entra_short_manager_paths() {
    // A filter that does not match the manager removes nothing.
    let mut u = enterprise_user();
    let changed = ok("User", &mut u, json!([{"op": "remove", "path": "manager[value eq \"someone-else\"]"}]));
    assert!(changed.is_empty());
    assert_eq!(u, enterprise_user());
    // One that matches removes it.
    ok("User", &mut u, json!([{"op": "remove", "path": format!("manager[value eq \"{MANAGER_ID}\"]")}]));
    assert!(u[ENTERPRISE_USER].get("manager").is_none());
    assert_eq!(u[ENTERPRISE_USER]["department"], "Tour Operations");
    // The short path `manager`; the last extension attribute going takes the
    // extension and its URN with it.
    let mut u = enterprise_user();
    let changed = ok(
        "User",
        &mut u,
        json!([{"op": "Remove", "path": "manager"}, {"op": "remove", "path": "department"}, {"op": "remove", "path": "employeeNumber"}]),
    );
    assert!(u.get(ENTERPRISE_USER).is_none());
    assert_eq!(schemas_of(&u), [USER]);
    assert_eq!(changed, [ext("department"), ext("employeeNumber"), ext("manager")]);
}

#[test]
fn entra_roles_with_string_booleans() {
    let mut u = user();
    ok(
        "User",
        &mut u,
        json!([{"op": "add", "path": "roles", "value": [
            {"primary": "False", "type": "WindowsAzureActiveDirectoryRole", "value": "Member", "display": "Member"}
        ]}]),
    );
    assert_eq!(
        u["roles"],
        json!([{"primary": false, "type": "WindowsAzureActiveDirectoryRole", "value": "Member", "display": "Member"}])
    );
}

// --- Okta, bodies verbatim from scim-interop.md ---------------------------------------

#[test]
fn okta_no_path_replace_active() {
    let mut u = user();
    let changed = ok_body_as(
        &Profile::OKTA,
        "User",
        &mut u,
        r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","value":{"active":false}}]}"#,
    );
    assert_eq!(u["active"], json!(false));
    assert_eq!(changed, ["active"]);
}

#[test]
fn okta_no_path_replace_carrying_the_own_id() {
    let mut g = group();
    g["id"] = json!("abf4dd94-a4c0-4f67-89c9-76b03340cb9b");
    let changed = ok_body_as(
        &Profile::OKTA,
        "Group",
        &mut g,
        r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[
 {"op":"replace","value":{"id":"abf4dd94-a4c0-4f67-89c9-76b03340cb9b","displayName":"Test SCIMv2"}}]}"#,
    );
    assert_eq!(g["displayName"], "Test SCIMv2");
    assert_eq!(g["id"], "abf4dd94-a4c0-4f67-89c9-76b03340cb9b");
    assert_eq!(changed, ["displayName"]);
    // Another id is a mutability error, and nothing is applied.
    let t = fail_as(
        &Profile::OKTA,
        "Group",
        &g,
        json!([{"op": "replace", "value": {"id": "other", "displayName": "Changed"}}]),
    );
    assert_eq!(t, ScimType::Mutability);
}

#[test]
fn okta_remove_then_add_members() {
    let mut g = group();
    g["members"].as_array_mut().unwrap().push(json!({"value": "89bb1940-b905-4575-9e7f-6f887cfb368e"}));
    let changed = ok_body_as(
        &Profile::OKTA,
        "Group",
        &mut g,
        r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[
 {"op":"remove","path":"members[value eq \"89bb1940-b905-4575-9e7f-6f887cfb368e\"]"},
 {"op":"add","path":"members","value":[{"value":"23a35c27-23d3-4c03-b4c5-6443c09e7173","display":"test.user@okta.local"}]}]}"#,
    );
    let values: Vec<&str> = g["members"].as_array().unwrap().iter().map(|m| m["value"].as_str().unwrap()).collect();
    assert_eq!(values, [BABS, MANDY, "23a35c27-23d3-4c03-b4c5-6443c09e7173"]);
    assert_eq!(g["members"][2]["display"], "test.user@okta.local");
    assert_eq!(changed, ["members"]);
}

#[test]
fn okta_replace_members_with_nothing_empties_the_group() {
    let mut g = group();
    let changed = ok_body_as(
        &Profile::OKTA,
        "Group",
        &mut g,
        r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"members","value":[]}]}"#,
    );
    assert!(g.get("members").is_none());
    assert_eq!(changed, ["members"]);
}

#[test]
fn okta_password_change_is_stored_as_given() {
    let mut u = user();
    let changed =
        ok_as(&Profile::OKTA, "User", &mut u, json!([{"op": "replace", "value": {"password": "t1meMa$heen"}}]));
    assert_eq!(u["password"], "t1meMa$heen");
    assert_eq!(changed, ["password"]);
}

// --- RFC 7644 §3.5.2 examples ----------------------------------------------------------

#[test]
fn rfc_add_member() {
    let mut g = group();
    ok_as(
        RFC,
        "Group",
        &mut g,
        json!([{"op": "add", "path": "members", "value": [{
            "display": "Babs Jensen", "$ref": "https://example.com/v2/Users/2819c223...", "value": "2819c223-7f76-453a-919d-413861904646x"
        }]}]),
    );
    assert_eq!(g["members"].as_array().unwrap().len(), 3);
    assert_eq!(g["members"][2]["$ref"], "https://example.com/v2/Users/2819c223...");
}

#[test]
fn rfc_add_without_path() {
    let mut u = user();
    let changed = ok_as(
        RFC,
        "User",
        &mut u,
        json!([{"op": "add", "value": {
            "emails": [{"value": "babs@jensen.org", "type": "home"}, {"value": "barbara@example.org", "type": "other"}],
            "nickName": "Babs"
        }}]),
    );
    // The home email was there already: only the new one is appended.
    assert_eq!(
        u["emails"],
        json!([
            {"value": "bjensen@example.com", "type": "work", "primary": true},
            {"value": "babs@jensen.org", "type": "home"},
            {"value": "barbara@example.org", "type": "other"}
        ])
    );
    assert_eq!(u["nickName"], "Babs");
    assert_eq!(changed, ["emails", "nickName"]);
}

#[test]
fn rfc_remove_all_members() {
    let mut g = group();
    ok_as(RFC, "Group", &mut g, json!([{"op": "remove", "path": "members"}]));
    assert!(g.get("members").is_none());
    assert_eq!(g["displayName"], "Tour Guides");
}

#[test]
fn rfc_remove_by_value_filters() {
    let mut g = group();
    ok_as(RFC, "Group", &mut g, json!([{"op": "remove", "path": format!("members[value eq \"{BABS}\"]")}]));
    assert_eq!(g["members"].as_array().unwrap().len(), 1);
    assert_eq!(g["members"][0]["value"], MANDY);

    let mut u = user();
    ok_as(
        RFC,
        "User",
        &mut u,
        json!([{"op": "remove", "path": "emails[type eq \"work\" and value ew \"EXAMPLE.com\"]"}]),
    );
    assert_eq!(u["emails"], json!([{"value": "babs@jensen.org", "type": "home"}]));
}

#[test]
fn rfc_replace_all_members_by_remove_then_add() {
    let mut g = group();
    ok_as(
        RFC,
        "Group",
        &mut g,
        json!([
            {"op": "remove", "path": "members"},
            {"op": "add", "path": "members", "value": [{"display": "James Smith", "value": "08e1d05d"}, {"display": "Tom", "value": "c2"}]}
        ]),
    );
    assert_eq!(
        g["members"],
        json!([{"display": "James Smith", "value": "08e1d05d"}, {"display": "Tom", "value": "c2"}])
    );
}

#[test]
fn rfc_replace_members() {
    let mut g = group();
    ok_as(
        RFC,
        "Group",
        &mut g,
        json!([{"op": "replace", "path": "members", "value": [{"display": "James Smith", "value": "08e1d05d"}]}]),
    );
    assert_eq!(g["members"], json!([{"display": "James Smith", "value": "08e1d05d"}]));
}

#[test]
fn rfc_replace_a_value_by_filter() {
    let mut u = user();
    u["addresses"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "work", "streetAddress": "100 Universal City Plaza", "locality": "Hollywood"}));
    ok_as(
        RFC,
        "User",
        &mut u,
        json!([{"op": "replace", "path": "addresses[type eq \"work\"]", "value": {
            "type": "work", "streetAddress": "911 Universal City Plaza", "locality": "Hollywood", "region": "CA",
            "postalCode": "91608", "country": "US", "formatted": "911 Universal City Plaza\nHollywood, CA 91608 US", "primary": true
        }}]),
    );
    assert_eq!(u["addresses"][0], user()["addresses"][0]);
    assert_eq!(u["addresses"][1]["streetAddress"], "911 Universal City Plaza");
    assert_eq!(u["addresses"][1]["primary"], true);
    assert_eq!(u["addresses"][1]["postalCode"], "91608");
    assert_eq!(u["addresses"].as_array().unwrap().len(), 2);
}

#[test]
fn rfc_replace_a_sub_attribute_by_filter() {
    let mut u = user();
    ok_as(
        RFC,
        "User",
        &mut u,
        json!([{"op": "replace", "path": "addresses[type eq \"home\"].streetAddress", "value": "1010 Broadway Ave"}]),
    );
    assert_eq!(
        u["addresses"],
        json!([{"type": "home", "streetAddress": "1010 Broadway Ave", "locality": "Hollywood"}])
    );
}

#[test]
fn rfc_replace_without_path() {
    let mut u = user();
    ok_as(
        RFC,
        "User",
        &mut u,
        json!([{"op": "replace", "value": {
            "emails": [{"value": "bjensen@example.com", "type": "work", "primary": true}, {"value": "babs@jensen.org", "type": "other"}],
            "nickName": "Babs"
        }}]),
    );
    assert_eq!(
        u["emails"],
        json!([{"value": "bjensen@example.com", "type": "work", "primary": true}, {"value": "babs@jensen.org", "type": "other"}])
    );
    assert_eq!(u["nickName"], "Babs");
}

// --- semantics -------------------------------------------------------------------------

#[test]
fn add_appends_bare_values_and_skips_duplicates() {
    let mut u = user();
    let changed = ok(
        "User",
        &mut u,
        json!([
            {"op": "add", "path": "emails", "value": {"value": "bjensen@example.com", "type": "work", "primary": true}},
            {"op": "add", "path": "emails", "value": [{"value": "x@example.com"}, {"value": "x@example.com"}]}
        ]),
    );
    assert_eq!(u["emails"].as_array().unwrap().len(), 3);
    assert_eq!(u["emails"][2], json!({"value": "x@example.com"}));
    assert_eq!(changed, ["emails"]);
    // A bare string for a complex multi-valued attribute is its value.
    ok("User", &mut u, json!([{"op": "add", "path": "phoneNumbers", "value": "555-555-5555"}]));
    assert_eq!(u["phoneNumbers"], json!([{"value": "555-555-5555"}]));
}

#[test]
fn complex_values_merge_and_null_removes_on_replace() {
    let mut u = user();
    ok(
        "User",
        &mut u,
        json!([{"op": "replace", "path": "name", "value": {"givenName": "Babs", "formatted": null, "middleName": "Jane"}}]),
    );
    assert_eq!(u["name"], json!({"familyName": "Jensen", "givenName": "Babs", "middleName": "Jane"}));
    // add ignores nulls.
    ok("User", &mut u, json!([{"op": "add", "path": "name", "value": {"familyName": null, "honorificSuffix": "III"}}]));
    assert_eq!(
        u["name"],
        json!({"familyName": "Jensen", "givenName": "Babs", "middleName": "Jane", "honorificSuffix": "III"})
    );
}

#[test]
fn null_means_absent() {
    let mut u = user();
    let changed = ok("User", &mut u, json!([{"op": "add", "value": {"title": null, "nickName": "B"}}]));
    assert!(u.get("title").is_none());
    assert_eq!(changed, ["nickName"]);
    ok("User", &mut u, json!([{"op": "replace", "path": "nickName", "value": null}]));
    assert!(u.get("nickName").is_none());
    ok("User", &mut u, json!([{"op": "replace", "value": {"displayName": null}}]));
    assert!(u.get("displayName").is_none());
    ok("User", &mut u, json!([{"op": "replace", "path": "name.formatted", "value": null}]));
    assert!(u["name"].get("formatted").is_none());
    ok("User", &mut u, json!([{"op": "replace", "path": "emails[type eq \"home\"]", "value": null}]));
    assert_eq!(u["emails"].as_array().unwrap().len(), 1);
}

#[test]
fn single_element_arrays_for_single_values() {
    let mut u = user();
    ok("User", &mut u, json!([{"op": "replace", "path": "displayName", "value": ["Babs"]}]));
    assert_eq!(u["displayName"], "Babs");
    assert_eq!(
        fail("User", &u, json!([{"op": "replace", "path": "displayName", "value": ["a", "b"]}])),
        ScimType::InvalidValue
    );
}

#[test]
fn add_with_a_filter_merges_into_matches() {
    let mut u = user();
    ok("User", &mut u, json!([{"op": "add", "path": "emails[type eq \"home\"]", "value": {"display": "Home"}}]));
    assert_eq!(u["emails"][1], json!({"value": "babs@jensen.org", "type": "home", "display": "Home"}));
    // No match: the value is appended as given.
    ok(
        "User",
        &mut u,
        json!([{"op": "add", "path": "emails[type eq \"other\"]", "value": {"value": "o@example.com", "type": "other"}}]),
    );
    assert_eq!(u["emails"][2], json!({"value": "o@example.com", "type": "other"}));
}

#[test]
fn sub_attribute_without_filter_on_a_multi_valued_attribute() {
    let mut u = user();
    ok("User", &mut u, json!([{"op": "remove", "path": "emails.type"}]));
    assert_eq!(u["emails"], json!([{"value": "bjensen@example.com", "primary": true}, {"value": "babs@jensen.org"}]));
    ok("User", &mut u, json!([{"op": "replace", "path": "emails.display", "value": "E"}]));
    assert!(u["emails"].as_array().unwrap().iter().all(|e| e["display"] == "E"));
    ok("User", &mut u, json!([{"op": "add", "path": "ims.value", "value": "babs-im"}]));
    assert_eq!(u["ims"], json!([{"value": "babs-im"}]));
}

#[test]
fn value_filters_evaluate_operators_and_case() {
    let cases = [
        (r#"emails[value co "JENSEN"]"#, vec!["bjensen@example.com", "babs@jensen.org"]),
        (r#"emails[value sw "babs"]"#, vec!["babs@jensen.org"]),
        (r#"emails[value ew ".ORG"]"#, vec!["babs@jensen.org"]),
        (r#"emails[type ne "work"]"#, vec!["babs@jensen.org"]),
        (r#"emails[primary pr]"#, vec!["bjensen@example.com"]),
        (r#"emails[primary eq true]"#, vec!["bjensen@example.com"]),
        (r#"emails[primary eq "True"]"#, vec!["bjensen@example.com"]),
        (r#"emails[not (primary eq true)]"#, vec!["babs@jensen.org"]),
        (r#"emails[type eq "home" or type eq "work"]"#, vec!["bjensen@example.com", "babs@jensen.org"]),
        (r#"emails[value gt "bb"]"#, vec!["bjensen@example.com"]),
        (r#"emails[display eq null]"#, vec!["bjensen@example.com", "babs@jensen.org"]),
        (r#"emails[type eq "WORK" and primary eq false]"#, vec![]),
    ];
    for (path, removed) in cases {
        let mut u = user();
        ok("User", &mut u, json!([{"op": "remove", "path": path}]));
        let left: Vec<&str> = u
            .get("emails")
            .and_then(Value::as_array)
            .map_or(vec![], |a| a.iter().map(|e| e["value"].as_str().unwrap()).collect());
        let expect: Vec<&str> =
            ["bjensen@example.com", "babs@jensen.org"].into_iter().filter(|v| !removed.contains(v)).collect();
        assert_eq!(left, expect, "{path}");
    }
}

#[test]
fn one_primary_at_most() {
    // A new primary value demotes the old one.
    let mut u = user();
    ok(
        "User",
        &mut u,
        json!([{"op": "add", "path": "emails", "value": [{"value": "new@example.com", "primary": true}]}]),
    );
    let prim: Vec<&Value> = u["emails"].as_array().unwrap().iter().map(|e| &e["primary"]).collect();
    assert_eq!(prim, [&json!(false), &Value::Null, &json!(true)]);
    // Setting primary on an existing value through a filter.
    let mut u = user();
    ok("User", &mut u, json!([{"op": "replace", "path": "emails[type eq \"home\"].primary", "value": "true"}]));
    assert_eq!(u["emails"][0]["primary"], false);
    assert_eq!(u["emails"][1]["primary"], true);
    // Two primaries in one value: the last wins.
    let mut u = user();
    ok(
        "User",
        &mut u,
        json!([{"op": "replace", "path": "emails", "value": [
            {"value": "a@example.com", "primary": true}, {"value": "b@example.com", "primary": true}
        ]}]),
    );
    assert_eq!(
        u["emails"],
        json!([{"value": "a@example.com", "primary": false}, {"value": "b@example.com", "primary": true}])
    );
}

#[test]
fn a_retried_primary_write_settles_on_the_same_value() {
    // Found by `operations_are_idempotent`: one operation making two values primary.
    let mut u = user();
    ok(
        "User",
        &mut u,
        json!([{"op": "add", "path": "emails", "value": {"value": "b@x.org", "type": "home", "primary": "True"}}]),
    );
    let op = json!([{"op": "replace", "path": "emails[type eq \"home\"].primary", "value": true}]);
    let primaries = |u: &Value| -> Vec<String> {
        u["emails"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["primary"] == true)
            .map(|e| e["value"].to_string())
            .collect()
    };
    ok("User", &mut u, op.clone());
    // Both home values were written primary; the last of them wins.
    assert_eq!(primaries(&u), ["\"b@x.org\""]);
    let once = u.clone();
    let changed = ok("User", &mut u, op);
    assert_eq!(u, once);
    assert!(changed.is_empty());
}

#[test]
fn extension_lifecycle_keeps_schemas_in_step() {
    let mut u = user();
    ok(
        "User",
        &mut u,
        json!([{"op": "add", "path": ENTERPRISE_USER, "value": {
            "schemas": [ENTERPRISE_USER], "employeeNumber": "42", "costCenter": "CC"
        }}]),
    );
    assert_eq!(u[ENTERPRISE_USER], json!({"employeeNumber": "42", "costCenter": "CC"}));
    assert_eq!(schemas_of(&u), [USER, ENTERPRISE_USER]);
    // Replace on the extension replaces the attributes given, leaves the others.
    let changed = ok(
        "User",
        &mut u,
        json!([{"op": "replace", "path": ENTERPRISE_USER, "value": {"schemas": [ENTERPRISE_USER], "costCenter": "DD"}}]),
    );
    assert_eq!(u[ENTERPRISE_USER], json!({"employeeNumber": "42", "costCenter": "DD"}));
    assert_eq!(changed, [ext("costCenter")]);
    // A no-path value keyed by the URN.
    ok("User", &mut u, json!([{"op": "add", "value": {ENTERPRISE_USER: {"division": "Div"}}}]));
    assert_eq!(u[ENTERPRISE_USER]["division"], "Div");
    // Removing the whole extension.
    let changed = ok("User", &mut u, json!([{"op": "remove", "path": ENTERPRISE_USER}]));
    assert!(u.get(ENTERPRISE_USER).is_none());
    assert_eq!(schemas_of(&u), [USER]);
    assert_eq!(changed, [ext("costCenter"), ext("division"), ext("employeeNumber")]);
    // Removing an extension attribute that is not there changes nothing.
    let changed = ok("User", &mut u, json!([{"op": "remove", "path": ext("department")}]));
    assert!(changed.is_empty());
    assert_eq!(u, {
        let mut x = user();
        x["schemas"] = json!([USER]);
        x
    });
    // A resource without `schemas` gets one when an extension appears.
    let mut bare = json!({"id": "1", "userName": "x"});
    ok("User", &mut bare, json!([{"op": "add", "path": "department", "value": "D"}]));
    assert_eq!(bare["schemas"], json!([USER, ENTERPRISE_USER]));
}

#[test]
fn names_and_ops_are_case_insensitive_and_stored_canonically() {
    let mut u = user();
    let changed = ok(
        "User",
        &mut u,
        json!([
            {"op": "REPLACE", "path": "USERNAME", "value": "babs"},
            {"op": "Add", "path": "Name.GivenName", "value": "B"},
            {"op": "replace", "path": "EMAILS[TYPE eq \"work\"].VALUE", "value": "w@example.com"},
            {"op": "add", "path": ENTERPRISE_USER.to_uppercase() + ":DEPARTMENT", "value": "D"},
            {"op": "add", "value": {"NICKNAME": "nick", "PhoneNumbers": [{"VALUE": "555", "Type": "work"}]}}
        ]),
    );
    assert_eq!(u["userName"], "babs");
    assert_eq!(u["name"]["givenName"], "B");
    assert_eq!(u["emails"][0]["value"], "w@example.com");
    assert_eq!(u[ENTERPRISE_USER], json!({"department": "D"}));
    assert_eq!(u["nickName"], "nick");
    assert_eq!(u["phoneNumbers"], json!([{"value": "555", "type": "work"}]));
    assert_eq!(schemas_of(&u), [USER, ENTERPRISE_USER]);
    for k in ["USERNAME", "NICKNAME", "PhoneNumbers"] {
        assert!(u.get(k).is_none(), "{k}");
    }
    assert_eq!(changed, ["emails", "name", "nickName", "phoneNumbers", &ext("department"), "userName"]);
    // A stored key in another casing is found and renamed.
    let mut odd = json!({"id": "1", "username": "x", "schemas": [USER]});
    ok("User", &mut odd, json!([{"op": "replace", "path": "userName", "value": "y"}]));
    assert_eq!(odd, json!({"id": "1", "userName": "y", "schemas": [USER]}));
}

#[test]
fn a_failing_operation_undoes_the_earlier_ones() {
    let u = enterprise_user();
    let mut copy = u.clone();
    let e = run(
        "User",
        &mut copy,
        json!([
            {"op": "replace", "path": "displayName", "value": "changed"},
            {"op": "remove", "path": "department"},
            {"op": "replace", "path": "active", "value": "yes"}
        ]),
    )
    .unwrap_err();
    assert_eq!(e.scim_type, Some(ScimType::InvalidValue));
    assert!(e.detail.starts_with("operation 3:"), "{}", e.detail);
    assert_eq!(copy.to_string(), u.to_string());
}

#[test]
fn errors_carry_the_right_scim_type() {
    let u = enterprise_user();
    let g = group();
    for (rt, res, ops, want) in [
        ("User", &u, json!([{"op": "add", "path": "bogus", "value": "x"}]), ScimType::InvalidPath),
        ("User", &u, json!([{"op": "remove", "path": "name.bogus"}]), ScimType::InvalidPath),
        ("User", &u, json!([{"op": "remove", "path": "bogus[value eq \"x\"]"}]), ScimType::InvalidPath),
        (
            "User",
            &u,
            json!([{"op": "replace", "path": "userName[value eq \"x\"]", "value": "y"}]),
            ScimType::InvalidPath,
        ),
        ("User", &u, json!([{"op": "replace", "value": {"bogus": 1}}]), ScimType::InvalidPath),
        ("User", &u, json!([{"op": "add", "path": format!("{GROUP}:members"), "value": "x"}]), ScimType::InvalidPath),
        (
            "Group",
            &g,
            json!([{"op": "add", "path": ENTERPRISE_USER, "value": {"department": "x"}}]),
            ScimType::InvalidPath,
        ),
        ("Group", &g, json!([{"op": "add", "path": "department", "value": "x"}]), ScimType::InvalidPath),
        ("User", &u, json!([{"op": "remove", "path": USER}]), ScimType::InvalidPath),
        ("User", &u, json!([{"op": "remove", "path": "emails[bogus eq \"x\"]"}]), ScimType::InvalidFilter),
        ("User", &u, json!([{"op": "remove", "path": "emails[primary co \"t\"]"}]), ScimType::InvalidFilter),
        (
            "User",
            &u,
            json!([{"op": "remove", "path": "emails[type eq \"w\" and emails[type pr]]"}]),
            ScimType::InvalidFilter,
        ),
        (
            "User",
            &u,
            json!([{"op": "replace", "path": "meta", "value": {"resourceType": "Group"}}]),
            ScimType::Mutability,
        ),
        ("User", &u, json!([{"op": "remove", "path": "meta.created"}]), ScimType::Mutability),
        ("User", &u, json!([{"op": "replace", "path": "id", "value": "other"}]), ScimType::Mutability),
        ("User", &u, json!([{"op": "remove", "path": "id"}]), ScimType::Mutability),
        ("User", &u, json!([{"op": "add", "path": "groups", "value": [{"value": "g1"}]}]), ScimType::Mutability),
        ("User", &u, json!([{"op": "add", "path": "schemas", "value": [ENTERPRISE_USER]}]), ScimType::Mutability),
        ("User", &u, json!([{"op": "replace", "path": "manager.displayName", "value": "Boss"}]), ScimType::Mutability),
        ("User", &u, json!([{"op": "replace", "path": "active", "value": "yes"}]), ScimType::InvalidValue),
        ("User", &u, json!([{"op": "replace", "path": "active", "value": 1}]), ScimType::InvalidValue),
        ("User", &u, json!([{"op": "replace", "path": "userName", "value": {"a": 1}}]), ScimType::InvalidValue),
        ("User", &u, json!([{"op": "replace", "path": "name", "value": "Babs"}]), ScimType::InvalidValue),
        ("User", &u, json!([{"op": "add", "path": "emails", "value": [{"bogus": 1}]}]), ScimType::InvalidValue),
        ("User", &u, json!([{"op": "add", "path": "emails", "value": [[{"value": "x"}]]}]), ScimType::InvalidValue),
        ("User", &u, json!([{"op": "add", "path": ENTERPRISE_USER, "value": "x"}]), ScimType::InvalidValue),
        ("User", &u, json!([{"op": "remove", "path": "userName"}]), ScimType::Mutability),
        ("User", &u, json!([{"op": "replace", "value": {"userName": null}}]), ScimType::InvalidValue),
        ("Group", &g, json!([{"op": "remove", "path": "displayName"}]), ScimType::Mutability),
        ("User", &u, json!([{"op": "remove"}]), ScimType::NoTarget),
        (
            "User",
            &u,
            json!([{"op": "replace", "path": "emails[type eq \"x\" or type eq \"y\"].value", "value": "v"}]),
            ScimType::NoTarget,
        ),
        ("User", &u, json!([{"op": "add", "value": "x"}]), ScimType::InvalidSyntax),
        ("User", &u, json!([{"op": "replace", "value": [{"userName": "x"}]}]), ScimType::InvalidSyntax),
    ] {
        assert_eq!(fail(rt, res, ops.clone()), want, "{ops}");
    }
}

#[test]
fn read_only_writes_that_change_nothing_are_accepted() {
    let mut u = user();
    let before = u.clone();
    let changed = ok(
        "User",
        &mut u,
        json!([
            {"op": "replace", "value": {"id": BABS, "groups": [], "schemas": ["urn:whatever"], "meta": {"resourceType": "User"}}},
            {"op": "replace", "path": "id", "value": BABS}
        ]),
    );
    assert!(changed.is_empty());
    assert_eq!(u, before);
    // Read-only parts of a writable value are ignored, not stored.
    let mut u = user();
    ok("User", &mut u, json!([{"op": "add", "path": "manager", "value": {"value": "m", "displayName": "Boss"}}]));
    assert_eq!(u[ENTERPRISE_USER]["manager"], json!({"value": "m"}));
}

#[test]
fn immutable_member_parts_are_set_once() {
    let g = group();
    assert_eq!(
        fail(
            "Group",
            &g,
            json!([{"op": "replace", "path": format!("members[value eq \"{BABS}\"].display"), "value": "Other"}])
        ),
        ScimType::Mutability
    );
    assert_eq!(
        fail("Group", &g, json!([{"op": "remove", "path": format!("members[value eq \"{BABS}\"].value")}])),
        ScimType::Mutability
    );
    assert_eq!(
        fail(
            "Group",
            &g,
            json!([{"op": "replace", "path": format!("members[value eq \"{BABS}\"]"), "value": {"value": "someone-else"}}])
        ),
        ScimType::Mutability
    );
    // Unassigned, `type` may be set on every member; once set, not changed.
    let mut typed = group();
    ok("Group", &mut typed, json!([{"op": "replace", "path": "members.type", "value": "User"}]));
    assert!(typed["members"].as_array().unwrap().iter().all(|m| m["type"] == "User"));
    assert_eq!(
        fail("Group", &typed, json!([{"op": "replace", "path": "members.type", "value": "Group"}])),
        ScimType::Mutability
    );
    // The same value again is no change; an unassigned part may be set.
    let mut g = group();
    g["members"].as_array_mut().unwrap().push(json!({"value": "u3"}));
    ok(
        "Group",
        &mut g,
        json!([
            {"op": "replace", "path": format!("members[value eq \"{BABS}\"].display"), "value": "Babs Jensen"},
            {"op": "add", "path": "members[value eq \"u3\"].display", "value": "User Three"}
        ]),
    );
    assert_eq!(g["members"][0], group()["members"][0]);
    assert_eq!(g["members"][2], json!({"value": "u3", "display": "User Three"}));
    // Whole members still come and go.
    ok(
        "Group",
        &mut g,
        json!([{"op": "remove", "path": "members[value eq \"u3\"]"}, {"op": "add", "path": "members", "value": {"value": "u4", "type": "User"}}]),
    );
    assert_eq!(g["members"][2], json!({"value": "u4", "type": "User"}));
}

#[test]
fn removing_what_is_absent_succeeds_and_changes_nothing() {
    let mut u = user();
    let before = u.to_string();
    for path in [
        "nickName",
        "emails[type eq \"other\"]",
        "phoneNumbers",
        "phoneNumbers[type eq \"work\"].value",
        "name.middleName",
        "x509Certificates.value",
        "manager",
        ENTERPRISE_USER,
    ] {
        let changed = ok("User", &mut u, json!([{"op": "remove", "path": path}]));
        assert!(changed.is_empty(), "{path}");
        assert_eq!(u.to_string(), before, "{path}");
    }
}

// --- RFC 7644's SHALLs under `generic`, and the profiles' departures ------------------

const PROFILES: [&Profile; 3] = [RFC, &Profile::OKTA, E];

/// The three cases where fedkey used to depart from a SHALL for every client.
#[test]
fn generic_keeps_the_three_shalls() {
    // §3.5.2.1: adding a member the group has changes nothing (the stored member
    // carries `$ref` and `display`, the request only `value`), under every profile.
    for p in PROFILES {
        let mut g = group();
        let before = g.clone();
        let changed = ok_as(p, "Group", &mut g, json!([{"op": "add", "path": "members", "value": [{"value": BABS}]}]));
        assert_eq!((changed, &g), (vec![], &before), "{}", p.name);
    }
    // §3.5.2.3: a replace whose value filter matches nothing is 400 noTarget…
    let fax = json!([{"op": "replace", "path": "emails[type eq \"fax\"].value", "value": "+1 555"}]);
    assert_eq!(fail_as(RFC, "User", &user(), fax.clone()), ScimType::NoTarget);
    assert_eq!(fail_as(&Profile::OKTA, "User", &user(), fax.clone()), ScimType::NoTarget);
    // …with or without a sub-attribute, and on a single complex attribute too.
    let whole = json!([{"op": "replace", "path": "emails[type eq \"fax\"]", "value": {"value": "f@x", "type": "fax"}}]);
    assert_eq!(fail_as(RFC, "User", &user(), whole), ScimType::NoTarget);
    let boss =
        json!([{"op": "replace", "path": format!("{}[value eq \"nobody\"].value", ext("manager")), "value": "x"}]);
    assert_eq!(fail_as(RFC, "User", &enterprise_user(), boss), ScimType::NoTarget);
    // A filter that matches is still replaced, under the RFC.
    let mut u = user();
    ok_as(
        RFC,
        "User",
        &mut u,
        json!([{"op": "replace", "path": "emails[type eq \"home\"].value", "value": "b@j.org"}]),
    );
    assert_eq!(u["emails"][1]["value"], "b@j.org");
    // Under Entra's profile the unmatched replace adds the value the filter describes.
    let mut u = user();
    assert_eq!(ok_as(E, "User", &mut u, fax), ["emails"]);
    assert_eq!(u["emails"][2], json!({"type": "fax", "value": "+1 555"}));
    // §3.5.2.2: removing a required attribute is 400 mutability, under every profile.
    for p in PROFILES {
        assert_eq!(fail_as(p, "User", &user(), json!([{"op": "remove", "path": "userName"}])), ScimType::Mutability);
        assert_eq!(
            fail_as(p, "Group", &group(), json!([{"op": "remove", "path": "displayName"}])),
            ScimType::Mutability
        );
    }
}

/// §3.5.2: a PATCH that changes nothing reports no change (so no write, no new
/// version): an identical add, a replace with the same value, a remove of what is
/// absent without a filter.
#[test]
fn no_op_operations_change_nothing_under_every_profile() {
    let cases: Vec<(&str, Value, Value)> = vec![
        ("Group", group(), json!([{"op": "add", "path": "members", "value": [{"value": MANDY}, {"value": BABS}]}])),
        (
            "Group",
            group(),
            json!([{"op": "add", "path": "members", "value": [{"value": BABS, "display": "Babs Jensen"}]}]),
        ),
        ("Group", group(), json!([{"op": "replace", "path": "displayName", "value": "Tour Guides"}])),
        (
            "User",
            user(),
            json!([{"op": "add", "path": "emails", "value": [{"value": "BJensen@example.com", "type": "work"}]}]),
        ),
        (
            "User",
            user(),
            json!([{"op": "add", "path": "emails", "value": [{"value": "babs@jensen.org", "type": "home"}]}]),
        ),
        ("User", user(), json!([{"op": "replace", "path": "active", "value": true}])),
        ("User", user(), json!([{"op": "replace", "path": "name.givenName", "value": "Barbara"}])),
        (
            "User",
            user(),
            json!([{"op": "replace", "value": {"displayName": "Babs Jensen", "name": {"familyName": "Jensen"}}}]),
        ),
        ("User", user(), json!([{"op": "replace", "path": "emails", "value": user()["emails"].clone()}])),
        ("User", user(), json!([{"op": "remove", "path": "title"}])),
        ("User", user(), json!([{"op": "remove", "path": "phoneNumbers"}])),
        ("User", user(), json!([{"op": "remove", "path": "name.middleName"}])),
        ("User", user(), json!([{"op": "remove", "path": ext("department")}])),
        ("User", enterprise_user(), json!([{"op": "add", "path": ext("manager"), "value": {"value": MANAGER_ID}}])),
    ];
    for p in PROFILES {
        for (rt, start, ops) in &cases {
            let mut res = start.clone();
            let changed = ok_as(p, rt, &mut res, ops.clone());
            assert!(changed.is_empty(), "{} {ops}: {changed:?}", p.name);
            assert_eq!(&res, start, "{} {ops}", p.name);
        }
    }
    // The same operations on a resource without those values do change it.
    let mut g = group();
    g["members"] = json!([{"value": BABS}]);
    assert_eq!(ok_as(RFC, "Group", &mut g, cases[0].2.clone()), ["members"]);
    assert_eq!(g["members"].as_array().unwrap().len(), 2);
}

/// Each departure: refused under `generic` and `okta` with the RFC's scimType, taken
/// under `entra`.
#[test]
fn each_departure_is_taken_only_where_the_profile_allows_it() {
    let member_remove = json!([{"op": "remove", "path": "members", "value": [{"value": BABS}]}]);
    let cases: Vec<(&str, Value, Value, ScimType)> = vec![
        // Capitalised ops.
        ("User", user(), json!([{"op": "Replace", "path": "displayName", "value": "B"}]), ScimType::InvalidSyntax),
        ("User", user(), json!([{"op": "ADD", "path": "title", "value": "Boss"}]), ScimType::InvalidSyntax),
        // String booleans, at a path, inside a value, inside a no-path value.
        ("User", user(), json!([{"op": "replace", "path": "active", "value": "False"}]), ScimType::InvalidValue),
        (
            "User",
            user(),
            json!([{"op": "add", "path": "roles", "value": [{"value": "Member", "primary": "false"}]}]),
            ScimType::InvalidValue,
        ),
        ("User", user(), json!([{"op": "replace", "value": {"active": "false"}}]), ScimType::InvalidValue),
        // Remove with a value.
        ("Group", group(), member_remove.clone(), ScimType::InvalidSyntax),
        // The manager forms: no URN, and a bare value.
        (
            "User",
            enterprise_user(),
            json!([{"op": "add", "path": "manager", "value": {"value": MANDY}}]),
            ScimType::InvalidPath,
        ),
        (
            "User",
            enterprise_user(),
            json!([{"op": "remove", "path": format!("manager[value eq \"{MANAGER_ID}\"]")}]),
            ScimType::InvalidPath,
        ),
        ("User", user(), json!([{"op": "replace", "value": {"employeeNumber": "42"}}]), ScimType::InvalidPath),
        ("User", user(), json!([{"op": "add", "path": ext("manager"), "value": MANDY}]), ScimType::InvalidValue),
    ];
    for (rt, start, ops, want) in &cases {
        for p in [RFC, &Profile::OKTA] {
            assert_eq!(fail_as(p, rt, start, ops.clone()), *want, "{} {ops}", p.name);
            let mut copy = start.clone();
            let e = run_as(p, rt, &mut copy, ops.clone()).unwrap_err();
            assert!(e.detail.contains("the entra profile allows it"), "{}", e.detail);
        }
        let mut res = start.clone();
        assert!(!ok_as(E, rt, &mut res, ops.clone()).is_empty(), "entra {ops}");
    }
    // Entra's member removal removes only the members named.
    let mut g = group();
    ok_as(E, "Group", &mut g, member_remove);
    assert_eq!(g["members"].as_array().unwrap().iter().map(|m| &m["value"]).collect::<Vec<_>>(), [MANDY]);
    // The strict forms of the same requests pass everywhere.
    for p in PROFILES {
        let mut g = group();
        ok_as(p, "Group", &mut g, json!([{"op": "remove", "path": format!("members[value eq \"{BABS}\"]")}]));
        assert_eq!(g["members"].as_array().unwrap().len(), 1);
        let mut u = enterprise_user();
        ok_as(
            p,
            "User",
            &mut u,
            json!([
                {"op": "replace", "path": "active", "value": false},
                {"op": "add", "path": ext("manager"), "value": {"value": MANDY}},
                {"op": "remove", "path": "emails[type eq \"home\"]"}
            ]),
        );
        assert_eq!((&u["active"], &u[ENTERPRISE_USER]["manager"]["value"]), (&json!(false), &json!(MANDY)));
    }
}

#[test]
fn a_resource_that_is_not_an_object_is_an_internal_error() {
    let mut v = json!([1]);
    let e = apply(resource_type("User").unwrap(), &mut v, &[], E).unwrap_err();
    assert_eq!(e.status_code(), 500);
    assert_eq!(v, json!([1]));
}

// --- properties ------------------------------------------------------------------------

fn user_ops() -> Vec<Value> {
    vec![
        json!({"op": "add", "path": "emails", "value": [{"value": "a@x.org", "type": "work", "primary": true}]}),
        json!({"op": "add", "path": "emails", "value": {"value": "b@x.org", "type": "home", "primary": "True"}}),
        json!({"op": "replace", "path": "emails[type eq \"work\"].value", "value": "w@x.org"}),
        json!({"op": "replace", "path": "emails[type eq \"home\"].primary", "value": true}),
        json!({"op": "remove", "path": "emails[type eq \"home\"]"}),
        json!({"op": "remove", "path": "emails", "value": [{"value": "A@X.org"}]}),
        json!({"op": "replace", "path": "emails", "value": []}),
        json!({"op": "Replace", "path": "active", "value": "False"}),
        json!({"op": "replace", "path": "active", "value": "maybe"}),
        json!({"op": "add", "path": ext("department"), "value": "Retail"}),
        json!({"op": "remove", "path": ext("department")}),
        json!({"op": "add", "path": ext("manager"), "value": "m1"}),
        json!({"op": "add", "path": "manager", "value": {"value": "m2", "displayName": "x"}}),
        json!({"op": "remove", "path": "manager"}),
        json!({"op": "remove", "path": "manager[value eq \"m1\"]"}),
        json!({"op": "replace", "value": {"name.givenName": "K", ext("employeeNumber"): "7"}}),
        json!({"op": "replace", "path": ENTERPRISE_USER, "value": {"schemas": [ENTERPRISE_USER], "costCenter": "c"}}),
        json!({"op": "remove", "path": ENTERPRISE_USER}),
        json!({"op": "replace", "path": "meta", "value": {"resourceType": "Group"}}),
        json!({"op": "replace", "path": "id", "value": "other"}),
        json!({"op": "replace", "value": {"id": BABS}}),
        json!({"op": "remove", "path": "nickName"}),
        json!({"op": "add", "path": "nickName", "value": "Babs"}),
        json!({"op": "remove", "path": "userName"}),
        json!({"op": "add", "path": "bogus", "value": "x"}),
        json!({"op": "remove"}),
        json!({"op": "add", "path": "phoneNumbers[type eq \"work\"].value", "value": "555"}),
        json!({"op": "replace", "path": "name", "value": {"familyName": "F", "givenName": null}}),
        json!({"op": "remove", "path": "name.familyName"}),
        json!({"op": "add", "value": {"emails": [{"value": "c@x.org", "primary": true}], "title": "T"}}),
        json!({"op": "replace", "path": "addresses[type eq \"work\"]", "value": {"type": "work", "locality": "L", "primary": true}}),
        json!({"op": "remove", "path": "emails.primary"}),
    ]
}

fn group_ops() -> Vec<Value> {
    vec![
        json!({"op": "add", "path": "members", "value": [{"$ref": null, "value": "u1"}]}),
        json!({"op": "add", "path": "members", "value": [{"value": "u2", "display": "Two"}]}),
        json!({"op": "remove", "path": "members", "value": [{"value": "U1"}]}),
        json!({"op": "remove", "path": format!("members[value eq \"{BABS}\"]")}),
        json!({"op": "remove", "path": "members"}),
        json!({"op": "replace", "path": "members", "value": []}),
        json!({"op": "replace", "path": "members[value eq \"u2\"].display", "value": "Deux"}),
        json!({"op": "replace", "value": {"id": "e9e30dba-f08f-4109-8486-d5c6a331660a", "displayName": "G"}}),
        json!({"op": "replace", "value": {"id": "nope"}}),
        json!({"op": "add", "path": "department", "value": "x"}),
        json!({"op": "remove", "path": "displayName"}),
        json!({"op": "replace", "path": "externalId", "value": "ext-1"}),
    ]
}

/// What must hold of any resource a successful PATCH leaves.
fn check_invariants(rt: &ResourceTypeDef, res: &Value) -> Result<(), TestCaseError> {
    let obj = res.as_object().unwrap();
    for (k, v) in obj {
        prop_assert!(tidied(v.clone()).as_ref() == Some(v), "{} holds nulls or empty values: {}", k, v);
        if let Value::Array(a) = v {
            let primaries = a.iter().filter(|e| e.get("primary") == Some(&json!(true))).count();
            prop_assert!(primaries <= 1, "{} has {} primary values", k, primaries);
        }
    }
    for (id, _) in rt.extensions {
        let present = obj.get(*id).is_some();
        let listed = obj["schemas"].as_array().unwrap().iter().any(|s| s == id);
        prop_assert_eq!(present, listed, "{} present {} listed {}", id, present, listed);
    }
    let required = if rt.id == "User" { "userName" } else { "displayName" };
    prop_assert!(obj.contains_key(required), "{} is gone", required);
    prop_assert!(obj.contains_key("id") && obj.contains_key("meta"));
    Ok(())
}

fn run_sequence(
    p: &Profile,
    rt_name: &str,
    start: Value,
    pool: &[Value],
    picks: &[usize],
) -> Result<(), TestCaseError> {
    let rt = resource_type(rt_name).unwrap();
    let mut res = start;
    for chunk in picks.chunks(3) {
        let ops: Vec<Value> = chunk.iter().map(|&i| pool[i % pool.len()].clone()).collect();
        let before = res.to_string();
        let before_value = res.clone();
        let outcome = parse_request(&json!({"Operations": ops}), p).and_then(|ops| apply(rt, &mut res, &ops, p));
        match outcome {
            Err(e) => {
                prop_assert_eq!(res.to_string(), before, "failed with {:?} yet changed the resource", e.detail);
                prop_assert_eq!(e.status_code(), 400);
                prop_assert!(e.scim_type.is_some());
            }
            Ok(changed) => {
                check_invariants(rt, &res)?;
                let mut sorted = changed.clone();
                sorted.sort();
                sorted.dedup();
                prop_assert_eq!(&sorted, &changed);
                prop_assert_eq!(changed.is_empty(), res == before_value, "changed {:?}", changed);
                for name in &changed {
                    let (b, a) = match name.strip_prefix(&format!("{ENTERPRISE_USER}:")) {
                        Some(inner) => (&before_value[ENTERPRISE_USER][inner], &res[ENTERPRISE_USER][inner]),
                        None => (&before_value[name.as_str()], &res[name.as_str()]),
                    };
                    prop_assert_ne!(b, a, "{} listed as changed", name);
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn user_sequences_fail_atomically_and_keep_invariants(picks in prop::collection::vec(0usize..1000, 1..12), ext in any::<bool>(), strict in any::<bool>()) {
        let start = if ext { enterprise_user() } else { user() };
        run_sequence(if strict { RFC } else { E }, "User", start, &user_ops(), &picks)?;
    }

    #[test]
    fn group_sequences_fail_atomically_and_keep_invariants(picks in prop::collection::vec(0usize..1000, 1..12), strict in any::<bool>()) {
        run_sequence(if strict { RFC } else { E }, "Group", group(), &group_ops(), &picks)?;
    }

    /// Clients retry: applying an operation a second time changes nothing more.
    #[test]
    fn operations_are_idempotent(prefix in prop::collection::vec(0usize..1000, 0..6), pick in 0usize..1000) {
        let pool = user_ops();
        let rt = resource_type("User").unwrap();
        let mut res = enterprise_user();
        for &i in &prefix {
            let ops = parse_request(&json!({"Operations": [pool[i % pool.len()].clone()]}), E).unwrap();
            let _ = apply(rt, &mut res, &ops, E);
        }
        let ops = parse_request(&json!({"Operations": [pool[pick % pool.len()].clone()]}), E).unwrap();
        if apply(rt, &mut res, &ops, E).is_ok() {
            let once = res.clone();
            let again = apply(rt, &mut res, &ops, E);
            prop_assert!(again.is_ok(), "{:?}", again.err().map(|e| e.detail));
            prop_assert_eq!(&res, &once, "{}", pool[pick % pool.len()]);
            prop_assert!(again.unwrap_or_default().is_empty());
        }
    }

    #[test]
    fn arbitrary_bodies_never_panic(body in arb_json(), ext in any::<bool>()) {
        let mut res = if ext { enterprise_user() } else { user() };
        let before = res.to_string();
        if let Ok(ops) = parse_request(&body, E)
            && apply(resource_type("User").unwrap(), &mut res, &ops, E).is_err()
        {
            prop_assert_eq!(res.to_string(), before);
        }
    }
}

/// JSON made of PATCH-ish pieces: real keys, paths and values mixed with junk.
fn arb_json() -> impl Strategy<Value = Value> {
    let key = prop::sample::select(vec![
        "op",
        "path",
        "value",
        "Operations",
        "schemas",
        "userName",
        "emails",
        "name.givenName",
        "active",
        "members",
        "value",
        "type",
        "primary",
        "display",
        "$ref",
        "id",
        "meta",
        "manager",
        ENTERPRISE_USER,
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
        "bogus",
    ]);
    let scalar = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(|n| json!(n)),
        prop::sample::select(vec![
            "add",
            "Remove",
            "REPLACE",
            "emails",
            "emails[type eq \"work\"].value",
            "members[value eq \"x\"]",
            "name",
            "manager",
            "active",
            "True",
            "work",
            "x",
            "",
            "emails[",
            "urn:x:y",
            ENTERPRISE_USER,
            "addresses[type eq \"work\"]",
            "userName",
            "id",
            "meta.created",
            "emails[primary eq true].type",
        ])
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    scalar.prop_recursive(4, 40, 5, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..5)
                .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        ]
    })
}

// --- one filter semantics ---------------------------------------------------------------

/// Complex attributes a PATCH value filter can select from: resource type, schema URN to
/// name it with (extension attributes need theirs), name, and its sub-attributes.
fn filterable() -> Vec<(&'static str, Option<&'static str>, &'static str, Vec<&'static str>)> {
    vec![
        ("User", None, "emails", vec!["value", "type", "primary", "display"]),
        ("User", None, "phoneNumbers", vec!["value", "type", "primary"]),
        ("User", None, "roles", vec!["value", "display", "primary"]),
        ("User", None, "x509Certificates", vec!["value", "primary"]),
        ("User", None, "addresses", vec!["type", "locality", "postalCode", "primary"]),
        ("User", None, "name", vec!["givenName", "familyName"]),
        ("User", Some(ENTERPRISE_USER), "manager", vec!["value", "displayName", "$ref"]),
        ("Group", None, "members", vec!["value", "display", "type", "$ref"]),
    ]
}

/// Stored values with case variants, numbers, booleans (real and as Entra's strings),
/// dateTimes in several offsets and precisions, empties and nulls.
fn arb_stored() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(vec![
            "work",
            "Work",
            "WORK",
            "home",
            "x@Y.example",
            "x@y.example",
            "",
            "True",
            "false",
            "42",
            "é",
            "É",
            "2011-05-13T04:42:34Z",
            "2011-05-13T06:42:34+02:00",
            "2011-05-13T04:42:34.000Z",
            "2024-02-29T23:59:59Z",
            "https://x.example/Users/u1",
            "u1",
            "U1",
        ])
        .prop_map(|s| json!(s)),
        prop::sample::select(vec![json!(0), json!(42), json!(-2), json!(1.5), json!(42.0), json!(1e3)]),
        any::<bool>().prop_map(Value::Bool),
        Just(Value::Null),
    ]
}

fn arb_literal() -> impl Strategy<Value = CompValue> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "work", "WORK", "x@y.EXAMPLE", "", "True", "42", "é", "2011-05-13T04:42:34Z",
            "2011-05-13T06:42:34+02:00", "https://x.example", "u1", "w",
        ])
        .prop_map(|s| CompValue::Str(s.into())),
        2 => prop::sample::select(vec![0i64, 42, -2]).prop_map(|n| CompValue::Num(n.into())),
        1 => prop::sample::select(vec![1.5f64, 42.0]).prop_map(|n| CompValue::Num(serde_json::Number::from_f64(n).unwrap())),
        2 => any::<bool>().prop_map(CompValue::Bool),
        1 => Just(CompValue::Null),
    ]
}

/// Random value filters over `subs` (in random letter case), with the odd unknown
/// sub-attribute, qualified path or nested filter, which both sides must reject alike.
fn arb_value_filter(subs: Vec<&'static str>) -> BoxedStrategy<Filter> {
    let sub = prop_oneof![19 => prop::sample::select(subs), 1 => Just("bogus")];
    let name = (sub, any::<bool>(), 0u8..60).prop_map(|(n, upper, odd)| match odd {
        0 => AttrPath { uri: None, name: n.into(), sub: Some("value".into()) },
        1 => AttrPath { uri: Some(USER.into()), name: n.into(), sub: None },
        _ => AttrPath { uri: None, name: if upper { n.to_uppercase() } else { n.into() }, sub: None },
    });
    use CompareOp::*;
    let op = prop::sample::select(vec![Eq, Eq, Eq, Ne, Ne, Co, Sw, Ew, Gt, Ge, Lt, Le]);
    let leaf = prop_oneof![
        1 => name.clone().prop_map(Filter::Present),
        4 => (name.clone(), op, arb_literal()).prop_map(|(p, o, v)| Filter::Compare(p, o, v)),
    ];
    leaf.prop_recursive(3, 12, 2, move |inner| {
        prop_oneof![
            6 => (inner.clone(), inner.clone()).prop_map(|(a, b)| Filter::And(Box::new(a), Box::new(b))),
            6 => (inner.clone(), inner.clone()).prop_map(|(a, b)| Filter::Or(Box::new(a), Box::new(b))),
            4 => inner.clone().prop_map(|a| Filter::Not(Box::new(a))),
            // Invalid inside a value filter.
            1 => (name.clone(), inner).prop_map(|(p, a)| Filter::ValuePath(p, Box::new(a))),
        ]
    })
    .boxed()
}

/// Stored values of a complex attribute: objects with some of its sub-attributes (keys in
/// any case), and the odd non-object a store may hold.
fn arb_elements(subs: Vec<&'static str>) -> impl Strategy<Value = Vec<Value>> {
    let member = (prop::sample::select(subs), any::<bool>(), arb_stored())
        .prop_map(|(k, upper, v)| (if upper { k.to_uppercase() } else { k.to_owned() }, v));
    let object = prop::collection::vec(member, 0..4).prop_map(|kv| Value::Object(kv.into_iter().collect()));
    let element = prop_oneof![8 => object, 1 => arb_stored()];
    prop::collection::vec(element, 0..5)
}

/// What PATCH selects (its own resolution and selection code) and what the list
/// evaluator's `attr[filter]` matches on a resource holding one value at a time.
#[allow(clippy::type_complexity)]
fn both_selections(
    rt: &ResourceTypeDef,
    uri: Option<&str>,
    name: &str,
    f: &Filter,
    elems: &[Value],
) -> (Result<Vec<bool>, String>, Result<Vec<bool>, String>) {
    let path = AttrPath { uri: uri.map(str::to_owned), name: name.to_owned(), sub: None };
    let engine = apply::Engine::new(rt, Profile::RFC);
    let patch = engine
        .resolve(&path, Some(f))
        .map(|t| resolve::selected(t.filter.as_ref().unwrap(), elems))
        .map_err(|e| e.detail);
    let multi_valued = rt.resolve(&path).is_some_and(|r| r.attribute.multi_valued);
    let whole = Filter::ValuePath(path, Box::new(f.clone()));
    let list = crate::eval::compile(rt, &whole).map_err(|e| e.detail).map(|c| {
        elems
            .iter()
            .map(|e| {
                let value = if multi_valued { json!([e]) } else { e.clone() };
                let resource = match uri {
                    Some(u) => json!({ u: { name: value } }),
                    None => json!({ name: value }),
                };
                c.matches(&resource)
            })
            .collect()
    });
    (patch, list)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// PATCH value filters and list filters are one semantics: on random values (case
    /// variants, numbers, booleans, dateTimes, empties) and random filters (every
    /// operator, pr, and/or/not, invalid paths), PATCH selects exactly the values the list
    /// evaluator matches, and rejects exactly the filters it rejects, with the same error.
    #[test]
    fn patch_selects_what_list_filters_match(
        (i, f, elems) in (0..filterable().len()).prop_flat_map(|i| {
            let subs = filterable()[i].3.clone();
            (Just(i), arb_value_filter(subs.clone()), arb_elements(subs))
        })
    ) {
        let (rt_name, uri, name, _) = filterable()[i].clone();
        let rt = resource_type(rt_name).unwrap();
        let (patch, list) = both_selections(rt, uri, name, &f, &elems);
        prop_assert_eq!(&patch, &list, "{}[{}] over {:?}", name, f, elems);
    }
}

#[test]
fn value_filters_follow_the_list_filter_rules() {
    let rt = resource_type("User").unwrap();
    let mut u = user();
    u["emails"] = json!([
        {"value": "a@x.example", "type": 42},
        {"value": "b@x.example", "type": "42"},
        {"value": "C@X.EXAMPLE", "type": "home", "primary": "True"},
        {"value": "d@x.example", "type": "other", "primary": "yes"},
    ]);
    let remaining = |path: &str| {
        let mut res = u.clone();
        let ops = parse_request(&json!({"Operations": [{"op": "remove", "path": path}]}), E).unwrap();
        apply(rt, &mut res, &ops, E).unwrap();
        res["emails"].as_array().unwrap().iter().map(|e| e["value"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };
    // A stored number is not the string "42": a string attribute compares strings only.
    assert_eq!(remaining(r#"emails[type eq "42"]"#), ["a@x.example", "C@X.EXAMPLE", "d@x.example"]);
    // caseExact false: one Unicode case folding for both sides.
    assert_eq!(
        remaining(r#"emails[value ew "x.EXAMPLE" and value sw "c"]"#),
        ["a@x.example", "b@x.example", "d@x.example"]
    );
    // Booleans: Entra's "True" is true; "yes" is no boolean at all, so neither eq true nor eq false.
    assert_eq!(remaining("emails[primary eq true]"), ["a@x.example", "b@x.example", "d@x.example"]);
    assert_eq!(remaining("emails[primary eq false]").len(), 4);
    assert_eq!(remaining("emails[not (primary pr)]"), ["C@X.EXAMPLE", "d@x.example"]);

    for (path, needle) in [
        ("emails[value gt null]", "only eq and ne compare with null"),
        ("emails[primary gt true]", "does not apply"),
        (r#"emails[bogus eq "x"]"#, "unknown sub-attribute"),
    ] {
        let mut res = u.clone();
        let ops = parse_request(&json!({"Operations": [{"op": "remove", "path": path}]}), E).unwrap();
        let e = apply(rt, &mut res, &ops, E).unwrap_err();
        assert_eq!((e.status_code(), e.scim_type), (400, Some(ScimType::InvalidFilter)), "{path}");
        assert!(e.detail.contains(needle), "{path}: {}", e.detail);
        assert_eq!(res, u, "{path}: nothing written");
    }
}
