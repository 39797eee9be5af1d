//! The rules are written twice: as SQL predicates that narrow searches (for full pages
//! and exact totals) and as the egress gate's decision on each version. This
//! property test draws spaces (documents of several types, labels, depositors,
//! versions, deletions, Consents, lifecycle states, medical profile entries) and
//! callers (every actor, profession, access mode and a narrow scope), and checks that
//! every path agrees with the gate's own answer to a read or vread:
//!
//! - search: the matches are exactly the documents whose read answers 200, and
//!   `total` counts them;
//! - the same search by a chain on the Patient's INS, followed page by page through
//!   its `next` links, and searches and reads inside a batch: the same set;
//! - `_revinclude` from the Patient: the included documents are the same set;
//! - history (the holder's type history, everyone's instance history): the versions
//!   with a body are exactly those whose vread answers 200, and `total` counts the
//!   entries;
//! - the medical profile: its entries searched and `_revinclude`d from the Patient
//!   are exactly those whose read answers 200, and a vread answers as the read.
//!
//! It runs on whichever backend the suite runs on (SQLite, or PostgreSQL with
//! `DMP_TEST_POSTGRES_URL`). `DMP_PROPERTY_CASES` sets the number of drawn spaces
//! (default 12); the draws are the same from run to run unless `DMP_PROPERTY_SEED`
//! says `random` (or another seed).

use std::collections::BTreeSet;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

use crate::support::fixtures::{
    INS, block_professional, document, emergency_setting, nir, patient, permit_professional,
};
use crate::support::{As, TestApp, base_claims, keys, sign};

const GP: &str = "810000000001";
const COLLEAGUE: &str = "810000000002";
const STRANGER: &str = "810000000003";
const DENTIST: &str = "810000000004";
const TYPES: [&str; 3] = ["11488-4", "68599-0", "11502-2"];
const LABELS: [&str; 3] = [
    "MASQUE_PS",
    "INVISIBLE_PATIENT",
    "INVISIBLE_REPRESENTANTS_LEGAUX",
];
const TRE_A07: &str = "https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument";

/// Who deposits a drawn document.
#[derive(Debug, Clone, Copy)]
enum Depositor {
    Gp,
    Colleague,
    Patient,
    System,
}

#[derive(Debug, Clone)]
struct DocPlan {
    depositor: Depositor,
    kind: usize,
    labels: u8,
    /// Later versions: (type, labels) each.
    updates: Vec<(usize, u8)>,
    /// The patient masks it afterwards (PATCH of securityLabel, R-PAT-2).
    masked_by_patient: bool,
    deleted: bool,
}

#[derive(Debug, Clone)]
struct SpacePlan {
    consents: Vec<usize>,
    documents: Vec<DocPlan>,
    /// 0 pending, 1 active, 2 closed, 3 opposed.
    state: usize,
}

fn depositor() -> impl Strategy<Value = Depositor> {
    prop_oneof![
        Just(Depositor::Gp),
        Just(Depositor::Colleague),
        Just(Depositor::Patient),
        Just(Depositor::System),
    ]
}

fn doc_plan() -> impl Strategy<Value = DocPlan> {
    (
        depositor(),
        0..TYPES.len(),
        0u8..8,
        proptest::collection::vec((0..TYPES.len(), 0u8..8), 0..3),
        any::<bool>(),
        proptest::bool::weighted(0.25),
    )
        .prop_map(
            |(depositor, kind, labels, updates, masked_by_patient, deleted)| DocPlan {
                depositor,
                kind,
                labels,
                updates,
                masked_by_patient,
                deleted,
            },
        )
}

fn space_plan() -> impl Strategy<Value = SpacePlan> {
    (
        proptest::collection::btree_set(0usize..6, 0..4),
        proptest::collection::vec(doc_plan(), 1..6),
        prop_oneof![4 => Just(1usize), 1 => Just(0usize), 1 => Just(2usize), 1 => Just(3usize)],
    )
        .prop_map(|(consents, documents, state)| SpacePlan {
            consents: consents.into_iter().collect(),
            documents,
            state,
        })
}

