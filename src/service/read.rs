//! read and vread.

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
    ctx.gate.check_read(conn, &row)?;
    Ok(row)
}

/// [`visible_current`] for a write: the writers of one resource take turns, across
/// server instances, until the transaction ends (a stale `If-Match` is then a 412,
/// never a lost update).
pub fn writable_current(
    conn: &mut Conn,
    ctx: &Ctx<'_>,
    def: &ResourceDef,
    id: &str,
) -> Result<ResourceRow, ApiError> {
    store::dialect::lock(conn, &format!("{}/{id}", def.name))?;
    visible_current(conn, ctx, def, id)
}

pub fn read(
    conn: &mut Conn,
    ctx: &Ctx<'_>,
    def: &ResourceDef,
    id: &str,
) -> Result<FhirResponse, ApiError> {
    let row = visible_current(conn, ctx, def, id)?;
    if row.deleted {
        return Err(ApiError::gone(format!("{}/{id} was deleted", def.name)));
    }
    let body = super::present(conn, ctx, def.name, id, row.content)?;
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
    visible_current(conn, ctx, def, id)?;
    let not_found =
        || ApiError::not_found(format!("{}/{id}/_history/{version} is not known", def.name));
    let number: i64 = version.parse().map_err(|_| not_found())?;
    let row = store::resources::version(conn, def.name, id, number)?.ok_or_else(not_found)?;
    if row.deleted {
        return Err(ApiError::gone(format!(
            "version {version} of {}/{id} is a deletion",
            def.name
        )));
    }
    let body = super::present(conn, ctx, def.name, id, row.content)?;
    Ok(FhirResponse {
        status: StatusCode::OK,
        body: Some(body),
        version: Some(row.version_id),
        last_modified: Some(row.last_updated),
        location: None,
    })
}
