//! Several stateless server instances on one PostgreSQL database: concurrent
//! `If-Match` updates lose nothing, concurrent conditional creates make one resource,
//! and every patient's trace still chains. Runs when the suite runs on PostgreSQL
//! (`DMP_TEST_POSTGRES_URL`, as `.ci/run` does); SQLite is one process's database.

use std::sync::{Arc, Mutex};

use serde_json::json;

use crate::support::fixtures::{document, nir, patient};
use crate::support::{As, Reply, ServerProcess, TestApp, generate, run_command};

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// One request: status, ETag and body.
fn call(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    who: &As,
    headers: &[(&str, String)],
    body: Option<String>,
) -> (u16, Option<String>, String) {
    let token = format!("Bearer {}", who.token().unwrap());
    let response = match (method, body) {
        ("GET", _) => {
            let mut request = agent.get(url).header("Authorization", &token);
            for (name, value) in headers {
                request = request.header(*name, value);
            }
            request.call()
        }
        (_, body) => {
            let mut request = match method {
                "PUT" => agent.put(url),
                _ => agent.post(url),
            }
            .header("Authorization", &token)
            .header("Content-Type", "application/fhir+json");
            for (name, value) in headers {
                request = request.header(*name, value);
            }
            request.send(body.unwrap_or_default())
        }
    };
    let mut response = response.expect("HTTP exchange");
    let status = response.status().as_u16();
    let etag = response
        .headers()
        .get("etag")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let body = response.body_mut().read_to_string().unwrap_or_default();
    (status, etag, body)
}

/// A test app on PostgreSQL, or none (and a word why) on SQLite, for the tests
/// that run on PostgreSQL only.
fn app_on_postgres() -> Option<TestApp> {
    let app = TestApp::new();
    if app.is_postgres() {
        Some(app)
    } else {
        eprintln!("runs on PostgreSQL only (DMP_TEST_POSTGRES_URL)");
        None
    }
}