fn professional(id_nat_ps: &str, profession: &str, purpose: Option<&str>) -> As {
    let reason = purpose.map(|_| "urgence vitale");
    As::professional(id_nat_ps, profession, None, purpose, reason)
}

fn feed() -> As {
    let mut claims = base_claims("system", "insurer-feed");
    claims["scope"] = json!("system/Patient.cruds system/DocumentReference.cud system/Binary.c");
    As::Token(sign(&keys().rsa, &claims))
}

fn narrow_app(patient: &str) -> As {
    let mut claims = base_claims("patient", &format!("app-of-{patient}"));
    claims["patient"] = json!(patient);
    claims["scope"] = json!("patient/Patient.rs patient/Consent.rs");
    As::Token(sign(&keys().rsa, &claims))
}

fn labelled(patient: &str, kind: usize, labels: u8, depositor: Depositor) -> Value {
    let mut body = document(patient, TYPES[kind], "2024-01-01");
    let codings: Vec<Value> = LABELS
        .iter()
        .enumerate()
        .filter(|(bit, _)| labels & (1 << bit) != 0)
        .map(|(_, code)| json!({ "system": TRE_A07, "code": code }))
        .collect();
    if !codings.is_empty() {
        body["securityLabel"] = json!([{ "coding": codings }]);
    }
    if matches!(depositor, Depositor::Patient) {
        body["category"][0]["coding"][0]["code"] = json!("90");
    }
    body
}

fn token_of(depositor: Depositor, patient: &str) -> As {
    match depositor {
        Depositor::Gp => professional(GP, "10", None),
        Depositor::Colleague => professional(COLLEAGUE, "10", None),
        Depositor::Patient => As::Patient(patient.to_owned()),
        Depositor::System => feed(),
    }
}

/// A stored List and the documents it names.
type StoredList = (String, Vec<String>);

