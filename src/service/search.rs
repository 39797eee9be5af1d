//! search-type: the narrowed SQL search, `_include` / `_revinclude` checked row by
//! row, and the searchset Bundle with exact paging links.

use std::collections::HashSet;

use actix_web::http::StatusCode;
use serde_json::json;

use super::{Ctx, FhirResponse};
use crate::access::{BundleEntry, BundleLink, BundleOut, Released};
use crate::error::ApiError;
use crate::fhir::definitions::ResourceDef;
use crate::fhir::search::{self as fhir_search, Include, SearchRequest};
use crate::store::resources::COMPLETED_TOGETHER;
use crate::store::{self, Conn};

/// A paging link: the parameters the request was understood with, its page size
/// (unless they name it) and the page's offset.
pub(super) fn paging_url(
    path: &str,
    params: &[(String, String)],
    count: usize,
    offset: usize,
) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (key, value) in params {
        query.append_pair(key, value);
    }
    if !params.iter().any(|(key, _)| key == "_count") {
        query.append_pair("_count", &count.to_string());
    }
    if offset > 0 {
        query.append_pair("_offset", &offset.to_string());
    }
    format!("{path}?{}", query.finish())
}

/// The URL of this search with the given offset.
fn page_url(ctx: &Ctx<'_>, request: &SearchRequest, offset: usize) -> String {
    let path = format!("{}/{}", ctx.base_url, request.resource.name);
    paging_url(&path, &request.link_params, request.count, offset)
}

/// The references of `param` a released body holds (its index, as the store writes
/// it, of what the caller is shown), as (type, id).
fn released_references(
    body: &Released,
    def: &ResourceDef,
    param: &str,
) -> impl Iterator<Item = (String, String)> {
    let value: serde_json::Value = serde_json::from_str(body.text()).unwrap_or_default();
    crate::fhir::extract::index(def, &value)
        .references
        .into_iter()
        .filter(move |entry| entry.param == param)
        .map(|entry| (entry.target_type, entry.target_id))
}

/// The `fullUrl` of a stored resource.
pub(super) fn full_url(ctx: &Ctx<'_>, res_type: &str, res_id: &str) -> String {
    format!("{}/{res_type}/{res_id}", ctx.base_url)
}