#[test]
fn two_instances_lose_no_update_duplicate_no_create_and_keep_the_chains() {
    let Some(app) = app_on_postgres() else {
        return;
    };
    let instances = [
        ServerProcess::start(&app.database_url),
        ServerProcess::start(&app.database_url),
    ];
    let (_, document_id) = app.patient_with_document("1980-05-01");

    // Concurrent If-Match updates of one document through both instances: each
    // writer reads, changes and writes back with the version it read.
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let writers: Vec<_> = (0..8)
        .map(|writer| {
            let base = instances[writer % 2].base.clone();
            let outcomes = Arc::clone(&outcomes);
            let url = format!("{base}/DocumentReference/{document_id}");
            std::thread::spawn(move || {
                let agent = agent();
                for round in 0..10 {
                    let (status, etag, body) = call(&agent, "GET", &url, &As::doctor(), &[], None);
                    assert_eq!(status, 200, "{body}");
                    let mut resource: serde_json::Value = serde_json::from_str(&body).unwrap();
                    resource["description"] = json!(format!("writer {writer} round {round}"));
                    let (status, _, body) = call(
                        &agent,
                        "PUT",
                        &url,
                        &As::doctor(),
                        &[("If-Match", etag.unwrap())],
                        Some(resource.to_string()),
                    );
                    outcomes.lock().unwrap().push((status, body));
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().expect("writer");
    }
    let outcomes = outcomes.lock().unwrap().clone();
    let succeeded = outcomes.iter().filter(|(status, _)| *status == 200).count();
    let stale = outcomes.iter().filter(|(status, _)| *status == 412).count();
    assert_eq!(
        succeeded + stale,
        outcomes.len(),
        "only 200 or 412: {:?}",
        outcomes
            .iter()
            .filter(|(status, _)| !matches!(status, 200 | 412))
            .collect::<Vec<_>>()
    );
    assert!(succeeded > 0);
    // No lost update: every success is a version of its own.
    let current = app
        .get(&format!("DocumentReference/{document_id}"), &As::doctor())
        .json();
    assert_eq!(
        current["meta"]["versionId"],
        (1 + succeeded).to_string(),
        "{succeeded} updates succeeded"
    );
    assert_eq!(
        app.stored_rows(&format!("resource_versions WHERE res_id = '{document_id}'")),
        1 + succeeded as i64
    );

    // Concurrent conditional creates of the same person through both instances.
    let number = nir();
    let created = Arc::new(Mutex::new(Vec::new()));
    let creators: Vec<_> = (0..8)
        .map(|creator| {
            let base = instances[creator % 2].base.clone();
            let created = Arc::clone(&created);
            let body = patient(&number, "Durand", "Paul", "1970-01-01").to_string();
            let query = format!("identifier=urn:oid:1.2.250.1.213.1.4.8|{number}");
            std::thread::spawn(move || {
                let agent = agent();
                let (status, _, body) = call(
                    &agent,
                    "POST",
                    &format!("{base}/Patient"),
                    &As::System,
                    &[("If-None-Exist", query)],
                    Some(body),
                );
                let id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned();
                created.lock().unwrap().push((status, id));
            })
        })
        .collect();
    for creator in creators {
        creator.join().expect("creator");
    }
    let created = created.lock().unwrap().clone();
    assert_eq!(
        created.iter().filter(|(status, _)| *status == 201).count(),
        1,
        "{created:?}"
    );
    assert!(
        created
            .iter()
            .all(|(status, _)| matches!(status, 200 | 201))
    );
    assert!(created.iter().all(|(_, id)| id == &created[0].1));
    assert_eq!(
        app.stored_rows(&format!(
            "search_token WHERE res_type = 'Patient' AND param = 'identifier' AND code = '{number}'"
        )),
        1
    );

    // Every trace written by the three instances still chains.
    let (holds, printed) = run_command(&["audit-verify", "--database-url", &app.database_url]);
    assert!(holds, "{printed}");
    assert!(printed.contains("every chain holds"), "{printed}");
}

/// The data generator (`dmp-fhir-server generate`) writes spaces the server serves
/// under its rules, on either backend.
#[test]
fn generated_spaces_are_served_under_the_rules() {
    let app = TestApp::new();
    let printed = generate(&app, 30, 6, 7);
    assert!(printed.contains("30 spaces, 180 documents"), "{printed}");
    // Space 4's médecin traitant (IdNat_PS 810000000004) sees its six documents;
    // a professional with no part in it is refused.
    let gp = As::Professional {
        id_nat_ps: "810000000004".into(),
        profession: "10".into(),
    };
    let bundle = app
        .get(
            "DocumentReference?patient=gen-7-4&_count=20&_total=accurate",
            &gp,
        )
        .json();
    assert_eq!(bundle["total"], 6, "{bundle}");
    let stranger = As::Professional {
        id_nat_ps: "810000009999".into(),
        profession: "10".into(),
    };
    assert_eq!(
        app.get("DocumentReference?patient=gen-7-4", &stranger)
            .status,
        403
    );
    // The patient finds their space by INS like any other.
    let patient = app.get("Patient/gen-7-4", &As::System).json();
    let nir = patient["identifier"][0]["value"].as_str().unwrap();
    let found = app
        .get(
            &format!("Patient?identifier=urn:oid:1.2.250.1.213.1.4.8|{nir}"),
            &gp,
        )
        .json();
    assert_eq!(found["entry"][0]["resource"]["id"], "gen-7-4");
}

/// Closes every connection the server holds to the test's database.
fn close_server_connections(app: &TestApp) {
    let closed = app.query_texts(
        "SELECT CAST(COUNT(pg_terminate_backend(pid)) AS TEXT) AS text FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    );
    assert_ne!(closed, ["0"], "the server had connections to close");
}

/// Sends `request` until it is answered with `status`: each closed connection
/// fails at most one request (the pool holds at most 8; the trace's committer and
/// the request each take one), with a 500 and its OperationOutcome; then 20 more
/// are all answered.
fn answered_again(status: u16, mut request: impl FnMut() -> Reply) {
    let mut failed = 0;
    loop {
        let reply = request();
        if reply.status == status {
            break;
        }
        assert_eq!(reply.status, 500, "{}", reply.body);
        assert_eq!(reply.json()["resourceType"], "OperationOutcome");
        failed += 1;
        assert!(
            failed <= 8,
            "a closed connection failed more than one request"
        );
    }
    for _ in 0..20 {
        let reply = request();
        assert_eq!(reply.status, status, "{}", reply.body);
    }
}

/// The server's PostgreSQL connections closed under it (a database restart, a
/// failover, an administrator's `pg_terminate_backend`): each pooled connection
/// fails at most the one request that finds it closed, with a clear 500, and the
/// server goes on answering with fresh connections. A connection that served a
/// moment ago is not checked before its next use (a round trip a request), so
/// this is how a closed one is found and replaced.
#[test]
fn closed_database_connections_fail_one_request_each_and_are_replaced() {
    let Some(app) = app_on_postgres() else {
        return;
    };
    let (patient_id, document_id) = app.patient_with_document("1980-05-01");
    let path = format!("DocumentReference/{document_id}");
    for _ in 0..20 {
        assert_eq!(app.get(&path, &As::doctor()).status, 200);
    }
    close_server_connections(&app);
    answered_again(200, || app.get(&path, &As::doctor()));
    // Writes alone: a failed write answers its failure without a Rust error, and
    // its connection is still checked before its next use (a failed statement).
    close_server_connections(&app);
    answered_again(201, || {
        app.post(
            "DocumentReference",
            &As::doctor(),
            &document(&patient_id, "11488-4", "2024-01-03"),
        )
    });
    // Searches, writes and the trace's reader work again too.
    assert_eq!(
        app.get(
            &format!("DocumentReference?patient={patient_id}"),
            &As::doctor()
        )
        .status,
        200
    );
    app.create(
        &As::doctor(),
        &document(&patient_id, "11488-4", "2024-01-02"),
    );
    let trace = app.get(
        &format!("AuditEvent?patient={patient_id}"),
        &As::Patient(patient_id.clone()),
    );
    assert_eq!(trace.status, 200, "{}", trace.body);
}

/// Connections the database closed while the server sat idle (a restart at
/// night, a proxy's idle timeout) fail no request: a pooled connection unused for
/// a moment is checked before its next use, and so is the trace committer's own
/// connection, also when that use is the committer's locking path (a chain it has
/// not appended to yet, where nothing retries the group on a fresh connection).
#[test]
fn connections_closed_while_the_server_is_idle_fail_no_request() {
    let Some(app) = app_on_postgres() else {
        return;
    };
    let (_, document_id) = app.patient_with_document("1980-05-01");
    let path = format!("DocumentReference/{document_id}");
    assert_eq!(app.get(&path, &As::doctor()).status, 200);
    close_server_connections(&app);
    std::thread::sleep(std::time::Duration::from_millis(700));
    let other = app.create(&As::System, &patient(&nir(), "Durand", "Luc", "1975-03-02"));
    let reply = app.get(&format!("Patient/{other}"), &As::System);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(app.get(&path, &As::doctor()).status, 200);
    let (chains_hold, report) = run_command(&["audit-verify", "--database-url", &app.database_url]);
    assert!(chains_hold, "{report}");
}

/// Chains begun by two instances at once: generated spaces have no trace yet, and
/// each space's first access comes through both instances at the same moment. An
/// appender's statement that locks the chains reads their heads with a snapshot
/// taken before it waited for the lock; a chain the other instance began meanwhile
/// must still be seen (else the second link is written as a first one, and the
/// request fails). Then both read each space again, twice: each instance's
/// committer knows where it left each chain, and the other instance has moved it
/// since. Every read is answered and traced, and every chain verifies.
#[test]
fn chains_begun_and_extended_by_two_instances_at_once_are_answered_and_hold() {
    let Some(app) = app_on_postgres() else {
        return;
    };
    let spaces = 40;
    generate(&app, spaces, 1, 11);
    let instances = [
        ServerProcess::start(&app.database_url),
        ServerProcess::start(&app.database_url),
    ];
    let links_before = app.stored_rows("audit_chain");
    let statuses = Arc::new(Mutex::new(Vec::new()));
    // The first round begins each chain from both instances at once; the later
    // ones extend chains each instance's committer last saw at a link the other
    // instance has since passed.
    for space in (0..3).flat_map(|_| 0..spaces) {
        // Space n's médecin traitant (IdNat_PS 8100 + n on 8 digits).
        let gp = As::Professional {
            id_nat_ps: format!("8100{space:08}"),
            profession: "10".into(),
        };
        let start = Arc::new(std::sync::Barrier::new(2));
        let readers: Vec<_> = instances
            .iter()
            .map(|instance| {
                let url = format!("{}/DocumentReference/gen-11-{space}-d0", instance.base);
                let (gp, start, statuses) = (gp.clone(), Arc::clone(&start), Arc::clone(&statuses));
                std::thread::spawn(move || {
                    let agent = agent();
                    start.wait();
                    let (status, _, body) = call(&agent, "GET", &url, &gp, &[], None);
                    statuses.lock().unwrap().push((status, body));
                })
            })
            .collect();
        for reader in readers {
            reader.join().unwrap();
        }
    }
    let statuses = statuses.lock().unwrap();
    let failed: Vec<_> = statuses
        .iter()
        .filter(|(status, _)| *status != 200)
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
    // One event per read (R-AUD-2), none twice.
    assert_eq!(
        app.stored_rows("audit_chain") - links_before,
        statuses.len() as i64
    );
    let (holds, printed) = run_command(&["audit-verify", "--database-url", &app.database_url]);
    assert!(holds, "{printed}");
}

/// A database that lost commits it had acknowledged (a restore, a failover to a
/// standby behind) holds a chain shorter than the one the trace's committer last
/// saw: the next event follows the link the database holds, and the chain verifies.
#[test]
fn a_chain_restored_behind_the_committers_last_link_is_continued_from_its_head() {
    let Some(app) = app_on_postgres() else {
        return;
    };
    let (patient_id, document_id) = app.patient_with_document("1980-05-01");
    let read = |who: &As| {
        let reply = app.get(&format!("DocumentReference/{document_id}"), who);
        assert_eq!(reply.status, 200, "{}", reply.body);
    };
    read(&As::doctor());
    read(&As::doctor());
    // Every event indexed before the newest link goes (the holder's trace search
    // waits for the indexer).
    let reply = app.get(
        &format!("AuditEvent?patient={patient_id}"),
        &As::Patient(patient_id.clone()),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let links =
        |app: &TestApp| app.stored_rows(&format!("audit_chain WHERE chain_key = '{patient_id}'"));
    let before = links(&app);
    app.execute_sql(&format!(
        "DO $$ DECLARE lost BIGINT; lost_seq BIGINT; lost_prev TEXT; BEGIN \
         PERFORM pg_advisory_xact_lock(hashtext('audit-chain/{patient_id}')); \
         PERFORM 1 FROM audit_chain_head WHERE chain_key = '{patient_id}' FOR UPDATE; \
         ALTER TABLE audit_chain DISABLE TRIGGER USER; \
         ALTER TABLE resources DISABLE TRIGGER USER; \
         SELECT resource_pk, chain_seq, prev_hash INTO lost, lost_seq, lost_prev FROM audit_chain \
         WHERE chain_key = '{patient_id}' ORDER BY chain_seq DESC LIMIT 1; \
         DELETE FROM audit_chain WHERE resource_pk = lost; \
         DELETE FROM audit_unindexed WHERE resource_pk = lost; \
         DELETE FROM search_token WHERE resource_pk = lost; \
         DELETE FROM search_string WHERE resource_pk = lost; \
         DELETE FROM search_date WHERE resource_pk = lost; \
         DELETE FROM search_reference WHERE resource_pk = lost; \
         DELETE FROM resource_compartment WHERE resource_pk = lost; \
         DELETE FROM resources WHERE pk = lost; \
         UPDATE audit_chain_head SET seq = lost_seq - 1, hash = lost_prev WHERE chain_key = '{patient_id}'; \
         ALTER TABLE resources ENABLE TRIGGER USER; \
         ALTER TABLE audit_chain ENABLE TRIGGER USER; \
         END $$"
    ));
    assert_eq!(links(&app), before - 1);
    read(&As::doctor());
    read(&As::doctor());
    assert_eq!(links(&app), before + 1);
    let (holds, printed) = run_command(&["audit-verify", "--database-url", &app.database_url]);
    assert!(holds, "{printed}");
}

/// The request ids named by the trace of `patient_id` (`entity.what.identifier`),
/// searched by its holder through the instance at `base`.
fn trace_through(agent: &ureq::Agent, base: &str, patient_id: &str) -> Vec<String> {
    let (status, _, body) = call(
        agent,
        "GET",
        &format!("{base}/AuditEvent?patient={patient_id}&_count=500"),
        &As::Patient(patient_id.to_owned()),
        &[],
        None,
    );
    assert_eq!(status, 200, "{body}");
    let bundle: serde_json::Value = serde_json::from_str(&body).unwrap();
    crate::support::event_entities(&bundle)
        .into_iter()
        .filter_map(|entity| {
            entity
                .pointer("/what/identifier/value")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        })
        .collect()
}

/// R-AUD-2 / R-PAT-4 across instances, with PostgreSQL's trace log (`audit_log`,
/// `--audit-log-postgres`):
/// a read one instance answers while the patient's chain is held elsewhere is
/// durable in the log, and the holder's search of the trace through another
/// instance waits until it is applied, then shows it. A group an instance killed
/// left in the log is applied by another one, once, and the chains hold; a row
/// that cannot be applied is set aside and reported, never holding back the
/// others.
#[test]
fn a_read_one_instance_answers_is_in_the_trace_another_instance_shows_next() {
    use diesel::connection::SimpleConnection;
    let Some(app) = app_on_postgres() else {
        return;
    };
    let (patient_id, document_id) = app.patient_with_document("1980-05-01");
    let logging = || {
        ServerProcess::start_with(
            &app.database_url,
            &["--audit-log-postgres", "true"],
            &[("DMP_LOG", "error")],
        )
    };
    let mut instances = [logging(), logging()];
    let client = agent();
    let mut holder = app.connect();
    let chain = format!("hashtext('audit-chain/{patient_id}')");
    let read_through_first = |request_id: &str| {
        let (status, _, body) = call(
            &client,
            "GET",
            &format!("{}/DocumentReference/{document_id}", instances[0].base),
            &As::doctor(),
            &[("X-Request-Id", request_id.to_owned())],
            None,
        );
        assert_eq!(status, 200, "answered while its chain is held: {body}");
    };

    holder
        .batch_execute(&format!("SELECT pg_advisory_lock({chain})"))
        .unwrap();
    read_through_first("across-live");
    let search = {
        let (base, patient_id) = (instances[1].base.clone(), patient_id.clone());
        std::thread::spawn(move || trace_through(&agent(), &base, &patient_id))
    };
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(
        !search.is_finished(),
        "the other instance's search waits for the read's event"
    );
    holder
        .batch_execute(&format!("SELECT pg_advisory_unlock({chain})"))
        .unwrap();
    let traced = search.join().unwrap();
    assert_eq!(
        traced.iter().filter(|id| *id == "across-live").count(),
        1,
        "{traced:?}"
    );

    // Before it in the log, a row that cannot be applied (its frame does not
    // read), left by an instance long gone: it must not hold back the rows after
    // it, nor the trace's readers.
    holder
        .batch_execute(
            "INSERT INTO audit_log (instance, logged_at, frame) \
             VALUES ('gone', clock_timestamp() - interval '1 minute', '\\x00ff')",
        )
        .unwrap();
    holder
        .batch_execute(&format!("SELECT pg_advisory_lock({chain})"))
        .unwrap();
    read_through_first("across-killed");
    instances[0].kill();
    holder
        .batch_execute(&format!("SELECT pg_advisory_unlock({chain})"))
        .unwrap();
    let traced = trace_through(&client, &instances[1].base, &patient_id);
    assert_eq!(
        traced.iter().filter(|id| *id == "across-killed").count(),
        1,
        "the killed instance's answered read is traced once: {traced:?}"
    );
    assert_eq!(app.stored_rows("audit_log WHERE set_aside IS NULL"), 0);
    // The unreadable row is set aside and reported until someone removes it.
    let (holds, printed) = run_command(&["audit-verify", "--database-url", &app.database_url]);
    assert!(!holds, "{printed}");
    assert!(
        printed.contains("DAMAGED audit_log row") && printed.contains("does not read"),
        "{printed}"
    );
    app.execute_sql("DELETE FROM audit_log WHERE instance = 'gone'");
    let (holds, printed) = run_command(&["audit-verify", "--database-url", &app.database_url]);
    assert!(holds, "{printed}");
}

/// What a write's transaction reads of a space is not kept for other requests: the
/// write may roll back, and another instance then commit the same access version with
/// other facts. Here a transaction that declares a new médecin traitant (R-PAT-3) and
/// fails is rolled back on one instance; a consent stored through another instance
/// moves the space to the version the rolled-back one would have had: the first
/// instance must not let the undeclared médecin traitant in (R-ACC-3).
#[test]
fn facts_a_rolled_back_write_read_are_not_kept_for_other_requests() {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    const COLLEAGUE: &str = "810000000002";
    let Some(app) = app_on_postgres() else {
        return;
    };
    let (patient_id, document_id) = app.patient_with_document("1980-05-01");
    let instance = ServerProcess::start(&app.database_url);
    let client = agent();
    let holder = As::Patient(patient_id.clone());
    let colleague = As::professional(COLLEAGUE, "10", None, None, None);
    let read = |who: &As| {
        call(
            &client,
            "GET",
            &format!("{}/DocumentReference/{document_id}", instance.base),
            who,
            &[],
            None,
        )
        .0
    };
    assert_eq!(read(&colleague), 404);
    let patch = |operations: serde_json::Value| {
        json!({
            "resource": { "resourceType": "Binary", "contentType": "application/json-patch+json",
                "data": STANDARD.encode(operations.to_string()) },
            "request": { "method": "PATCH", "url": format!("Patient/{patient_id}") }
        })
    };
    let declare = patch(
        json!([{ "op": "replace", "path": "/generalPractitioner", "value": [
        { "identifier": { "system": "urn:oid:1.2.250.1.71.4.2.1", "value": COLLEAGUE } }] }]),
    );
    // The holder may not rename themselves: the whole transaction fails.
    let rename = patch(json!([{ "op": "replace", "path": "/name/0/family", "value": "Autre" }]));
    let bundle =
        json!({ "resourceType": "Bundle", "type": "transaction", "entry": [declare, rename] });
    let (status, _, body) = call(
        &client,
        "POST",
        &format!("{}/", instance.base),
        &holder,
        &[],
        Some(bundle.to_string()),
    );
    assert!((400..500).contains(&status), "{status} {body}");
    // Asked of the other instance (a read here would read the version committed,
    // and cache its facts in place of those the transaction read).
    assert_eq!(
        app.get(&format!("DocumentReference/{document_id}"), &colleague)
            .status,
        404,
        "the declaration was rolled back"
    );
    // Through the other instance: the space's next version, with other facts.
    app.create(
        &holder,
        &crate::support::fixtures::permit_professional(&patient_id, "810000000003"),
    );
    assert_eq!(read(&colleague), 404, "not the médecin traitant");
    assert_eq!(read(&As::doctor()), 200);
}