/// A drawn space as stored: its patient id and NIR, the documents stored (some
/// draws are refused by the rules: a colleague without authorisation deposits
/// nothing), the médecin traitant's Lists of them, and the holder's medical profile
/// entries (type, id).
struct Built {
    patient_id: String,
    nir: String,
    stored: Vec<(String, i64)>,
    lists: Vec<StoredList>,
    profile: Vec<(&'static str, String)>,
}

fn build(app: &TestApp, plan: &SpacePlan) -> Built {
    let nir = nir();
    let patient_id = app.create(
        &As::System,
        &patient(&nir, "Martin", "Claire", "2012-05-01"),
    );
    let holder = As::Patient(patient_id.clone());
    if plan.state != 0 {
        let reply = app.post(
            &format!("Patient/{patient_id}/$activate"),
            &holder,
            &json!({ "resourceType": "Parameters" }),
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    for consent in &plan.consents {
        let body = match consent {
            0 => permit_professional(&patient_id, COLLEAGUE),
            1 => block_professional(&patient_id, COLLEAGUE),
            2 => permit_professional(&patient_id, DENTIST),
            3 => emergency_setting(&patient_id, "deny", "BTG"),
            4 => emergency_setting(&patient_id, "permit", "MASKED"),
            _ => emergency_setting(&patient_id, "deny", "ETREAT"),
        };
        app.create(&holder, &body);
    }
    let mut stored = Vec::new();
    for plan in &plan.documents {
        let who = token_of(plan.depositor, &patient_id);
        let reply = app.post(
            "DocumentReference",
            &who,
            &labelled(&patient_id, plan.kind, plan.labels, plan.depositor),
        );
        if reply.status != 201 {
            assert!(matches!(reply.status, 403), "{}", reply.body);
            continue;
        }
        let id = reply.id();
        let mut version = 1;
        for (kind, labels) in &plan.updates {
            let mut body = labelled(&patient_id, *kind, *labels, plan.depositor);
            body["id"] = json!(id);
            let reply = app.put(&format!("DocumentReference/{id}"), &who, &body);
            assert!(matches!(reply.status, 200 | 403 | 404), "{}", reply.body);
            if reply.status == 200 {
                version += 1;
            }
        }
        if plan.masked_by_patient {
            let reply = app
                .request("PATCH", &format!("DocumentReference/{id}"))
                .as_(&holder)
                .header("Content-Type", "application/json-patch+json")
                .send(Some(
                    json!([{ "op": "add", "path": "/securityLabel/-",
                             "value": { "coding": [{ "system": TRE_A07, "code": "MASQUE_PS" }] } }])
                    .to_string(),
                ));
            let reply = if reply.status == 422 {
                app.request("PATCH", &format!("DocumentReference/{id}"))
                    .as_(&holder)
                    .header("Content-Type", "application/json-patch+json")
                    .send(Some(
                        json!([{ "op": "add", "path": "/securityLabel",
                                 "value": [{ "coding": [{ "system": TRE_A07, "code": "MASQUE_PS" }] }] }])
                        .to_string(),
                    ))
            } else {
                reply
            };
            assert!(matches!(reply.status, 200 | 404), "{}", reply.body);
            if reply.status == 200 {
                version += 1;
            }
        }
        if plan.deleted {
            let reply = app.delete(&format!("DocumentReference/{id}"), &who);
            assert!(matches!(reply.status, 204 | 403 | 404), "{}", reply.body);
            if reply.status == 204 {
                version += 1;
            }
        }
        stored.push((id, version));
    }
    // The médecin traitant's SubmissionSets: one per document, one of them all
    // (R-MHD-5: a List is seen when one of its documents is, and names only those).
    let mut lists = Vec::new();
    let mut groups: Vec<Vec<String>> = stored.iter().map(|(id, _)| vec![id.clone()]).collect();
    groups.push(stored.iter().map(|(id, _)| id.clone()).collect());
    for group in groups.into_iter().filter(|group| !group.is_empty()) {
        let entries: Vec<Value> = group
            .iter()
            .map(|id| json!({ "item": { "reference": format!("DocumentReference/{id}") } }))
            .collect();
        let list = json!({
            "resourceType": "List", "status": "current", "mode": "working",
            "code": { "coding": [{ "system": "https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes", "code": "submissionset" }] },
            "subject": { "reference": format!("Patient/{patient_id}") },
            "entry": entries,
        });
        let reply = app.post("List", &As::doctor(), &list);
        assert_eq!(reply.status, 201, "{}", reply.body);
        lists.push((reply.id(), group));
    }
    // The holder's medical profile: an entry of each of two types.
    let subject = json!({ "reference": format!("Patient/{patient_id}") });
    let profile = vec![
        (
            "Condition",
            app.create(
                &holder,
                &json!({ "resourceType": "Condition", "code": { "text": "Asthme" }, "subject": subject }),
            ),
        ),
        (
            "AllergyIntolerance",
            app.create(
                &holder,
                &json!({ "resourceType": "AllergyIntolerance",
                         "clinicalStatus": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active" }] },
                         "code": { "text": "Pénicilline" }, "patient": subject }),
            ),
        ),
    ];
    let operation = match plan.state {
        2 => Some("$close"),
        3 => Some("$oppose"),
        _ => None,
    };
    if let Some(operation) = operation {
        let reply = app.post(
            &format!("Patient/{patient_id}/{operation}"),
            &holder,
            &json!({ "resourceType": "Parameters" }),
        );
        // A space holding documents is closed, not opposed (R-LIFE-2).
        assert!(matches!(reply.status, 200 | 409), "{}", reply.body);
    }
    Built {
        patient_id,
        nir,
        stored,
        lists,
        profile,
    }
}

/// The callers of a drawn space.
fn callers(patient_id: &str) -> Vec<(&'static str, As)> {
    vec![
        ("patient", As::Patient(patient_id.to_owned())),
        ("representative", As::Representative(patient_id.to_owned())),
        ("narrow app", narrow_app(patient_id)),
        ("médecin traitant", professional(GP, "10", None)),
        ("colleague", professional(COLLEAGUE, "10", None)),
        ("dentist", professional(DENTIST, "40", None)),
        (
            "colleague of a profession outside the matrix",
            professional(COLLEAGUE, "99", None),
        ),
        ("stranger", professional(STRANGER, "10", None)),
        (
            "emergency",
            professional(STRANGER, "10", Some("bris_de_glace")),
        ),
        ("samu", professional(STRANGER, "10", Some("centre_15"))),
        (
            "nurse in emergency",
            professional(STRANGER, "60", Some("bris_de_glace")),
        ),
        ("system", feed()),
        ("insurer", As::Other("insurer".into())),
    ]
}

fn ids_of(bundle: &Value, mode: &str) -> BTreeSet<String> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|entry| entry["search"]["mode"] == mode)
        .filter(|entry| entry["resource"]["resourceType"] == "DocumentReference")
        .map(|entry| entry["resource"]["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Versions that came with a body in a history Bundle, and whether `total` counts
/// its entries.
fn history_versions(bundle: &Value) -> (BTreeSet<(String, i64)>, bool) {
    let entries = bundle["entry"].as_array().cloned().unwrap_or_default();
    let versions = entries
        .iter()
        .filter(|entry| entry.get("resource").is_some())
        .map(|entry| {
            (
                entry["resource"]["id"].as_str().unwrap().to_owned(),
                entry["resource"]["meta"]["versionId"]
                    .as_str()
                    .unwrap()
                    .parse()
                    .unwrap(),
            )
        })
        .collect();
    let total_matches = bundle["total"].as_u64() == Some(entries.len() as u64);
    (versions, total_matches)
}

fn check(app: &TestApp, built: &Built) -> Result<(), String> {
    let Built {
        patient_id,
        nir,
        stored,
        lists,
        profile,
    } = built;
    for (name, who) in callers(patient_id) {
        check_profile(app, patient_id, name, &who, profile)?;
        let read: BTreeSet<String> = stored
            .iter()
            .filter(|(id, _)| app.get(&format!("DocumentReference/{id}"), &who).status == 200)
            .map(|(id, _)| id.clone())
            .collect();
        check_lists(app, patient_id, name, &who, &read, lists)?;
        let vread: BTreeSet<(String, i64)> = stored
            .iter()
            .flat_map(|(id, versions)| (1..=*versions).map(move |v| (id.clone(), v)))
            .filter(|(id, v)| {
                app.get(&format!("DocumentReference/{id}/_history/{v}"), &who)
                    .status
                    == 200
            })
            .collect();
        let search = app.get(
            &format!("DocumentReference?patient={patient_id}&_count=500&_total=accurate"),
            &who,
        );
        if search.status == 200 {
            let bundle = search.json();
            let found = ids_of(&bundle, "match");
            if found != read {
                return Err(format!("{name}: search {found:?}, reads {read:?}"));
            }
            if bundle["total"].as_u64() != Some(found.len() as u64) {
                return Err(format!("{name}: total {} for {found:?}", bundle["total"]));
            }
        } else if !read.is_empty() {
            return Err(format!(
                "{name}: search refused ({}) but reads {read:?}",
                search.status
            ));
        }
        // The same search by a chain on the Patient's INS, page by page through the
        // `next` links, and inside a batch: the same documents.
        let mut paged = BTreeSet::new();
        let mut next = Some(format!(
            "DocumentReference?patient.identifier={INS}|{nir}&_count=2"
        ));
        let mut pages = 0;
        while let Some(url) = next.take() {
            let reply = app.get(&url, &who);
            if reply.status != 200 {
                break;
            }
            let bundle = reply.json();
            paged.extend(ids_of(&bundle, "match"));
            next = crate::support::next_link(&bundle);
            pages += 1;
            assert!(pages < 50, "{name}: paging does not end");
        }
        if paged != read {
            return Err(format!("{name}: pages by chain {paged:?}, reads {read:?}"));
        }
        let mut batch_entries = vec![json!({ "request": { "method": "GET",
            "url": format!("DocumentReference?patient={patient_id}&_count=500") } })];
        batch_entries.extend(stored.iter().map(|(id, _)| {
            json!({ "request": { "method": "GET", "url": format!("DocumentReference/{id}") } })
        }));
        let batch = app.post(
            "",
            &who,
            &json!({ "resourceType": "Bundle", "type": "batch", "entry": batch_entries }),
        );
        if batch.status == 200 {
            let answered = batch.json();
            let entries = answered["entry"].as_array().cloned().unwrap_or_default();
            let searched = ids_of(&entries[0]["resource"], "match");
            let batch_read: BTreeSet<String> = entries[1..]
                .iter()
                .filter_map(|entry| entry["resource"]["id"].as_str().map(str::to_owned))
                .collect();
            if searched != read || batch_read != read {
                return Err(format!(
                    "{name}: batch search {searched:?}, batch reads {batch_read:?}, reads {read:?}"
                ));
            }
        }
        let included = app.get(
            &format!("Patient?_id={patient_id}&_revinclude=DocumentReference:patient&_count=500"),
            &who,
        );
        if included.status == 200 {
            let found = ids_of(&included.json(), "include");
            if found != read {
                return Err(format!("{name}: _revinclude {found:?}, reads {read:?}"));
            }
        }
        let type_history = app.get("DocumentReference/_history?_count=500", &who);
        if type_history.status == 200 {
            let (versions, total_matches) = history_versions(&type_history.json());
            let ours: BTreeSet<(String, i64)> = versions
                .into_iter()
                .filter(|(id, _)| stored.iter().any(|(mine, _)| mine == id))
                .collect();
            if ours != vread || !total_matches {
                return Err(format!(
                    "{name}: type history {ours:?} (total counts entries: {total_matches}), vreads {vread:?}"
                ));
            }
        }
        for (id, _) in stored {
            let history = app.get(&format!("DocumentReference/{id}/_history"), &who);
            let expected: BTreeSet<(String, i64)> = vread
                .iter()
                .filter(|(version_of, _)| version_of == id)
                .cloned()
                .collect();
            if history.status == 200 {
                let (versions, total_matches) = history_versions(&history.json());
                if versions != expected || !total_matches {
                    return Err(format!(
                        "{name}: history of {id} {versions:?} (total counts entries: {total_matches}), vreads {expected:?}"
                    ));
                }
            } else if !expected.is_empty() {
                return Err(format!(
                    "{name}: history of {id} refused ({}) but vreads {expected:?}",
                    history.status
                ));
            }
        }
    }
    Ok(())
}

/// The medical profile for one caller: the entries searched (by `patient`, and
/// included from the Patient) are exactly those read by id, each type's total counts
/// them, and a vread answers as the read does.
fn check_profile(
    app: &TestApp,
    patient_id: &str,
    name: &str,
    who: &As,
    profile: &[(&'static str, String)],
) -> Result<(), String> {
    let mut read = BTreeSet::new();
    for (kind, id) in profile {
        let status = app.get(&format!("{kind}/{id}"), who).status;
        let vread = app.get(&format!("{kind}/{id}/_history/1"), who).status;
        if status != vread {
            return Err(format!("{name}: {kind}/{id} read {status}, vread {vread}"));
        }
        if status == 200 {
            read.insert(format!("{kind}/{id}"));
        }
    }
    let mut searched = BTreeSet::new();
    for kind in ["Condition", "AllergyIntolerance"] {
        let reply = app.get(&format!("{kind}?patient={patient_id}&_total=accurate"), who);
        if reply.status != 200 {
            continue;
        }
        let bundle = reply.json();
        let found: Vec<String> = bundle["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|entry| format!("{kind}/{}", entry["resource"]["id"].as_str().unwrap()))
            .collect();
        if bundle["total"].as_u64() != Some(found.len() as u64) {
            return Err(format!(
                "{name}: {kind} total {} for {found:?}",
                bundle["total"]
            ));
        }
        searched.extend(found);
    }
    if searched != read {
        return Err(format!(
            "{name}: profile searched {searched:?}, read {read:?}"
        ));
    }
    let included = app.get(
        &format!("Patient?_id={patient_id}&_revinclude=Condition:patient&_revinclude=AllergyIntolerance:patient"),
        who,
    );
    if included.status == 200 {
        let found: BTreeSet<String> = included.json()["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|entry| entry["search"]["mode"] == "include")
            .map(|entry| {
                format!(
                    "{}/{}",
                    entry["resource"]["resourceType"].as_str().unwrap(),
                    entry["resource"]["id"].as_str().unwrap()
                )
            })
            .collect();
        if found != read {
            return Err(format!("{name}: profile included {found:?}, read {read:?}"));
        }
    }
    Ok(())
}

/// R-MHD-5 for one caller: the Lists read by id are the Lists searched (total
/// included), exactly those naming a document the caller reads, each naming only
/// the documents the caller reads.
fn check_lists(
    app: &TestApp,
    patient_id: &str,
    name: &str,
    who: &As,
    read: &BTreeSet<String>,
    lists: &[StoredList],
) -> Result<(), String> {
    let mut lists_read = BTreeSet::new();
    for (id, named) in lists {
        let reply = app.get(&format!("List/{id}"), who);
        let expected: BTreeSet<String> = named
            .iter()
            .filter(|doc| read.contains(*doc))
            .cloned()
            .collect();
        if reply.status != 200 {
            if !expected.is_empty() {
                return Err(format!(
                    "{name}: List/{id} refused ({}) but names {expected:?} it reads",
                    reply.status
                ));
            }
            continue;
        }
        let shown: BTreeSet<String> = reply.json()["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|entry| entry["item"]["reference"].as_str())
            .filter_map(|reference| reference.strip_prefix("DocumentReference/"))
            .map(str::to_owned)
            .collect();
        if shown != expected || expected.is_empty() {
            return Err(format!(
                "{name}: List/{id} names {shown:?}, the caller reads {expected:?}"
            ));
        }
        lists_read.insert(id.clone());
    }
    let search = app.get(
        &format!("List?patient={patient_id}&_count=500&_total=accurate"),
        who,
    );
    if search.status == 200 {
        let bundle = search.json();
        let found: BTreeSet<String> = bundle["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|entry| entry["search"]["mode"] == "match")
            .filter_map(|entry| entry["resource"]["id"].as_str().map(str::to_owned))
            .collect();
        if found != lists_read {
            return Err(format!(
                "{name}: List search {found:?}, reads {lists_read:?}"
            ));
        }
        if bundle["total"].as_u64() != Some(found.len() as u64) {
            return Err(format!(
                "{name}: List total {} for {found:?}",
                bundle["total"]
            ));
        }
    } else if !lists_read.is_empty() {
        return Err(format!(
            "{name}: List search refused ({}) but reads {lists_read:?}",
            search.status
        ));
    }
    Ok(())
}

#[test]
fn search_includes_and_histories_agree_with_the_gate_for_drawn_spaces_and_callers() {
    let cases = std::env::var("DMP_PROPERTY_CASES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(12);
    let app = TestApp::new();
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        // Each case builds a real space over HTTP: shrinking would rebuild many.
        max_shrink_iters: 16,
        rng_seed: crate::support::property_seed("DMP_PROPERTY_SEED"),
        ..Config::default()
    });
    runner
        .run(&space_plan(), |plan| {
            let built = build(&app, &plan);
            check(&app, &built).map_err(TestCaseError::fail)
        })
        .unwrap();
}