pub fn search(
    conn: &mut Conn,
    ctx: &Ctx<'_>,
    def: &'static ResourceDef,
    params: &[(String, String)],
    strict: bool,
) -> Result<FhirResponse, ApiError> {
    let mut request = fhir_search::parse(def, params, strict, ctx.limits)?;
    // A log grows while it is read (the trace grows with every request): its paging
    // links keep to the entries recorded before the first page, so pages neither
    // repeat nor skip entries.
    if def.log
        && !request
            .link_params
            .iter()
            .any(|(name, _)| name == "_lastUpdated")
    {
        let snapshot = crate::fhir::date::fhir_instant(chrono::Utc::now());
        request
            .link_params
            .push(("_lastUpdated".to_owned(), format!("le{snapshot}")));
    }
    // narrow: the rules become predicates of the query before it runs.
    let (narrowing, mut page) = narrowed_page(conn, ctx, &request)?;
    // Identity answers concern each patient they count (R-AUD-1: their trace shows
    // the lookup), also those a total or `_summary=count` counts beyond the page.
    if def.name == "Patient"
        && (page.has_more
            || page.total.is_some_and(|total| {
                usize::try_from(total).unwrap_or(usize::MAX) > page.rows.len()
            }))
        && !record_counted_patients(conn, ctx, &request, &narrowing)?
    {
        page.total = None;
    }
    let mut bundle = BundleOut::new("searchset");
    bundle.total = page.total;
    bundle.link.push(BundleLink {
        relation: "self",
        url: page_url(ctx, &request, request.offset),
    });
    if page.has_more {
        bundle.link.push(BundleLink {
            relation: "next",
            url: page_url(ctx, &request, request.offset + request.count),
        });
    }
    if request.offset > 0 && !request.summary_count {
        bundle.link.push(BundleLink {
            relation: "previous",
            url: page_url(ctx, &request, request.offset.saturating_sub(request.count)),
        });
    }
    let mut seen: HashSet<(String, String)> = page
        .rows
        .iter()
        .map(|row| (row.res_type.clone(), row.res_id.clone()))
        .collect();
    // What the released matches link to, and who they are: an `_include` follows a
    // reference a match's released body still holds, a `_revinclude` one that the
    // included resource's released body holds to a released match. A link the gate
    // hid from the caller (an event shown without its space) is never followed.
    let mut linked_from_matches: HashSet<(String, String)> = HashSet::new();
    let mut released_matches: Vec<String> = Vec::new();
    // One chunk of small bodies in memory at a time; a large one alone. A short
    // page's came with it.
    let mut fetched = Some(std::mem::take(&mut page.contents)).filter(|c| !c.is_empty());
    for chunk in page.rows.chunks(COMPLETED_TOGETHER) {
        let completed_rows = match fetched.take() {
            Some(contents) => store::resources::completed_with(chunk.to_vec(), contents),
            None => store::resources::complete_chunk(conn, chunk)?,
        };
        for completed in completed_rows {
            // A large body is loaded now, alone, and counted against the bound.
            let Some(row) = completed.into_row(conn)? else {
                continue;
            };
            // Identity answers concern each patient found (their trace shows the lookup).
            if row.res_type == "Patient" {
                ctx.gate.touched.patient(&row.res_id);
            }
            // egress: the narrowed SQL chose the rows; the gate has the last word.
            let body = match ctx.gate.release(conn, &row.stored()) {
                Ok(body) => body,
                Err(error) if error.rule.is_some() || error.status.as_u16() == 404 => {
                    tracing::error!(
                        resource = %format!("{}/{}", row.res_type, row.res_id),
                        rule = error.rule.unwrap_or(""),
                        "the search narrowing let through a row the gate refuses"
                    );
                    continue;
                }
                Err(error) => return Err(error),
            };
            for include in &request.includes {
                linked_from_matches.extend(
                    released_references(&body, include.source, include.param.name).filter(
                        |(kind, _)| {
                            include
                                .target_type
                                .as_deref()
                                .is_none_or(|target| target == kind)
                        },
                    ),
                );
            }
            released_matches.push(row.res_id.clone());
            bundle.entry.push(BundleEntry {
                full_url: Some(full_url(ctx, &row.res_type, &row.res_id)),
                search: Some(json!({ "mode": "match" })),
                resource: Some(match &request.elements {
                    Some(elements) => body.subset(elements),
                    None => body,
                }),
                ..BundleEntry::default()
            });
        }
    }
    let pks: Vec<i64> = page.rows.iter().map(|row| row.pk).collect();
    let mut extra = Vec::new();
    let mut origin: std::collections::HashMap<(String, String), Option<&Include>> =
        std::collections::HashMap::new();
    for include in &request.includes {
        for head in store::search::included(conn, &pks, include, ctx.limits.max_include_rows)? {
            let key = (head.res_type.clone(), head.res_id.clone());
            if linked_from_matches.contains(&key) && seen.insert(key.clone()) {
                origin.insert(key, None);
                extra.push(head);
            }
        }
    }
    let id_refs: Vec<&str> = released_matches.iter().map(String::as_str).collect();
    for include in &request.revincludes {
        for head in store::search::rev_included(
            conn,
            def.name,
            &id_refs,
            include,
            ctx.limits.max_include_rows,
        )? {
            let key = (head.res_type.clone(), head.res_id.clone());
            if seen.insert(key.clone()) {
                origin.insert(key, Some(include));
                extra.push(head);
            }
        }
    }
    for chunk in extra.chunks(COMPLETED_TOGETHER) {
        for completed in store::resources::complete_chunk(conn, chunk)? {
            // A large body is loaded now, alone, and counted against the bound.
            let Some(row) = completed.into_row(conn)? else {
                continue;
            };
            let body = match ctx.gate.release(conn, &row.stored()) {
                Ok(body) => body,
                Err(error)
                    if error.rule.is_some() || matches!(error.status.as_u16(), 404 | 410) =>
                {
                    continue;
                }
                Err(error) => return Err(error),
            };
            if let Some(Some(include)) = origin.get(&(row.res_type.clone(), row.res_id.clone()))
                && !released_references(&body, include.source, include.param.name)
                    .any(|(kind, id)| kind == def.name && id_refs.contains(&id.as_str()))
            {
                continue;
            }
            bundle.entry.push(BundleEntry {
                full_url: Some(full_url(ctx, &row.res_type, &row.res_id)),
                search: Some(json!({ "mode": "include" })),
                resource: Some(body),
                ..BundleEntry::default()
            });
        }
    }
    // What was not applied is said, not dropped in silence (R-MHD-4).
    if !request.ignored.is_empty() {
        bundle.entry.push(BundleEntry {
            search: Some(json!({ "mode": "outcome" })),
            resource: Some(Released::search_warning(&request.ignored)),
            ..BundleEntry::default()
        });
    }
    Ok(FhirResponse::body(StatusCode::OK, Released::bundle(bundle)))
}

