//! Bounded work: every input a caller controls has a limit, refused with 400 / 408 /
//! 413 and an OperationOutcome, and the server keeps serving within its memory.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::support::fixtures::{document, nir, patient};
use crate::support::{As, ServerProcess, TestApp, temp_dir};

fn with_patient() -> (TestApp, String) {
    let app = TestApp::new();
    let id = app.create(
        &As::System,
        &patient(&nir(), "Martin", "Claire", "1980-01-01"),
    );
    (app, id)
}

fn assert_too_costly(reply: &crate::support::Reply, status: u16) {
    assert_eq!(reply.status, status, "{}", reply.body);
    assert_eq!(reply.issue_code(), "too-costly", "{}", reply.body);
}

#[test]
fn search_terms_sorts_includes_and_offsets_are_bounded() {
    let (app, patient_id) = with_patient();
    let doctor = As::doctor();
    let many_types = (0..600)
        .map(|n| format!("http://loinc.org|{n}-0"))
        .collect::<Vec<_>>()
        .join(",");
    let search = |query: &str| {
        app.get(
            &format!("DocumentReference?patient={patient_id}&{query}"),
            &doctor,
        )
    };
    assert_too_costly(&search(&format!("type={many_types}")), 400);
    let many_params = (0..1000)
        .map(|n| format!("date=ge2000-01-{:02}", n % 28 + 1))
        .collect::<Vec<_>>()
        .join("&");
    assert_too_costly(&search(&many_params), 400);
    let many_sorts = vec!["-date"; 3000].join(",");
    assert_too_costly(&search(&format!("_sort={many_sorts}")), 400);
    let many_includes = vec!["_include=DocumentReference:patient"; 20].join("&");
    assert_too_costly(&search(&many_includes), 400);
    assert_too_costly(&search("_offset=9223372036854775808"), 400);
    assert_eq!(search("_offset=18446744073709551616").status, 400);
    // The same through POST _search, whose body may be large.
    let posted = app
        .request("POST", "DocumentReference/_search")
        .as_(&doctor)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .send(Some(format!("patient={patient_id}&{many_params}")));
    assert_too_costly(&posted, 400);
    assert_too_costly(
        &app.get(
            "DocumentReference/_history?_offset=99999999999",
            &As::Patient(patient_id.clone()),
        ),
        400,
    );
    // Within the bounds, the search runs.
    assert_eq!(
        search("type=http://loinc.org|11488-4,http://loinc.org|68599-0&_sort=-date,_id").status,
        200
    );
}

#[test]
fn a_bundle_has_a_bounded_number_of_entries() {
    let (app, patient_id) = with_patient();
    let entry = json!({ "request": { "method": "GET", "url": format!("Patient/{patient_id}") } });
    let bundle = json!({ "resourceType": "Bundle", "type": "batch", "entry": vec![entry; 2500] });
    assert_too_costly(
        &app.post("", &As::Patient(patient_id.clone()), &bundle),
        413,
    );
    assert_eq!(app.data_rows(), 1, "nothing stored");
}

/// One HTTP/1.1 exchange on a raw socket: sends `head` then as much of `body` as the
/// server takes, and returns the status of whatever answer comes back (0: none).
fn raw_exchange(address: &str, head: &str, body: &[u8], pause: Option<Duration>) -> u16 {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    if stream.write_all(head.as_bytes()).is_err() {
        return 0;
    }
    for chunk in body.chunks(64 * 1024) {
        if stream.write_all(chunk).is_err() {
            break;
        }
    }
    if let Some(pause) = pause {
        std::thread::sleep(pause);
    }
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    while let Ok(read) = stream.read(&mut buffer) {
        if read == 0 {
            break;
        }
        answer.extend_from_slice(&buffer[..read]);
        if answer.windows(4).any(|window| window == b"\r\n\r\n") {
            break;
        }
    }
    String::from_utf8_lossy(&answer)
        .split_whitespace()
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or(0)
}

