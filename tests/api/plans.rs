//! The hot paths run on indexes: on a generated store, the queries of a médecin
//! traitant's day (their patient's page of documents with its total, a document, the
//! patient found by INS) and everything the server runs beside them are planned
//! without a full scan of any table. The server logs its plans with
//! `--log-query-plans`; on PostgreSQL the planner is told to avoid sequential scans
//! (`enable_seqscan=off`), so that one still chosen on this small store means that no
//! index serves the query (at ten million documents the same plans are measured by
//! `bench/scale.sh`).

use serde_json::Value;

use crate::support::{As, ServerProcess, TestApp, eventually, generate};

fn get(agent: &ureq::Agent, url: &str, who: &As) -> Value {
    let mut response = agent
        .get(url)
        .header("Authorization", &format!("Bearer {}", who.token().unwrap()))
        .call()
        .expect("request");
    let status = response.status();
    let body = response.body_mut().read_to_string().expect("body");
    // The server's OperationOutcome says why, should it refuse.
    assert_eq!(status, 200, "{url}: {body}");
    serde_json::from_str(&body).expect("JSON")
}

/// (statement, plan) of every plan the process logged.
fn logged_plans(output: &str) -> Vec<(String, String)> {
    output
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|event| event["target"] == "dmp_fhir_server::plan")
        .filter_map(|event| {
            Some((
                event["fields"]["statement"].as_str()?.to_owned(),
                event["fields"]["plan"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

/// Steps of a plan that read a whole table (or a whole index).
fn full_scans(plan: &str, postgres: bool) -> Vec<String> {
    plan.split(" | ")
        .map(str::trim)
        .filter(|step| {
            if postgres {
                step.contains("Seq Scan")
            } else {
                // `SCAN (subquery-N)` reads back what the statement materialised
                // itself (a window's rows, the matches counted), not a table.
                step.starts_with("SCAN ") && !step.starts_with("SCAN (subquery-")
            }
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn hot_paths_are_planned_on_indexes() {
    let mut app = TestApp::new();
    generate(&app, 400, 10, 3);
    // The server process below is the only indexer of the trace queued for it: the
    // in-process server's indexer would otherwise take the queue first at random
    // (under load), and the plan awaited below would never be logged.
    app.stop_server();
    let server = ServerProcess::start_with(
        &app.database_url,
        &["--log-query-plans", "true", "--log-format", "json"],
        &[
            ("DMP_LOG", "warn,dmp_fhir_server::plan=info"),
            ("PGOPTIONS", "-c enable_seqscan=off"),
        ],
    );
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    // Space 4's médecin traitant (IdNat_PS 810000000004).
    let gp = As::Professional {
        id_nat_ps: "810000000004".into(),
        profession: "10".into(),
    };
    let page = get(
        &agent,
        &format!(
            "{}/DocumentReference?patient=gen-3-4&_count=5&_total=accurate",
            server.base
        ),
        &gp,
    );
    assert_eq!(page["total"], 10, "{page}");
    get(
        &agent,
        &format!("{}/DocumentReference/gen-3-4-d0", server.base),
        &gp,
    );
    let patient = get(&agent, &format!("{}/Patient/gen-3-4", server.base), &gp);
    let nir = patient["identifier"][0]["value"].as_str().unwrap();
    let found = get(
        &agent,
        &format!(
            "{}/Patient?identifier=urn:oid:1.2.250.1.213.1.4.8|{nir}",
            server.base
        ),
        &gp,
    );
    assert_eq!(found["entry"][0]["resource"]["id"], "gen-3-4");
    // The trace's reader waits for the indexer, which has then taken its batches
    // (events an earlier version left unindexed: this one indexes an event with its
    // append); the indexer's thread logs its plan as the answer leaves, so the log
    // is read until that plan is in it.
    app.unindex_the_trace();
    get(
        &agent,
        &format!("{}/AuditEvent?patient=gen-3-4", server.base),
        &gp,
    );

    let plans = eventually(|| {
        let plans = logged_plans(&server.output());
        plans
            .iter()
            .any(|(statement, _)| statement.contains("FROM audit_unindexed u"))
            .then_some(plans)
    });
    // The indexer walks its queue, not every resource up to the queue's end: the
    // statistics taken by `generate` saw an empty queue, which once led SQLite to
    // walk `resources` by key for each batch (a range, not a "SCAN").
    let indexer: Vec<&(String, String)> = plans
        .iter()
        .filter(|(statement, _)| statement.contains("FROM audit_unindexed u"))
        .collect();
    assert!(
        !indexer.is_empty(),
        "the indexer's batch was not logged: {plans:#?}"
    );
    for (statement, plan) in indexer {
        let walks_resources = plan.split(" | ").map(str::trim).any(|step| {
            step.starts_with("SEARCH r USING INTEGER PRIMARY KEY (rowid<")
                || step.contains("Index Cond: (pk <")
        });
        assert!(!walks_resources, "{statement}: {plan}");
    }
    // The page, which carries its exact total, starts from the space's compartment.
    let searches: Vec<&(String, String)> = plans
        .iter()
        .filter(|(statement, _)| {
            statement.contains("FROM resources r WHERE r.res_type = ")
                && statement.contains("resource_compartment")
        })
        .collect();
    assert!(
        searches
            .iter()
            .any(|(statement, _)| statement.contains("COUNT(*) OVER ()")),
        "the page and its count were not logged: {plans:#?}"
    );
    assert!(
        plans.len() >= 8,
        "too few plans logged to judge: {plans:#?}"
    );
    let scans: Vec<(String, Vec<String>)> = plans
        .iter()
        .map(|(statement, plan)| (statement.clone(), full_scans(plan, app.is_postgres())))
        .filter(|(_, scans)| !scans.is_empty())
        .collect();
    assert!(scans.is_empty(), "full scans on a hot path: {scans:#?}");
}

#[test]
fn a_full_scan_is_recognised_in_either_plan_format() {
    // The check above must be able to fail: a plan of each backend with a full scan.
    assert_eq!(
        full_scans("SCAN r | SEARCH t USING INDEX x (a=?)", false),
        vec!["SCAN r"]
    );
    assert!(full_scans("SEARCH r USING INTEGER PRIMARY KEY (rowid=?)", false).is_empty());
    assert_eq!(
        full_scans(
            "CO-ROUTINE (subquery-6) | SCAN (subquery-6) | SCAN resources",
            false
        ),
        vec!["SCAN resources"]
    );
    assert_eq!(
        full_scans(
            "Aggregate | ->  Seq Scan on resources r |       Filter: (res_type = '…'::text)",
            true
        ),
        vec!["->  Seq Scan on resources r"]
    );
}