/// The search's narrowing and its page. A professional's search of one space is
/// first decided on the facts cached of it, and its page's statement reads the
/// space's version with the rows; the page stands when it was read at the version
/// presumed and the rules, decided again at that version, give the same narrowing
/// (the usual case: one round trip fewer). Otherwise the page is read again with
/// what the rules give. When nothing could be presumed, or the presumed page's
/// statement failed, the rules are decided first, as they are without a cache (their
/// refusal, and the access the trace tells, come before any page).
fn narrowed_page(
    conn: &mut Conn,
    ctx: &Ctx<'_>,
    request: &SearchRequest,
) -> Result<(store::Narrowing, store::search::SearchPage), ApiError> {
    if let Some(presumed) = ctx.gate.presumed_search_narrowing(conn, request)
        && let Ok(page) = store::search::run_with_contents(
            conn,
            request,
            &presumed.narrowing,
            Some(&presumed.space),
        )
    {
        // A page without a row (or a count alone) carries no version: it is read
        // after. Versions only grow, so one equal to the presumed version, read
        // after the page, is the version the page was read at too.
        let version = match page.space_version {
            Some(version) => version,
            None => store::access::space_version(conn, &presumed.space)?,
        };
        ctx.gate
            .knows_space_versions(vec![(presumed.space.clone(), version)]);
        let narrowing = ctx.gate.search_narrowing(conn, request)?;
        if version == presumed.version && narrowing == presumed.narrowing {
            return Ok((narrowing, page));
        }
        let page = store::search::run_with_contents(conn, request, &narrowing, None)?;
        return Ok((narrowing, page));
    }
    let narrowing = ctx.gate.search_narrowing(conn, request)?;
    let page = store::search::run_with_contents(conn, request, &narrowing, None)?;
    Ok((narrowing, page))
}

/// Records as concerned every Patient the answer tells of (see [`search`]): in the
/// answer's order, those of its page, the one its `next` link stands for, and, for a
/// total, every match, up to a page's bound (or the page's end and one more, when
/// further). Whether every match was recorded: if not, the answer gives no total
/// (a total is a count the trace must show, and a refusal past a bound would tell
/// of the people beyond it all the same).
fn record_counted_patients(
    conn: &mut Conn,
    ctx: &Ctx<'_>,
    request: &fhir_search::SearchRequest,
    narrowing: &store::Narrowing,
) -> Result<bool, ApiError> {
    let told = (request.offset + request.count + 1).max(ctx.limits.max);
    let mut every = request.clone();
    every.offset = 0;
    every.count = told + 1;
    every.summary_count = false;
    every.total_accurate = false;
    every.includes.clear();
    every.revincludes.clear();
    let rows = store::search::run(conn, &every, narrowing)?.rows;
    // Those the page shows are told to the caller as it releases them; the others
    // are not (the caller's own trace does not name them).
    for row in rows.iter().take(told) {
        ctx.gate.touched.concealed_patient(&row.res_id);
    }
    Ok(rows.len() <= told)
}