#[test]
fn large_answers_and_unauthenticated_bodies_keep_the_server_small() {
    let dir = temp_dir("bounds");
    let server = ServerProcess::start_with(
        &format!("sqlite://{}", dir.join("db.sqlite").display()),
        &["--body-read-timeout-ms", "1000"],
        &[("DMP_LOG", "error")],
    );
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let call = |method: &str, path: &str, who: &As, body: Option<&Value>| -> (u16, String) {
        let url = format!("{}/{path}", server.base);
        let token = format!("Bearer {}", who.token().unwrap());
        let response = match body {
            None => agent.get(&url).header("Authorization", &token).call(),
            Some(body) => {
                let request = match method {
                    "PUT" => agent.put(&url),
                    _ => agent.post(&url),
                };
                request
                    .header("Authorization", &token)
                    .header("Content-Type", "application/fhir+json")
                    .send(body.to_string())
            }
        };
        let mut response = response.expect("HTTP exchange");
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(256 * 1024 * 1024)
            .read_to_string()
            .unwrap_or_default();
        (status, text)
    };
    let (status, created) = call(
        "POST",
        "Patient",
        &As::System,
        Some(&patient(&nir(), "Martin", "Claire", "1980-01-01")),
    );
    assert_eq!(status, 201, "{created}");
    let patient_id = serde_json::from_str::<Value>(&created).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let holder = As::Patient(patient_id.clone());
    // The patient's own 2 MB document, inline.
    let mut big = document(&patient_id, "11502-2", "2024-01-01");
    big["category"][0]["coding"][0]["code"] = json!("90");
    big["content"][0]["attachment"]["data"] = json!(STANDARD.encode(vec![b'%'; 2 * 1024 * 1024]));
    let (status, created) = call("POST", "DocumentReference", &holder, Some(&big));
    assert_eq!(status, 201);
    let document_id = serde_json::from_str::<Value>(&created).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    drop(created);
    // 400 reads of it in one batch: the answer stops at its bound.
    let entry = json!({ "request": { "method": "GET", "url": format!("DocumentReference/{document_id}") } });
    let batch = json!({ "resourceType": "Bundle", "type": "batch", "entry": vec![entry; 400] });
    let (status, answer) = call("POST", "", &holder, Some(&batch));
    assert_eq!(status, 200);
    assert!(answer.len() < 20 * 1024 * 1024, "{} bytes", answer.len());
    let answered: Value = serde_json::from_str(&answer).unwrap();
    drop(answer);
    let refused = answered["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["response"]["status"] == "413")
        .count();
    assert!(refused > 380, "{refused} entries refused past the bound");
    drop(answered);
    // A search page of them is refused whole rather than held in memory.
    for n in 0..20 {
        let mut copy = big.clone();
        copy["description"] = json!(format!("copy {n}"));
        assert_eq!(
            call("POST", "DocumentReference", &holder, Some(&copy)).0,
            201
        );
    }
    let (status, answer) = call(
        "GET",
        &format!("DocumentReference?patient={patient_id}&_count=500"),
        &holder,
        None,
    );
    assert_eq!(status, 413, "{}", &answer[..answer.len().min(300)]);
    // Twenty unauthenticated 20 MB bodies at once: answered 401 unread.
    let address = server.base.trim_start_matches("http://").to_owned();
    let payload = vec![b'{'; 20 * 1024 * 1024];
    let senders: Vec<_> = (0..20)
        .map(|_| {
            let (address, payload) = (address.clone(), payload.clone());
            std::thread::spawn(move || {
                raw_exchange(
                    &address,
                    &format!(
                        "POST /DocumentReference HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/fhir+json\r\nContent-Length: {}\r\n\r\n",
                        payload.len()
                    ),
                    &payload,
                    None,
                )
            })
        })
        .collect();
    for sender in senders {
        let status = sender.join().unwrap();
        assert!(matches!(status, 0 | 401), "{status}");
    }
    drop(payload);
    // A body trickled by an authenticated caller: 408 once its time is up.
    let token = holder.token().unwrap();
    let status = raw_exchange(
        &address,
        &format!(
            "POST /DocumentReference HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/fhir+json\r\nContent-Length: 100\r\n\r\n"
        ),
        b"{\"resourceType\"",
        Some(Duration::from_millis(1500)),
    );
    assert_eq!(status, 408);
    // Eight authenticated 15 MB bodies at once: they take turns within the bytes
    // the process holds at once.
    let large = json!({ "resourceType": "Binary", "contentType": "not a media type",
                        "data": STANDARD.encode(vec![b'%'; 11 * 1024 * 1024]),
                        "securityContext": { "reference": format!("Patient/{patient_id}") } })
    .to_string();
    let posters: Vec<_> = (0..8)
        .map(|_| {
            let (agent, url, token, large) = (
                agent.clone(),
                format!("{}/Binary", server.base),
                format!("Bearer {}", holder.token().unwrap()),
                large.clone(),
            );
            std::thread::spawn(move || {
                agent
                    .post(&url)
                    .header("Authorization", &token)
                    .header("Content-Type", "application/fhir+json")
                    .send(large)
                    .map(|response| response.status().as_u16())
                    .unwrap_or(0)
            })
        })
        .collect();
    // Read and refused (422), or, past the one-second read timeout this server runs
    // with, told to come back (503) without its body being read: the server then
    // closes the connection, which a poster still sending sees as an error (0).
    let statuses: Vec<u16> = posters
        .into_iter()
        .map(|poster| poster.join().unwrap())
        .collect();
    assert!(
        statuses
            .iter()
            .all(|status| matches!(status, 0 | 422 | 503)),
        "{statuses:?}"
    );
    assert!(statuses.contains(&422), "{statuses:?}");
    drop(large);
    // Still serving, and small all along.
    assert_eq!(
        call("GET", &format!("Patient/{patient_id}"), &holder, None).0,
        200
    );
    let peak = server.peak_rss_kib();
    assert!(peak < 150 * 1024, "peak RSS {peak} KiB");
}

#[test]
fn included_rows_and_history_scans_are_bounded() {
    let app = TestApp::with(|config| {
        config.max_include_rows = 2;
        config.max_history_scan = 3;
    });
    let id = app.create(
        &As::System,
        &patient(&nir(), "Martin", "Claire", "1980-01-01"),
    );
    let holder = As::Patient(id.clone());
    for day in [
        "2024-01-01",
        "2024-01-02",
        "2024-01-03",
        "2024-01-04",
        "2024-01-05",
    ] {
        app.create(&As::doctor(), &document(&id, "11488-4", day));
    }
    let bundle = app
        .get(
            &format!("Patient?_id={id}&_revinclude=DocumentReference:patient"),
            &holder,
        )
        .json();
    let included = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["search"]["mode"] == "include")
        .count();
    assert_eq!(included, 2);
    let history = app
        .get("DocumentReference/_history?_count=2", &holder)
        .json();
    assert!(history["total"].is_null(), "{history}");
    assert!(crate::support::next_link(&history).is_some(), "{history}");
}

