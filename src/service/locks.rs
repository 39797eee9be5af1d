//! The turns writers take, named in one place and taken in one order.
//!
//! PostgreSQL's writers run side by side. Writers of the same resource, conditional
//! query, INS or document uniqueId take turns on a transaction-scoped advisory lock
//! ([`store::dialect::lock`]), and writers of a space's Patient or Consents on its
//! `space_access` row (its access version). A write that takes two of them in the
//! order its parts come (a transaction Bundle's entries, a document and the one it
//! replaces) and another that takes the same two in the other order wait on each
//! other until PostgreSQL breaks the deadlock by failing one: a 500 for a request
//! that did nothing wrong. So the locks come in levels, and a write takes them level
//! by level:
//! 1. [`WRITTEN`]: the resources it writes (by id, or the match of a conditional
//!    patch) and the queries of its conditional creates;
//! 2. [`VALUES`]: the INS and document uniqueIds its resources carry;
//! 3. the turns of the spaces it decides on ([`space`], shared; a change of a
//!    space's lifecycle takes that turn alone, and first);
//! 4. the access versions of the spaces its Patients and Consents change
//!    (`space_access` rows, in the order of the spaces' ids).
//!
//! A write first takes every lock of the first two levels it names, by level and
//! then in the order of the locks' own keys, and a transaction Bundle then takes the
//! turns of its Patients' and Consents' spaces and moves their versions on. Each part takes the same locks again as it runs (a
//! lock held is taken at once). A lock a write learns of only as it runs is of a
//! later level than those it took first: a patch learns the INS or uniqueId of its
//! result after it holds its resource (a single write's resource comes before its
//! values the same way). A transaction's conditional patch whose match changed after
//! the transaction took its turns is refused (409) rather than locked out of order.
//! SQLite has one writer at a time: nothing here runs there.

use super::Operation;
use crate::error::ApiError;
use crate::fhir::definitions::ResourceDef;
use crate::fhir::extract;
use crate::store::{self, Conn};

/// The most turns one resource's write may name (a document replaces a few others,
/// a person has an INS or two): each is a lock PostgreSQL holds in its shared lock
/// table until the transaction ends, taken before the write's checks.
pub const MAX_TURNS_PER_WRITE: usize = 64;

/// The most turns a transaction may name, all its entries together (500 entries
/// name about three each).
pub const MAX_TURNS_PER_TRANSACTION: usize = 2_048;

/// The first level: the resources written, and the queries of conditional creates.
pub const WRITTEN: u8 = 0;
/// The second level: the values one resource at most may carry (INS, uniqueId).
pub const VALUES: u8 = 1;

/// A space's turn: taken shared by every write deciding on the space's facts, alone
/// by a change of its lifecycle (see `access::Gate::with_space_turns`).
pub fn space(patient: &str) -> String {
    format!("space/{patient}")
}

/// The turn of the writers of one resource.
pub fn resource(name: &str, id: &str) -> String {
    format!("{name}/{id}")
}

/// The turn of the conditional creates of one query.
pub fn query(name: &str, query: &str) -> String {
    format!("{name}?{query}")
}

/// The turn of the writers of one person's INS (R-LIFE-1).
pub fn person(system: &str, value: &str) -> String {
    format!("Patient?identifier={system}|{value}")
}

/// The turn of the writers of one document uniqueId (R-MHD-3).
pub fn document_unique_id(system: &str, value: &str) -> String {
    format!("DocumentReference.masterIdentifier={system}|{value}")
}

/// Every lock a write names before it runs, with its level.
pub fn named_by(def: &ResourceDef, operation: &Operation) -> Vec<(u8, String)> {
    let mut keys = Vec::new();
    let body = match operation {
        Operation::Create {
            body,
            if_none_exist,
        } => {
            if let Some(conditional) = if_none_exist {
                keys.push((WRITTEN, query(def.name, conditional)));
            }
            Some(body.value())
        }
        Operation::Update { id, body, .. } => {
            keys.push((WRITTEN, resource(def.name, id)));
            Some(body.value())
        }
        Operation::Patch { id, .. }
        | Operation::Delete { id, .. }
        | Operation::Invoke { id, .. } => {
            keys.push((WRITTEN, resource(def.name, id)));
            None
        }
        _ => None,
    };
    if let Some(body) = body {
        match def.name {
            "Patient" => keys.extend(
                crate::fhir::ins_identifiers(body)
                    .into_iter()
                    .map(|(system, value)| (VALUES, person(system, value))),
            ),
            "DocumentReference" => {
                keys.extend(
                    crate::fhir::mhd::master_identifier(body)
                        .map(|(system, value)| (VALUES, document_unique_id(system, value))),
                );
                keys.extend(
                    super::mhd::replaced_documents(body)
                        .iter()
                        .map(|replaced| (WRITTEN, resource("DocumentReference", replaced))),
                );
            }
            _ => {}
        }
    }
    keys
}

