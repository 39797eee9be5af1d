//! The FHIR interactions, executed on one database connection under the decisions of
//! the access stages. Synchronous: the pipeline runs them on the blocking pool, inside
//! a write transaction for writes, and a transaction Bundle runs many in one.

pub mod bundle;
pub mod history;
pub mod locks;
pub mod mhd;
pub mod operations;
pub mod read;
pub mod search;
pub mod write;

use actix_web::http::StatusCode;

use crate::access::{Gate, Released};
use crate::error::ApiError;
use crate::fhir::definitions::{Interaction, ResourceDef};
use crate::fhir::patch::PatchDocument;
use crate::fhir::search::PageLimits;
use crate::fhir::stored::Incoming;
use crate::store::Conn;

/// What an interaction needs to know of its request.
pub struct Ctx<'a> {
    /// The narrow and check-rows stages for this request's principal.
    pub gate: &'a Gate<'a>,
    /// Base URL for `fullUrl`, `Location` and links, without a trailing slash.
    pub base_url: &'a str,
    pub limits: PageLimits,
    /// Largest resource a write may store (the request body bound: a PATCH may not
    /// build, over several requests, what a PUT could not send).
    pub max_resource_bytes: usize,
}

/// One classified interaction on one resource type.
#[derive(Debug, Clone)]
pub enum Operation {
    Read {
        id: String,
    },
    Vread {
        id: String,
        version: String,
    },
    Create {
        body: Incoming,
        if_none_exist: Option<String>,
    },
    Update {
        id: String,
        body: Incoming,
        if_match: Option<String>,
    },
    Patch {
        id: String,
        patch: PatchDocument,
        if_match: Option<String>,
    },
    /// `PATCH [type]?[search]` (R-MHD-7, TD3.3): the one resource the search
    /// matches among those the caller may see.
    ConditionalPatch {
        params: Vec<(String, String)>,
        patch: PatchDocument,
        if_match: Option<String>,
    },
    Delete {
        id: String,
        if_match: Option<String>,
    },
    Search {
        params: Vec<(String, String)>,
        strict: bool,
    },
    HistoryInstance {
        id: String,
        params: Vec<(String, String)>,
    },
    HistoryType {
        params: Vec<(String, String)>,
    },
    /// `POST [type]/[id]/$name`, with the query's and the Parameters body's values.
    Invoke {
        id: String,
        name: String,
        params: Vec<(String, String)>,
    },
}

impl Operation {
    pub fn interaction(&self) -> Interaction {
        match self {
            Operation::Read { .. } => Interaction::Read,
            Operation::Vread { .. } => Interaction::Vread,
            Operation::Create { .. } => Interaction::Create,
            Operation::Update { .. } => Interaction::Update,
            Operation::Patch { .. } | Operation::ConditionalPatch { .. } => Interaction::Patch,
            Operation::Delete { .. } => Interaction::Delete,
            Operation::Search { .. } => Interaction::SearchType,
            Operation::HistoryInstance { .. } => Interaction::HistoryInstance,
            Operation::HistoryType { .. } => Interaction::HistoryType,
            Operation::Invoke { .. } => Interaction::Operation,
        }
    }

    /// Every interaction the operation performs, on whichever type, for the
    /// caller's scopes (R-ACC-13): its own, and what it reads, searches and changes
    /// besides. A patch reads the resource it changes (its `test` and `from`, and
    /// its errors, tell of it); a conditional create or patch searches, and so does
    /// a conditional reference in a body; a document that replaces others changes
    /// them (R-MHD-3); an operation declares its own.
    pub fn performs(&self, def: &ResourceDef) -> Vec<(&'static str, Interaction)> {
        let own = (def.name, self.interaction());
        // A body's conditional references (`Patient?identifier=…`) are searches.
        let searches_patients = |body: &Incoming| {
            mhd::has_conditional_references(body.value())
                .then_some(("Patient", Interaction::SearchType))
        };
        match self {
            Operation::Create {
                body,
                if_none_exist,
            } => {
                let mut performed = vec![own];
                if if_none_exist.is_some() {
                    performed.push((def.name, Interaction::SearchType));
                }
                if def.name == "DocumentReference"
                    && !mhd::replaced_documents(body.value()).is_empty()
                {
                    performed.push(("DocumentReference", Interaction::Update));
                }
                performed.extend(searches_patients(body));
                performed
            }
            Operation::Update { body, .. } => {
                let mut performed = vec![own];
                performed.extend(searches_patients(body));
                performed
            }
            Operation::Patch { .. } => vec![own, (def.name, Interaction::Read)],
            Operation::ConditionalPatch { .. } => vec![
                own,
                (def.name, Interaction::Read),
                (def.name, Interaction::SearchType),
            ],
            Operation::Invoke { name, .. } => def
                .operation(name)
                .map(|operation| operation.performs.to_vec())
                .unwrap_or_default(),
            _ => vec![own],
        }
    }