/// The turns a write takes before its checks (`service::locks`) are bounded: each is
/// a lock in PostgreSQL's shared lock table until the transaction ends. A document
/// replacing more than 64 others, and a transaction naming more than 2,048
/// resources and identifiers, are refused before anything is locked or stored, the
/// same way on both backends.
#[test]
fn the_turns_a_write_names_are_bounded() {
    let (app, patient_id) = with_patient();
    let before = app.data_rows();
    let replacing = |count: usize, prefix: &str| {
        let mut body = document(&patient_id, "11488-4", "2024-01-01");
        body["relatesTo"] = Value::Array(
            (0..count)
                .map(|n| json!({ "code": "replaces", "target": { "reference": format!("DocumentReference/{prefix}-{n}") } }))
                .collect(),
        );
        body
    };
    let reply = app.post("DocumentReference", &As::doctor(), &replacing(65, "gone"));
    assert_too_costly(&reply, 422);
    assert!(reply.body.contains("more than 64"), "{}", reply.body);
    // Within the bound, the write goes on to its checks (an unknown target: 422).
    let reply = app.post("DocumentReference", &As::doctor(), &replacing(3, "gone"));
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert!(reply.body.contains("relatesTo"), "{}", reply.body);
    let entries: Vec<Value> = (0..500)
        .map(|n| {
            let mut body = replacing(4, &format!("gone-{n}"));
            body["id"] = json!(format!("bounded-{n}"));
            json!({ "resource": body, "request": { "method": "PUT", "url": format!("DocumentReference/bounded-{n}") } })
        })
        .collect();
    let bundle = json!({ "resourceType": "Bundle", "type": "transaction", "entry": entries });
    let reply = app.post("", &As::doctor(), &bundle);
    assert_too_costly(&reply, 422);
    assert!(reply.body.contains("more than 2048"), "{}", reply.body);
    assert_eq!(app.data_rows(), before, "nothing stored");
}