/// Takes, level by level, the locks of a write that names two or more (one alone
/// cannot be taken out of order).
pub fn take_named(
    conn: &mut Conn,
    def: &ResourceDef,
    operation: &Operation,
) -> Result<(), ApiError> {
    let keys = named_by(def, operation);
    bounded(&keys, MAX_TURNS_PER_WRITE, "a write")?;
    if keys.len() > 1 {
        store::dialect::lock_all(conn, &keys)?;
    }
    Ok(())
}

/// Refuses a write naming more distinct turns than `most` (bounded work, and
/// PostgreSQL's shared lock table, which every session draws on).
fn bounded(keys: &[(u8, String)], most: usize, what: &str) -> Result<(), ApiError> {
    let distinct: std::collections::HashSet<&(u8, String)> = keys.iter().collect();
    if distinct.len() > most {
        return Err(ApiError::unprocessable(
            crate::error::IssueCode::TooCostly,
            format!(
                "{what} names more than {most} resources and identifiers to write (relatesTo, identifier, entries): send fewer at once"
            ),
        ));
    }
    Ok(())
}

/// Every turn a transaction's entries name, refused past the bounds of a write or
/// of a transaction (on every backend: the same answer everywhere).
pub fn named_by_transaction(
    writes: &[(&'static ResourceDef, &Operation)],
) -> Result<Vec<(u8, String)>, ApiError> {
    let mut keys = Vec::new();
    for (def, operation) in writes {
        let named = named_by(def, operation);
        bounded(&named, MAX_TURNS_PER_WRITE, "a write")?;
        keys.extend(named);
    }
    bounded(&keys, MAX_TURNS_PER_TRANSACTION, "a transaction")?;
    Ok(keys)
}

/// Takes, level by level, every lock a transaction's entries name (`named`, from
/// [`named_by_transaction`], and the resources its conditional patches matched when
/// the transaction resolved them, `matched`), then returns, in order, the spaces its Patients and Consents are in
/// or name: the caller takes their turns, then moves their access versions on
/// ([`bump_in_order`]). Call it once the entries' conditional references are
/// resolved (a Consent's space may be one).
pub fn take_for_transaction(
    conn: &mut Conn,
    writes: &[(&'static ResourceDef, &Operation)],
    named: Vec<(u8, String)>,
    matched: &[(&'static ResourceDef, String)],
) -> Result<Vec<String>, ApiError> {
    let mut keys = named;
    keys.extend(
        matched
            .iter()
            .map(|(def, id)| (WRITTEN, resource(def.name, id))),
    );
    store::dialect::lock_all(conn, &keys)?;
    let mut spaces: Vec<String> = Vec::new();
    let touched = writes
        .iter()
        .map(|(def, operation)| (*def, operation.id()))
        .chain(matched.iter().map(|(def, id)| (*def, Some(id.as_str()))));
    for (def, id) in touched {
        match (def.name, id) {
            ("Patient", Some(id)) => spaces.push(id.to_owned()),
            ("Consent", Some(id)) => spaces.extend(store::resources::compartment_of_current(
                conn, def.name, id,
            )?),
            _ => {}
        }
    }
    // A Patient's body names no other space (a new Patient's space is new); a
    // Consent's names the space it goes to.
    for (def, operation) in writes {
        if def.name == "Consent"
            && let Operation::Create { body, .. } | Operation::Update { body, .. } = operation
        {
            spaces.extend(extract::compartment(def, body.value()));
        }
    }
    spaces.sort();
    spaces.dedup();
    Ok(spaces)
}

/// Moves on the access version of each space, in the order given (the spaces'
/// ids): the version moves again as each entry writes.
pub fn bump_in_order(conn: &mut Conn, spaces: &[String]) -> Result<(), ApiError> {
    for space in spaces {
        store::access::bump_space_version(conn, space)?;
    }
    Ok(())
}
