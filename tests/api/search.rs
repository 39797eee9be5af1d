//! Search (SPEC §3): parameter types, chaining, paging, totals, sorting, includes,
//! `_summary`, `_elements`, POST `_search`, strict handling, and the patient's
//! narrowing applied inside the query.

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::support::fixtures::{INS, LOINC, document, nir, patient};
use crate::support::{As, TestApp};

fn ids(bundle: &Value) -> Vec<String> {
    crate::support::match_ids(bundle)
}

fn search(app: &TestApp, query: &str, who: &As) -> Value {
    let reply = app.get(query, who);
    assert_eq!(reply.status, 200, "{query}: {}", reply.body);
    let bundle = reply.json();
    assert_eq!(bundle["type"], "searchset");
    bundle
}

struct Population {
    app: TestApp,
    helene: String,
    helene_nir: String,
    jules: String,
}

fn population() -> Population {
    let app = TestApp::new();
    let helene_nir = nir();
    let helene = app.create(
        &As::System,
        &patient(&helene_nir, "Dupont-Hélène", "Hélène", "1980-05-01"),
    );
    let mut body = patient(&nir(), "Martin", "Jules", "1992-11-30");
    body["gender"] = json!("male");
    let jules = app.create(&As::System, &body);
    Population {
        app,
        helene,
        helene_nir,
        jules,
    }
}

#[test]
fn token_search_with_and_without_system() {
    let p = population();
    let doctor = As::doctor();
    assert_eq!(
        ids(&search(
            &p.app,
            &format!("Patient?identifier={INS}|{}", p.helene_nir),
            &doctor
        )),
        vec![p.helene.clone()]
    );
    assert_eq!(
        ids(&search(
            &p.app,
            &format!("Patient?identifier={}", p.helene_nir),
            &doctor
        )),
        vec![p.helene.clone()]
    );
    assert!(
        ids(&search(
            &p.app,
            &format!("Patient?identifier=urn:oid:9.9|{}", p.helene_nir),
            &doctor
        ))
        .is_empty()
    );
    assert_eq!(
        ids(&search(&p.app, "Patient?gender=male", &doctor)),
        vec![p.jules.clone()]
    );
    assert_eq!(
        ids(&search(&p.app, "Patient?gender:not=male", &doctor)),
        vec![p.helene.clone()]
    );
    let both: HashSet<String> = ids(&search(&p.app, "Patient?gender=male,female", &doctor))
        .into_iter()
        .collect();
    assert_eq!(both.len(), 2);
}

#[test]
fn string_search_default_exact_and_contains() {
    let p = population();
    let doctor = As::doctor();
    assert_eq!(
        ids(&search(&p.app, "Patient?given=hel", &doctor)),
        vec![p.helene.clone()],
        "accent- and case-insensitive prefix"
    );
    assert!(
        ids(&search(&p.app, "Patient?given=l%C3%A8ne", &doctor)).is_empty(),
        "default is starts-with"
    );
    assert_eq!(
        ids(&search(&p.app, "Patient?given:contains=lene", &doctor)),
        vec![p.helene.clone()]
    );
    assert_eq!(
        ids(&search(
            &p.app,
            "Patient?given:exact=H%C3%A9l%C3%A8ne",
            &doctor
        )),
        vec![p.helene.clone()]
    );
    assert!(ids(&search(&p.app, "Patient?given:exact=helene", &doctor)).is_empty());
    assert_eq!(
        ids(&search(&p.app, "Patient?family=martin", &doctor)),
        vec![p.jules.clone()]
    );
}

#[test]
fn date_search_prefixes() {
    let p = population();
    let doctor = As::doctor();
    let cases = [
        ("1980-05-01", vec![&p.helene]),
        ("eq1980-05", vec![&p.helene]),
        ("ne1980-05-01", vec![&p.jules]),
        ("gt1990", vec![&p.jules]),
        ("ge1992-11-30", vec![&p.jules]),
        ("lt1992-11-30", vec![&p.helene]),
        ("le1980-05-01", vec![&p.helene]),
        ("lt1900", vec![]),
    ];
    for (value, expected) in cases {
        let found = ids(&search(
            &p.app,
            &format!("Patient?birthdate={value}"),
            &doctor,
        ));
        let expected: Vec<String> = expected.into_iter().cloned().collect();
        assert_eq!(found, expected, "birthdate={value}");
    }
    let both = ids(&search(
        &p.app,
        "Patient?birthdate=ge1980&birthdate=le1993",
        &doctor,
    ));
    assert_eq!(both.len(), 2, "repeated parameters are AND-ed");
}

