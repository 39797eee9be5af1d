//! history-instance and history-type Bundles, newest first.

use actix_web::http::StatusCode;
use serde_json::json;

use super::read::visible_current;
use super::search::{BundleEntry, BundleLink, BundleOut, raw};
use super::{Ctx, FhirResponse};
use crate::error::{ApiError, IssueCode};
use crate::fhir::date::parse_range;
use crate::fhir::definitions::ResourceDef;
use crate::store::{self, Conn};

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
            "_offset" => offset = number()?,
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
    let query = store::resources::HistoryQuery {
        res_type: def.name,
        res_id: id,
        since,
        count,
        offset,
        compartment: narrowing.compartment.as_deref(),
    };
    let (rows, total) = store::resources::history(conn, &query)?;
    let mut bundle = BundleOut::new("history");
    bundle.total = Some(total);
    let path = match id {
        Some(id) => format!("{}/{}/{id}/_history", ctx.base_url, def.name),
        None => format!("{}/{}/_history", ctx.base_url, def.name),
    };
    let link = |offset: usize| super::search::paging_url(&path, &link_params, count, offset);
    bundle.link.push(BundleLink {
        relation: "self",
        url: link(offset),
    });
    if ((offset + rows.len()) as i64) < total {
        bundle.link.push(BundleLink {
            relation: "next",
            url: link(offset + count),
        });
    }
    for row in rows {
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
            full_url: Some(super::search::full_url(ctx, &row.res_type, &row.res_id)),
            resource: (!row.deleted).then(|| raw(row.content)),
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
        body: Some(bundle.to_json()),
        version: None,
        last_modified: None,
        location: None,
    })
}