    /// The resource id the operation names, if any.
    pub fn id(&self) -> Option<&str> {
        match self {
            Operation::Read { id }
            | Operation::Vread { id, .. }
            | Operation::Update { id, .. }
            | Operation::Patch { id, .. }
            | Operation::Delete { id, .. }
            | Operation::HistoryInstance { id, .. }
            | Operation::Invoke { id, .. } => Some(id),
            _ => None,
        }
    }
}

/// The answer of one interaction, before HTTP shaping.
#[derive(Debug, Clone)]
pub struct FhirResponse {
    pub status: StatusCode,
    /// The body, released by the egress gate (a resource or a Bundle).
    pub body: Option<Released>,
    /// Version of the resource returned or written (ETag).
    pub version: Option<i64>,
    pub last_modified: Option<String>,
    /// `Type/id/_history/v` of a created or updated resource (relative).
    pub location: Option<String>,
}

impl FhirResponse {
    fn body(status: StatusCode, body: Released) -> FhirResponse {
        FhirResponse {
            status,
            body: Some(body),
            version: None,
            last_modified: None,
            location: None,
        }
    }
}

/// Runs one operation.
pub fn execute(
    conn: &mut Conn,
    ctx: &Ctx<'_>,
    def: &'static ResourceDef,
    operation: Operation,
) -> Result<FhirResponse, ApiError> {
    if operation.interaction().is_write() {
        locks::take_named(conn, def, &operation)?;
    }
    match operation {
        Operation::Read { id } => read::read(conn, ctx, def, &id),
        Operation::Vread { id, version } => read::vread(conn, ctx, def, &id, &version),
        Operation::Create {
            body,
            if_none_exist,
        } => write::create(conn, ctx, def, body, if_none_exist.as_deref()),
        Operation::Update { id, body, if_match } => {
            write::update(conn, ctx, def, &id, body, if_match.as_deref())
        }
        Operation::Patch {
            id,
            patch,
            if_match,
        } => write::patch(conn, ctx, def, &id, &patch, if_match.as_deref()),
        Operation::ConditionalPatch {
            params,
            patch,
            if_match,
        } => write::conditional_patch(conn, ctx, def, &params, &patch, if_match.as_deref()),
        Operation::Delete { id, if_match } => {
            write::delete_if_match(conn, ctx, def, &id, if_match.as_deref())
        }
        Operation::Search { params, strict } => search::search(conn, ctx, def, &params, strict),
        Operation::HistoryInstance { id, params } => {
            history::history(conn, ctx, def, Some(&id), &params)
        }
        Operation::HistoryType { params } => history::history(conn, ctx, def, None, &params),
        Operation::Invoke { id, name, params } => {
            operations::invoke(conn, ctx, def, &id, &name, &params)
        }
    }
}

/// Parses an `If-Match` value (`W/"3"`, `"3"` or `3`) into a version number.
pub fn parse_if_match(value: &str) -> Result<i64, ApiError> {
    let trimmed = value.trim();
    let trimmed = trimmed.strip_prefix("W/").unwrap_or(trimmed);
    trimmed.trim_matches('"').parse::<i64>().map_err(|_| {
        ApiError::bad_request(
            crate::error::IssueCode::Invalid,
            format!("If-Match must be an ETag like W/\"1\", got {value:?}"),
        )
    })
}