#[test]
fn reference_and_chained_search() {
    let p = population();
    let doctor = As::doctor();
    let mine = p
        .app
        .create(&doctor, &document(&p.helene, "11488-4", "2024-01-01"));
    let other = p
        .app
        .create(&doctor, &document(&p.jules, "11502-2", "2024-01-02"));
    assert_eq!(
        ids(&search(
            &p.app,
            &format!("DocumentReference?patient={}", p.helene),
            &doctor
        )),
        vec![mine.clone()]
    );
    assert_eq!(
        ids(&search(
            &p.app,
            &format!("DocumentReference?patient=Patient/{}", p.jules),
            &doctor
        )),
        vec![other.clone()]
    );
    assert_eq!(
        ids(&search(
            &p.app,
            &format!("DocumentReference?subject:Patient={}", p.jules),
            &doctor
        )),
        vec![other.clone()]
    );
    let chained = format!(
        "DocumentReference?patient.identifier={INS}%7C{}",
        p.helene_nir
    );
    assert_eq!(ids(&search(&p.app, &chained, &doctor)), vec![mine.clone()]);
    // The same chain naming its target type.
    let typed = format!(
        "DocumentReference?subject:Patient.identifier={INS}%7C{}",
        p.helene_nir
    );
    assert_eq!(ids(&search(&p.app, &typed, &doctor)), vec![mine.clone()]);
    assert_eq!(
        ids(&search(
            &p.app,
            "DocumentReference?patient.family=martin",
            &doctor
        )),
        vec![other.clone()]
    );
    assert_eq!(
        ids(&search(
            &p.app,
            &format!("DocumentReference?subject={}&type={LOINC}|11502-2", p.jules),
            &doctor
        )),
        vec![other.clone()]
    );
    assert!(
        ids(&search(
            &p.app,
            &format!(
                "DocumentReference?subject={}&type={LOINC}|11502-2",
                p.helene
            ),
            &doctor
        ))
        .is_empty()
    );
    assert_eq!(
        ids(&search(
            &p.app,
            &format!("DocumentReference?patient={}&date=lt2024-01-02", p.helene),
            &doctor
        )),
        vec![mine.clone()]
    );
    let second = p
        .app
        .create(&doctor, &document(&p.helene, "11502-2", "2023-12-01"));
    assert_eq!(
        ids(&search(
            &p.app,
            &format!(
                "DocumentReference?patient={}&author=Practitioner/pr-810000000001&_sort=date",
                p.helene
            ),
            &doctor
        )),
        vec![second, mine]
    );
}

