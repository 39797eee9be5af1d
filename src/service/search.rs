//! search-type: the narrowed SQL search, `_include` / `_revinclude` checked row by
//! row, and the searchset Bundle with exact paging links.

use std::collections::HashSet;

use actix_web::http::StatusCode;
use chrono::Utc;
use indexmap::IndexMap;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::{Ctx, FhirResponse};
use crate::error::ApiError;
use crate::fhir::date::fhir_instant;
use crate::fhir::definitions::ResourceDef;
use crate::fhir::search::{self as fhir_search, SearchRequest};
use crate::store::{self, Conn};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BundleLink {
    pub relation: &'static str,
    pub url: String,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct BundleEntry {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<Value>,
}

/// A Bundle whose resources are embedded as stored text, never re-serialised.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BundleOut {
    pub resource_type: &'static str,
    pub id: String,
    pub meta: Value,
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<i64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub link: Vec<BundleLink>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub entry: Vec<BundleEntry>,
}

impl BundleOut {
    pub fn new(kind: &'static str) -> BundleOut {
        BundleOut {
            resource_type: "Bundle",
            id: uuid::Uuid::new_v4().to_string(),
            meta: json!({ "lastUpdated": fhir_instant(Utc::now()) }),
            kind,
            total: None,
            link: Vec::new(),
            entry: Vec::new(),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a bundle serialises")
    }
}

/// Stored text as an embeddable raw value.
pub fn raw(content: String) -> Box<RawValue> {
    RawValue::from_string(content)
        .unwrap_or_else(|_| RawValue::from_string("{}".to_owned()).expect("valid"))
}

/// `_elements`: keeps the named top-level elements (plus the mandatory ones) and tags
/// the resource SUBSETTED. Works on raw elements so nothing kept is re-formatted.
fn subset(content: &str, elements: &[String]) -> String {
    let Ok(mut map) = serde_json::from_str::<IndexMap<String, Box<RawValue>>>(content) else {
        return content.to_owned();
    };
    map.retain(|key, _| {
        matches!(key.as_str(), "resourceType" | "id" | "meta") || elements.contains(key)
    });
    let mut meta: Value = map
        .get("meta")
        .and_then(|meta| serde_json::from_str(meta.get()).ok())
        .unwrap_or_else(|| json!({}));
    let tag = json!({
        "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
        "code": "SUBSETTED",
        "display": "subsetted"
    });
    match meta.get_mut("tag").and_then(Value::as_array_mut) {
        Some(tags) => tags.push(tag),
        None => meta["tag"] = json!([tag]),
    }
    map.insert("meta".to_owned(), raw(meta.to_string()));
    serde_json::to_string(&map).expect("raw values serialise")
}

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
    let narrowing = ctx.gate.search_narrowing(conn, &request)?;
    let page = store::search::run(conn, &request, &narrowing)?;
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
    let pks: Vec<i64> = page.rows.iter().map(|row| row.pk).collect();
    let ids: Vec<String> = page.rows.iter().map(|row| row.res_id.clone()).collect();
    let shape = |content: String| match &request.elements {
        Some(elements) => subset(&content, elements),
        None => content,
    };
    for row in page.rows {
        // Identity answers concern each patient found (their trace shows the lookup).
        if row.res_type == "Patient" {
            ctx.gate.touched.patient(&row.res_id);
        }
        let content = super::present(conn, ctx, &row.res_type, &row.res_id, row.content.clone())?;
        bundle.entry.push(BundleEntry {
            full_url: Some(full_url(ctx, &row.res_type, &row.res_id)),
            search: Some(json!({ "mode": "match" })),
            resource: Some(raw(shape(content))),
            ..BundleEntry::default()
        });
    }
    let mut extra = Vec::new();
    for include in &request.includes {
        extra.extend(store::search::included(conn, &pks, include)?);
    }
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    for include in &request.revincludes {
        extra.extend(store::search::rev_included(
            conn, def.name, &id_refs, include,
        )?);
    }
    for row in extra {
        if !seen.insert((row.res_type.clone(), row.res_id.clone()))
            || !ctx.gate.visible(conn, &row)?
        {
            continue;
        }
        bundle.entry.push(BundleEntry {
            full_url: Some(full_url(ctx, &row.res_type, &row.res_id)),
            search: Some(json!({ "mode": "include" })),
            resource: Some(raw(super::present(
                conn,
                ctx,
                &row.res_type,
                &row.res_id,
                row.content.clone(),
            )?)),
            ..BundleEntry::default()
        });
    }
    Ok(FhirResponse::body(StatusCode::OK, bundle.to_json()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subset_keeps_named_elements_and_tags() {
        let text = subset(
            r#"{"resourceType":"Patient","id":"1","meta":{"versionId":"1"},"gender":"male","birthDate":"1970","x":3.50}"#,
            &["gender".to_owned(), "x".to_owned()],
        );
        assert!(
            text.contains("\"gender\"") && text.contains("3.50") && !text.contains("birthDate"),
            "{text}"
        );
        assert!(text.contains("SUBSETTED"));
    }
}
