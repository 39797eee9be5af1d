//! read and vread, each decided by the egress gate on the version it answers.

use actix_web::http::StatusCode;

use super::{Ctx, FhirResponse};
use crate::error::ApiError;
use crate::fhir::definitions::ResourceDef;
use crate::store::{self, Conn, ResourceRow};

/// The current row of `def/id` if the caller may see it; hidden rows are "not found"
/// so that their existence does not leak.
pub fn visible_current(
    conn: &mut Conn,
    ctx: &Ctx<'_>,
    def: &ResourceDef,
    id: &str,
) -> Result<ResourceRow, ApiError> {
    let not_found = || ApiError::not_found(format!("{}/{id} is not known", def.name));
    let row = store::resources::current(conn, def.name, id)?.ok_or_else(not_found)?;
    ctx.gate.check_read(conn, &row.stored())?;
    Ok(row)
}

/// The current row of a resource the caller means to change or delete, after the
/// first half of the write gate ([`crate::access::Gate::check_writable`]); `None`
/// when there is none. The writers of one resource take turns, across server
/// instances, until the transaction ends (a stale `If-Match` is then a 412, never a
/// lost update).
pub fn writable_current(
    conn: &mut Conn,
    ctx: &Ctx<'_>,
    def: &ResourceDef,
    id: &str,
) -> Result<Option<ResourceRow>, ApiError> {
    store::dialect::lock(conn, &super::locks::resource(def.name, id))?;
    let Some(row) = store::resources::current(conn, def.name, id)? else {
        return Ok(None);
    };
    ctx.gate.check_writable(conn, &row)?;
    Ok(Some(row))
}

pub fn read(
    conn: &mut Conn,
    ctx: &Ctx<'_>,
    def: &ResourceDef,
    id: &str,
) -> Result<FhirResponse, ApiError> {
    let not_found = || ApiError::not_found(format!("{}/{id} is not known", def.name));
    let (row, space_versions) =
        store::resources::current_with_space_versions(conn, def.name, id)?.ok_or_else(not_found)?;
    ctx.gate.knows_space_versions(space_versions);
    let body = ctx.gate.release(conn, &row.stored())?;
    Ok(FhirResponse {
        status: StatusCode::OK,
        body: Some(body),
        version: Some(row.version_id),
        last_modified: Some(row.last_updated),
        location: None,
    })
}

pub fn vread(
    conn: &mut Conn,
    ctx: &Ctx<'_>,
    def: &ResourceDef,
    id: &str,
    version: &str,
) -> Result<FhirResponse, ApiError> {
    let not_found =
        || ApiError::not_found(format!("{}/{id}/_history/{version} is not known", def.name));
    let number: i64 = version.parse().map_err(|_| not_found())?;
    let row = store::resources::version(conn, def.name, id, number)?.ok_or_else(not_found)?;
    // A hidden version answers as a missing one, word for word.
    let body = ctx.gate.release(conn, &row.stored()).map_err(|error| {
        match (error.concealed, error.rule) {
            (true, Some(rule)) => not_found().by_rule(rule).conceal(),
            _ => error,
        }
    })?;
    Ok(FhirResponse {
        status: StatusCode::OK,
        body: Some(body),
        version: Some(row.version_id),
        last_modified: Some(row.last_updated),
        location: None,
    })
}