#[test]
fn paging_follows_next_links_with_an_exact_total() {
    let p = population();
    let doctor = As::doctor();
    let mut created = HashSet::new();
    for day in 1..=5 {
        created.insert(p.app.create(
            &doctor,
            &document(&p.helene, "11488-4", &format!("2024-01-0{day}")),
        ));
    }
    let mut seen = Vec::new();
    let mut url = format!(
        "DocumentReference?patient={}&_count=2&_total=accurate&_sort=-date",
        p.helene
    );
    let mut pages = 0;
    loop {
        let bundle = search(&p.app, &url, &doctor);
        assert_eq!(bundle["total"], 5);
        pages += 1;
        seen.extend(ids(&bundle));
        match crate::support::next_link(&bundle) {
            Some(next) => url = next,
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 5);
    assert_eq!(seen.iter().cloned().collect::<HashSet<_>>(), created);
    let dates: Vec<String> = seen
        .iter()
        .map(|id| {
            p.app
                .get(&format!("DocumentReference/{id}"), &doctor)
                .json()["date"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let mut sorted = dates.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(dates, sorted, "-date sorts newest first");
}

#[test]
fn sort_by_last_updated_both_ways() {
    let p = population();
    let ascending = ids(&search(&p.app, "Patient?_sort=_lastUpdated", &As::doctor()));
    assert_eq!(ascending, vec![p.helene.clone(), p.jules.clone()]);
    let descending = ids(&search(
        &p.app,
        "Patient?_sort=-_lastUpdated",
        &As::doctor(),
    ));
    assert_eq!(descending, vec![p.jules.clone(), p.helene.clone()]);
    let reply = p.app.get("Patient?_sort=family", &As::doctor());
    assert_eq!(
        reply.status, 400,
        "only date parameters sort: {}",
        reply.body
    );
}

#[test]
fn include_and_revinclude() {
    let p = population();
    let doctor = As::doctor();
    let document_id = p
        .app
        .create(&doctor, &document(&p.helene, "11488-4", "2024-01-01"));
    let bundle = search(
        &p.app,
        &format!(
            "DocumentReference?patient={}&_id={document_id}&_include=DocumentReference:patient",
            p.helene
        ),
        &doctor,
    );
    let entries = bundle["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1]["search"]["mode"], "include");
    assert_eq!(entries[1]["resource"]["id"], p.helene.as_str());
    assert_eq!(bundle["total"], 1, "total counts matches only");
    let bundle = search(
        &p.app,
        &format!(
            "Patient?_id={}&_revinclude=DocumentReference:patient",
            p.helene
        ),
        &doctor,
    );
    let entries = bundle["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1]["resource"]["id"], document_id.as_str());
    let reply = p
        .app
        .get("Patient?_include=DocumentReference:patient", &doctor);
    assert_eq!(
        reply.status, 400,
        "an _include must start with the searched type"
    );
}

#[test]
fn summary_count_and_elements() {
    let p = population();
    let bundle = search(&p.app, "Patient?_summary=count", &As::doctor());
    assert_eq!(bundle["total"], 2);
    assert!(bundle.get("entry").is_none());
    let bundle = search(
        &p.app,
        &format!("Patient?_id={}&_elements=gender", p.helene),
        &As::doctor(),
    );
    let resource = &bundle["entry"][0]["resource"];
    assert_eq!(resource["gender"], "female");
    assert!(resource.get("name").is_none() && resource.get("birthDate").is_none());
    assert_eq!(resource["id"], p.helene.as_str());
    assert!(resource["meta"]["tag"].to_string().contains("SUBSETTED"));
}

#[test]
fn post_search_matches_get_search() {
    let p = population();
    let reply = p
        .app
        .request("POST", "Patient/_search")
        .as_(&As::doctor())
        .header("Content-Type", "application/x-www-form-urlencoded")
        .send(Some("family=martin&_total=accurate".to_owned()));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let bundle = reply.json();
    assert_eq!(ids(&bundle), vec![p.jules.clone()]);
    assert_eq!(bundle["total"], 1);
    let wrong = p
        .app
        .request("POST", "Patient/_search")
        .as_(&As::doctor())
        .fhir()
        .send(Some("{}".into()));
    assert_eq!(wrong.status, 415);
    // `_search` written with its underscore percent-encoded is still the search,
    // not an instance whose id would be "_search".
    let encoded = p
        .app
        .request("POST", "Patient/%5Fsearch")
        .as_(&As::doctor())
        .header("Content-Type", "application/x-www-form-urlencoded")
        .send(Some("family=martin".to_owned()));
    assert_eq!(encoded.status, 200, "{}", encoded.body);
    assert_eq!(ids(&encoded.json()), vec![p.jules.clone()]);
}

#[test]
fn unknown_parameters_fail_when_strict_and_are_dropped_otherwise() {
    let p = population();
    let strict = p
        .app
        .request("GET", "Patient?shoe-size=42")
        .as_(&As::doctor())
        .header("Prefer", "handling=strict")
        .send(None);
    assert_eq!(strict.status, 400, "{}", strict.body);
    assert!(strict.body.contains("shoe-size"));
    let lenient = search(&p.app, "Patient?shoe-size=42&family=martin", &As::doctor());
    assert_eq!(ids(&lenient), vec![p.jules.clone()]);
    let self_link = lenient["link"][0]["url"].as_str().unwrap();
    assert!(
        !self_link.contains("shoe-size") && self_link.contains("family=martin"),
        "{self_link}"
    );
    let invalid_date = p.app.get("Patient?birthdate=30-02-1980", &As::doctor());
    assert_eq!(invalid_date.status, 400);
    assert_eq!(invalid_date.issue_code(), "invalid");
}

#[test]
fn a_patient_search_is_narrowed_in_the_query_with_exact_totals() {
    let p = population();
    let doctor = As::doctor();
    for day in 1..=3 {
        p.app.create(
            &doctor,
            &document(&p.helene, "11488-4", &format!("2024-02-0{day}")),
        );
    }
    for day in 1..=4 {
        p.app.create(
            &doctor,
            &document(&p.jules, "11488-4", &format!("2024-03-0{day}")),
        );
    }
    let me = As::Patient(p.helene.clone());
    let first = search(&p.app, "DocumentReference?_count=2&_total=accurate", &me);
    assert_eq!(
        first["total"], 3,
        "the total counts only what the caller may see"
    );
    assert_eq!(ids(&first).len(), 2, "pages are full");
    let next = crate::support::next_link(&first).expect("a next link");
    let second = search(&p.app, &next, &me);
    assert_eq!(ids(&second).len(), 1);
    // The exact total rides the page; past the last match, with no row to carry
    // it, it is counted alone, the same.
    assert_eq!(second["total"], 3, "{second}");
    let past = search(
        &p.app,
        "DocumentReference?_count=2&_offset=10&_total=accurate",
        &me,
    );
    assert!(ids(&past).is_empty(), "{past}");
    assert_eq!(past["total"], 3, "{past}");
    assert!(
        second["link"]
            .as_array()
            .unwrap()
            .iter()
            .all(|link| link["relation"] != "next")
    );
    // Naming another space finds nothing, through every path.
    for query in [
        format!("DocumentReference?patient={}", p.jules),
        "DocumentReference?patient.family=martin".to_owned(),
        format!("Patient?_id={}", p.jules),
        "Patient?family=martin".to_owned(),
        format!(
            "Patient?_id={}&_revinclude=DocumentReference:patient",
            p.jules
        ),
    ] {
        let bundle = search(&p.app, &query, &me);
        assert!(bundle.get("entry").is_none(), "{query}: {bundle}");
        assert_eq!(bundle["total"], 0, "{query}");
    }
    let summary = search(&p.app, "DocumentReference?_summary=count", &me);
    assert_eq!(summary["total"], 3);
    let own = search(
        &p.app,
        &format!(
            "Patient?_id={}&_revinclude=DocumentReference:patient",
            p.helene
        ),
        &me,
    );
    assert_eq!(own["entry"].as_array().unwrap().len(), 4);
}

#[test]
fn last_updated_and_id_lists() {
    let p = population();
    let doctor = As::doctor();
    let helene = p.app.get(&format!("Patient/{}", p.helene), &doctor).json();
    let stamp = helene["meta"]["lastUpdated"].as_str().unwrap().to_owned();
    let encoded = stamp.replace('+', "%2B");
    assert_eq!(
        ids(&search(
            &p.app,
            &format!("Patient?_lastUpdated={encoded}"),
            &doctor
        )),
        vec![p.helene.clone()]
    );
    assert_eq!(
        ids(&search(
            &p.app,
            &format!("Patient?_lastUpdated=gt{encoded}"),
            &doctor
        )),
        vec![p.jules.clone()]
    );
    assert_eq!(
        ids(&search(
            &p.app,
            &format!("Patient?_lastUpdated=le{encoded}"),
            &doctor
        )),
        vec![p.helene.clone()]
    );
    let both = ids(&search(
        &p.app,
        &format!("Patient?_id={},{}&_sort=_id", p.helene, p.jules),
        &doctor,
    ));
    let mut expected = vec![p.helene.clone(), p.jules.clone()];
    expected.sort();
    assert_eq!(both, expected);
}

/// A page's bodies come whole whether they are fetched with the page (a short page
/// on PostgreSQL), in chunks, or one at a time (a body past 256 KiB), and each
/// entry is the document the read answers.
#[test]
fn a_page_carries_every_body_whole_small_or_large() {
    let p = population();
    let doctor = As::doctor();
    let mut large = document(&p.helene, "11488-4", "2024-01-01");
    // Past 256 Ki characters (the length both databases measure), with a
    // character of two bytes.
    large["description"] = json!(format!("é{}", "a".repeat(300 * 1024)));
    let large_id = p.app.create(&doctor, &large);
    let mut ids_made = vec![large_id.clone()];
    for day in 2..=4 {
        ids_made.push(p.app.create(
            &doctor,
            &document(&p.helene, "11488-4", &format!("2024-01-0{day}")),
        ));
    }
    for count in [2, 20, 21, 50] {
        let mut seen = Vec::new();
        let mut url = format!(
            "DocumentReference?patient={}&_count={count}&_total=accurate",
            p.helene
        );
        loop {
            let bundle = search(&p.app, &url, &doctor);
            assert_eq!(bundle["total"], 4, "_count={count}");
            for entry in bundle["entry"].as_array().unwrap() {
                let resource = &entry["resource"];
                let id = resource["id"].as_str().unwrap().to_owned();
                let read = p
                    .app
                    .get(&format!("DocumentReference/{id}"), &doctor)
                    .json();
                assert_eq!(resource, &read, "_count={count}: {id}");
                seen.push(id);
            }
            match crate::support::next_link(&bundle) {
                Some(next) => url = next,
                None => break,
            }
        }
        seen.sort();
        let mut expected = ids_made.clone();
        expected.sort();
        assert_eq!(seen, expected, "_count={count}");
    }
    let read = p
        .app
        .get(&format!("DocumentReference/{large_id}"), &doctor)
        .json();
    assert_eq!(
        read["description"].as_str().unwrap().chars().count(),
        300 * 1024 + 1
    );
}
