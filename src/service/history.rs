//! history-instance and history-type Bundles, newest first. Every version is decided
//! by the egress gate on its own content (its space, its labels, its type), and on
//! the resource's latest live version: the SQL narrows candidates by space, the gate
//! has the last word, and the total counts what the gate lets through.

use actix_web::http::StatusCode;
use serde_json::json;

use super::read::visible_current;
use super::search::full_url;
use super::{Ctx, FhirResponse};
use crate::access::{BundleEntry, BundleLink, BundleOut, Released};
use crate::error::{ApiError, IssueCode};
use crate::fhir::date::parse_range;
use crate::fhir::definitions::ResourceDef;
use crate::store::{self, Conn, VersionRow};

/// Candidates read from the store at a time.
const CHUNK: usize = 200;

pub fn history(
    conn: &mut Conn,
    ctx: &Ctx<'_>,
    def: &'static ResourceDef,
    id: Option<&str>,
    params: &[(String, String)],
) -> Result<FhirResponse, ApiError> {
    let mut count = ctx.limits.default;
    let mut offset = 0;
    let mut since = None;
    let mut link_params = Vec::new();
    for (key, value) in params {
        let number = || {
            value.parse::<usize>().map_err(|_| {
                ApiError::bad_request(
                    IssueCode::Invalid,
                    format!("{key} must be a non-negative integer"),
                )
            })
        };
        match key.as_str() {
            "_count" => count = number()?.min(ctx.limits.max),
            "_offset" => {
                offset = number()?;
                if offset > ctx.limits.max_offset {
                    return Err(ApiError::bad_request(
                        IssueCode::TooCostly,
                        format!("_offset is at most {}", ctx.limits.max_offset),
                    ));
                }
            }
            "_since" => {
                let range = parse_range(value).ok_or_else(|| {
                    ApiError::bad_request(IssueCode::Invalid, format!("invalid _since {value:?}"))
                })?;
                since = Some(range.low);
            }
            "_format" | "_pretty" => continue,
            other => {
                return Err(ApiError::bad_request(
                    IssueCode::NotSupported,
                    format!("history supports _count, _since and _offset, not {other}"),
                ));
            }
        }
        if key != "_offset" {
            link_params.push((key.clone(), value.clone()));
        }
    }
    if let Some(id) = id {
        visible_current(conn, ctx, def, id)?;
    }
    let narrowing = ctx.gate.history_narrowing(def, id.is_some())?;
    let mut page: Vec<(VersionRow, Option<Released>)> = Vec::new();
    let mut passed = 0usize;
    let mut scanned = 0usize;
    let mut complete = true;
    loop {
        // Bounded work: past the versions one request examines, no `total`, and a
        // `next` link goes on (when one more candidate is there).
        let wanted = CHUNK.min(ctx.limits.max_history_scan.saturating_sub(scanned));
        let query = store::resources::HistoryQuery {
            res_type: def.name,
            res_id: id,
            since: since.clone(),
            count: wanted.max(1),
            offset: scanned,
            compartment: narrowing.compartment.as_deref(),
        };
        let rows = store::resources::history(conn, &query)?;
        if wanted == 0 {
            complete = rows.is_empty();
            break;
        }
        let wanted_all = rows.len() == wanted;
        let fetched = rows.len();
        scanned += fetched;
        for head in rows {
            let Some(mut row) = store::resources::complete_version(conn, head)? else {
                continue;
            };
            let in_page = passed >= offset && page.len() < count;
            if in_page {
                let released = ctx.gate.release(conn, &row.stored());
                // The entry keeps the version's facts; its body is the released one.
                row.content = String::new();
                match released {
                    Ok(body) => page.push((row, Some(body))),
                    Err(error) if error.status == StatusCode::GONE => page.push((row, None)),
                    Err(error) if error.rule.is_some() || error.status.as_u16() == 404 => {
                        continue;
                    }
                    Err(error) => return Err(error),
                }
            } else if !ctx.gate.visible(conn, &row.stored())? {
                continue;
            }
            passed += 1;
        }
        if !wanted_all {
            break;
        }
    }
    let mut bundle = BundleOut::new("history");
    bundle.total = complete.then_some(passed as i64);
    let path = match id {
        Some(id) => format!("{}/{}/{id}/_history", ctx.base_url, def.name),
        None => format!("{}/{}/_history", ctx.base_url, def.name),
    };
    let link = |offset: usize| super::search::paging_url(&path, &link_params, count, offset);
    bundle.link.push(BundleLink {
        relation: "self",
        url: link(offset),
    });
    if offset + page.len() < passed || (!complete && page.len() == count) {
        bundle.link.push(BundleLink {
            relation: "next",
            url: link(offset + count),
        });
    }
    for (row, body) in page {
        let (method, url, status) = match row.method.as_str() {
            "POST" => ("POST", row.res_type.clone(), "201 Created"),
            "DELETE" => (
                "DELETE",
                format!("{}/{}", row.res_type, row.res_id),
                "204 No Content",
            ),
            other => (other, format!("{}/{}", row.res_type, row.res_id), "200 OK"),
        };
        bundle.entry.push(BundleEntry {
            full_url: Some(full_url(ctx, &row.res_type, &row.res_id)),
            resource: body,
            request: Some(json!({ "method": method, "url": url })),
            response: Some(json!({
                "status": status,
                "etag": format!("W/\"{}\"", row.version_id),
                "lastModified": row.last_updated,
            })),
            ..BundleEntry::default()
        });
    }
    Ok(FhirResponse {
        status: StatusCode::OK,
        body: Some(Released::bundle(bundle)),
        version: None,
        last_modified: None,
        location: None,
    })
}
