//! Instance and type history (SPEC §3).

use serde_json::json;

use crate::support::fixtures::{nir, patient};
use crate::support::{As, TestApp};

#[test]
fn instance_history_lists_versions_newest_first() {
    let app = TestApp::new();
    let id = app.create(
        &As::System,
        &patient(&nir(), "Martin", "Claire", "1980-05-01"),
    );
    let mut body = app.get(&format!("Patient/{id}"), &As::System).json();
    for gender in ["male", "other"] {
        body["gender"] = json!(gender);
        assert_eq!(
            app.put(&format!("Patient/{id}"), &As::System, &body).status,
            200
        );
    }
    let history = app
        .get(&format!("Patient/{id}/_history"), &As::doctor())
        .json();
    assert_eq!(history["type"], "history");
    assert_eq!(history["total"], 3);
    let versions: Vec<&str> = history["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["resource"]["meta"]["versionId"].as_str().unwrap())
        .collect();
    assert_eq!(versions, vec!["3", "2", "1"]);
    assert_eq!(history["entry"][2]["request"]["method"], "POST");
    assert_eq!(history["entry"][0]["request"]["method"], "PUT");
    assert_eq!(history["entry"][0]["response"]["etag"], "W/\"3\"");
    let page = app
        .get(&format!("Patient/{id}/_history?_count=2"), &As::doctor())
        .json();
    assert_eq!(page["entry"].as_array().unwrap().len(), 2);
    let next_url = crate::support::next_link(&page).expect("a next link");
    assert_eq!(next_url.matches("_count=").count(), 1, "{next_url}");
    let rest = app.get(&next_url, &As::doctor()).json();
    assert_eq!(rest["entry"][0]["resource"]["meta"]["versionId"], "1");
}

#[test]
fn type_history_with_since_and_narrowing() {
    let app = TestApp::new();
    let first = app.create(
        &As::System,
        &patient(&nir(), "Martin", "Claire", "1980-05-01"),
    );
    std::thread::sleep(std::time::Duration::from_millis(20));
    let cut = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let second = app.create(
        &As::System,
        &patient(&nir(), "Durand", "Paul", "1975-01-02"),
    );
    let all = app.get("Patient/_history", &As::doctor()).json();
    assert_eq!(all["total"], 2);
    let since = app
        .get(
            &format!("Patient/_history?_since={}", cut.replace('+', "%2B")),
            &As::doctor(),
        )
        .json();
    assert_eq!(since["total"], 1, "{since}");
    assert_eq!(since["entry"][0]["resource"]["id"], second.as_str());
    let mine = app
        .get("Patient/_history", &As::Patient(first.clone()))
        .json();
    assert_eq!(mine["total"], 1);
    assert_eq!(mine["entry"][0]["resource"]["id"], first.as_str());
    assert_eq!(
        app.get("Patient/_history?_since=yesterday", &As::doctor())
            .status,
        400
    );
}
