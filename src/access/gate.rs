//! The gate: narrow and check rows for one request, with the rules of `rules/`. It
//! loads what the rules need of a space once per request and patient.
//!
//! Status codes: a refusal about the space the caller named (blocked, authorisation
//! missing, emergency opposed) is 403 with the rule; a single resource the caller may
//! not see is 404, so that its existence does not leak.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Months, Utc};
use serde_json::Value;

use super::decide::{OWN_SPACE, Verdict};
use super::egress::Released;
use super::matrix::{DocumentType, Matrix, TypeAccess};
use super::principal::{ActorKind, Principal};
use super::rules::patient::{INVISIBLE_PATIENT, INVISIBLE_REPRESENTANTS_LEGAUX, r_pat_hidden};
use super::rules::professional::{self, MASQUE_PS, SpaceAccess};
use super::rules::scopes;
use super::space::SpaceFacts;
use super::space_cache::SpaceCache;
use crate::audit::TouchedLog;
use crate::error::{ApiError, IssueCode};
use crate::fhir::IDNAT_PS_SYSTEM;
use crate::fhir::date::index_format;
use crate::fhir::definitions::{self, Interaction, ResourceDef};
use crate::fhir::extract::{self, values_at};
use crate::fhir::search::{Criterion, PageLimits, SearchRequest};
use crate::fhir::stored::{mark_shown_in_part, remove_extensions};
use crate::lifecycle::State;
use crate::store::resources::Stored;
use crate::store::{self, Conn, Narrowing, ResourceRow, TypeFilter};

/// The access stages' state for one request.
pub struct Gate<'a> {
    pub principal: &'a Principal,
    matrix: &'a Matrix,
    cache: &'a SpaceCache,
    now: DateTime<Utc>,
    spaces: RefCell<HashMap<String, Arc<SpaceFacts>>>,
    /// Access versions of spaces read with a row (see [`Self::knows_space_versions`]).
    space_versions: RefCell<HashMap<String, i64>>,
    /// What each resource an event or a search names is to the caller (see
    /// `redacted_event`, [`Self::named_held`]).
    entities: RefCell<HashMap<String, Named>>,
    /// The spaces this request concerns and what it writes, for its trace.
    pub touched: TouchedLog,
    /// Set while deciding what a search may name (an item, an entity): those checks
    /// are not accesses of the spaces they look into, and leave no trace there.
    quiet: std::cell::Cell<bool>,
    /// While a search's narrowing is decided on presumed facts (see
    /// [`Self::presumed_search_narrowing`]): the spaces and versions presumed.
    presumed: RefCell<Option<Vec<(String, i64)>>>,
    /// Bytes of bodies this request may still release (bounded work and memory).
    answer_left: std::cell::Cell<usize>,
    answer_limit: usize,
    /// Set for a request that writes: the facts of a space are read under its turn
    /// (see [`Self::with_space_turns`]).
    takes_space_turns: bool,
    /// The spaces whose turn the current transaction holds.
    space_turns: RefCell<HashSet<String>>,
}

/// A search's narrowing decided on presumed facts (see
/// [`Gate::presumed_search_narrowing`]).
pub struct PresumedNarrowing {
    /// The one space searched, whose version the page's statement reads.
    pub space: String,
    /// The version of the facts the narrowing was decided on.
    pub version: i64,
    pub narrowing: Narrowing,
}

/// Default bound of the resource bodies in one answer (`--max-answer-bytes`).
pub const DEFAULT_MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

fn refused(verdict: Verdict) -> ApiError {
    ApiError::forbidden(verdict.reason).by_rule(verdict.rule)
}

/// A resource the caller may not see: the very answer of one that does not exist
/// (its rule goes to the trace only).
fn hidden(resource: &str, verdict: &Verdict) -> ApiError {
    ApiError::not_found(format!("{resource} is not known"))
        .by_rule(verdict.rule)
        .conceal()
}

/// A refusal about a space the caller did not name (they named a resource of it):
/// told as "not known", so that a resource id tells nothing of its space.
fn unnamed_space(resource: &str, error: ApiError) -> ApiError {
    match error.rule {
        Some(rule) if error.status.as_u16() == 403 => hidden(resource, &Verdict::deny(rule, "")),
        _ => error,
    }
}

/// The type codings and security-label codes of a stored DocumentReference.
fn document_facts(value: &Value) -> (Vec<DocumentType>, Vec<String>) {
    let types = values_at(value, "type.coding")
        .into_iter()
        .filter_map(|coding| {
            Some((
                coding.get("system")?.as_str()?.to_owned(),
                coding.get("code")?.as_str()?.to_owned(),
            ))
        })
        .collect();
    let labels = values_at(value, "securityLabel.coding")
        .into_iter()
        .filter_map(|coding| {
            coding
                .get("code")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .collect();
    (types, labels)
}

impl<'a> Gate<'a> {
    pub fn new(principal: &'a Principal, matrix: &'a Matrix, cache: &'a SpaceCache) -> Gate<'a> {
        Gate {
            principal,
            matrix,
            cache,
            now: Utc::now(),
            spaces: RefCell::new(HashMap::new()),
            space_versions: RefCell::new(HashMap::new()),
            entities: RefCell::new(HashMap::new()),
            touched: TouchedLog::default(),
            quiet: std::cell::Cell::new(false),
            presumed: RefCell::new(None),
            answer_left: std::cell::Cell::new(DEFAULT_MAX_ANSWER_BYTES),
            answer_limit: DEFAULT_MAX_ANSWER_BYTES,
            takes_space_turns: false,
            space_turns: RefCell::new(HashSet::new()),
        }
    }

    /// For a request that writes: the facts of each space it decides on are read
    /// under that space's turn, shared with the other writes into the space and
    /// kept from a change of its lifecycle (`$close`, `$oppose`, `$activate`,
    /// `$reopen`, the lifecycle job), which takes the turn alone
    /// (`service::locks::space`). On PostgreSQL, whose writers run side by side, a
    /// deposit is then decided either before such a change (which waits for it to
    /// commit, and then sees it: a deletion takes it too) or after it (and sees the
    /// new state), never on the state before a change committed meanwhile. SQLite has
    /// one writer at a time.
    pub fn with_space_turns(mut self) -> Gate<'a> {
        self.takes_space_turns = true;
        self
    }

    /// A new write transaction of this request (a batch's next entry): the turns of
    /// the one before ended with it.
    pub fn begin_transaction(&self) {
        self.space_turns.borrow_mut().clear();
    }

    /// [`Self::space_turn`] for each space, in the order given.
    pub fn take_space_turns(&self, conn: &mut Conn, spaces: &[String]) -> Result<(), ApiError> {
        for space in spaces {
            self.space_turn(conn, space)?;
        }
        Ok(())
    }

    /// Takes the space's turn in this write's transaction, once; the facts this
    /// request read of the space before it are read again.
    fn space_turn(&self, conn: &mut Conn, patient: &str) -> Result<(), ApiError> {
        if !self.takes_space_turns
            || !store::dialect::is_postgres(conn)
            || self.space_turns.borrow().contains(patient)
        {
            return Ok(());
        }
        store::dialect::lock_shared(conn, &crate::service::locks::space(patient))?;
        self.space_turns.borrow_mut().insert(patient.to_owned());
        self.spaces.borrow_mut().remove(patient);
        self.space_versions.borrow_mut().remove(patient);
        Ok(())
    }

    /// Bounds the bytes of resource bodies one answer may carry.
    pub fn with_answer_limit(mut self, bytes: usize) -> Gate<'a> {
        self.answer_left = std::cell::Cell::new(bytes);
        self.answer_limit = bytes;
        self
    }

    /// Counts a released body against the answer's bound (413 past it). The first
    /// body always goes (a single resource is bounded by the body limit it was
    /// written under): the bound is on what many bodies add up to.
    fn spend(&self, released: Released) -> Result<Released, ApiError> {
        let size = released.text().len();
        let left = self.answer_left.get();
        if left == self.answer_limit {
            self.answer_left.set(left.saturating_sub(size.max(1)));
            return Ok(released);
        }
        if size > left {
            return Err(ApiError::new(
                actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
                IssueCode::TooCostly,
                format!(
                    "the answer would carry more than {} bytes of resources: ask for fewer (_count, fewer Bundle entries)",
                    self.answer_limit
                ),
            ));
        }
        self.answer_left.set(left - size);
        Ok(released)
    }

    /// Sets the time the rules see (the application's clock).
    pub fn at(mut self, now: DateTime<Utc>) -> Gate<'a> {
        self.now = now;
        self
    }

    /// The time the rules see.
    pub fn now(&self) -> DateTime<Utc> {
        self.now
    }

    /// Shares the request's [`TouchedLog`] with the pipeline.
    pub fn with_touched(mut self, touched: TouchedLog) -> Gate<'a> {
        self.touched = touched;
        self
    }

    /// What the rules read of a space: from this request's memo, else from the shared
    /// cache if the space's access version has not moved, else from the store.
    fn space(&self, conn: &mut Conn, patient: &str) -> Result<Arc<SpaceFacts>, ApiError> {
        self.space_turn(conn, patient)?;
        if let Some(facts) = self.spaces.borrow().get(patient) {
            return Ok(Arc::clone(facts));
        }
        // The version is read before the documents: a write in between leaves newer
        // facts under the older version, which the next request misses.
        let known = self.space_versions.borrow_mut().remove(patient);
        if known.is_none()
            && let Some(presumed) = self.presumed.borrow_mut().as_mut()
            && let Some((version, facts)) = self.cache.latest(patient)
        {
            // Neither kept for the request nor trusted: only a statement that reads
            // the version with the rows it decides confirms them.
            presumed.push((patient.to_owned(), version));
            return Ok(facts);
        }
        let version = match known {
            Some(version) => version,
            None => store::access::space_version(conn, patient)?,
        };
        let facts = match self.cache.get(patient, version) {
            Some(facts) => facts,
            None => {
                let documents = store::access::space_documents(conn, patient)?;
                let facts = Arc::new(SpaceFacts::from_documents(
                    documents.patient.as_deref(),
                    &documents.consents,
                    documents.lifecycle.as_ref(),
                ));
                // Facts a write's transaction read after writing may never be
                // committed: the write may roll back, and another instance commit
                // the same version with other facts. This request keeps them; the
                // instance's cache, only facts read as committed.
                if store::dialect::reads_committed_only(conn) {
                    self.cache.put(patient, version, Arc::clone(&facts));
                }
                facts
            }
        };
        self.spaces
            .borrow_mut()
            .insert(patient.to_owned(), Arc::clone(&facts));
        Ok(facts)
    }

    /// Access versions of spaces, read in the statement that read the row about to
    /// be decided (`store::resources::current_with_space_versions`): the facts of
    /// those spaces are then taken as of that statement, without reading the
    /// version again.
    pub fn knows_space_versions(&self, versions: store::resources::SpaceVersions) {
        self.space_versions.borrow_mut().extend(versions);
    }

    /// R-ACC-2 to R-ACC-5 for a professional on a space (403 when refused).
    fn professional_space(&self, conn: &mut Conn, patient: &str) -> Result<SpaceAccess, ApiError> {
        let facts = self.space(conn, patient)?;
        if !facts.exists {
            return Err(ApiError::not_found(format!(
                "Patient/{patient} is not known"
            )));
        }
        professional::space_access(self.principal, &facts, self.now).map_err(refused)
    }

    /// A professional was let into this space's content (R-AUD-4 tells the first
    /// access and every emergency one): not when deciding quietly what a body or a
    /// search names.
    fn note_access(&self, patient: &str) {
        if !self.quiet.get() {
            self.touched.accessed(patient);
        }
    }

    /// One month before now: INVISIBLE_PATIENT lapses for documents deposited before.
    fn month_ago(&self) -> String {
        index_format(
            self.now
                .checked_sub_months(Months::new(1))
                .unwrap_or(self.now),
        )
    }

    /// The narrowing of a patient or representative: their space, and the labels
    /// hidden from them (R-PAT-1, R-PAT-5).
    fn holder_narrowing(&self, patient: &str, def: &ResourceDef) -> Narrowing {
        let mut narrowing = Narrowing {
            compartment: Some(vec![patient.to_owned()]),
            ..Narrowing::default()
        };
        if def.name == "List" {
            let documents = definitions::resource("DocumentReference").expect("served");
            narrowing.list_documents = Some(Box::new(self.holder_narrowing(patient, documents)));
        }
        if def.name == "DocumentReference" {
            narrowing.invisible_patient_since = Some(self.month_ago());
            if self.principal.actor == ActorKind::Representative {
                narrowing.hidden_labels = vec![INVISIBLE_REPRESENTANTS_LEGAUX.to_owned()];
            }
        }
        narrowing
    }

    /// The one patient a professional's search names (`patient`, `subject`, or a
    /// chain into Patient). `Ok(None)`: the chain matches no patient.
    fn named_patient(
        &self,
        conn: &mut Conn,
        request: &SearchRequest,
    ) -> Result<Option<String>, ApiError> {
        let missing = || {
            refused(Verdict::deny(
                "R-ACC-3",
                "a professional's search must name one patient (patient=, subject= or patient.identifier=): access is decided per space",
            ))
        };
        let mut named: Vec<Option<String>> = Vec::new();
        for criterion in &request.criteria {
            match criterion {
                Criterion::Reference { param, values }
                    if matches!(*param, "patient" | "subject") =>
                {
                    if values.len() != 1
                        || values[0].0.as_deref().is_some_and(|kind| kind != "Patient")
                    {
                        return Err(missing());
                    }
                    named.push(Some(values[0].1.clone()));
                }
                Criterion::Chain {
                    param,
                    target,
                    inner,
                } if matches!(*param, "patient" | "subject") && *target == "Patient" => {
                    let patient_def = definitions::resource("Patient").expect("Patient is served");
                    let mut lookup = crate::fhir::search::parse(
                        patient_def,
                        &[],
                        false,
                        PageLimits::pages(2, 2),
                    )?;
                    lookup.criteria.push((**inner).clone());
                    let rows = store::search::run(conn, &lookup, &Narrowing::none())?.rows;
                    match rows.as_slice() {
                        [] => named.push(None),
                        [one] => named.push(Some(one.res_id.clone())),
                        // A lookup of several people, refused.
                        several => {
                            self.touched
                                .people_found(several.iter().map(|row| row.res_id.as_str()));
                            return Err(missing());
                        }
                    }
                }
                _ => {}
            }
        }
        match named.as_slice() {
            [] => Err(missing()),
            [one] => Ok(one.clone()),
            several if several.iter().all(|item| item == &several[0]) => Ok(several[0].clone()),
            _ => Ok(None),
        }
    }

    /// Forgets what this request read of a space (it has just changed it).
    pub fn forget(&self, patient: &str) {
        self.spaces.borrow_mut().remove(patient);
    }

    /// The state of a space at the gate's time (R-LIFE-4).
    pub fn space_state(&self, conn: &mut Conn, patient: &str) -> Result<State, ApiError> {
        Ok(self.space(conn, patient)?.state_at(self.now))
    }

    /// The rules of a patient's or representative's own space: a representative loses
    /// access at the person's majority (R-LIFE-5); a closed or opposed space holds
    /// nothing to read or feed (R-LIFE-3, R-LIFE-2) until it is reopened or activated.
    fn holder_space(&self, conn: &mut Conn, patient: &str, data: bool) -> Result<(), ApiError> {
        let facts = self.space(conn, patient)?;
        if let Some(verdict) = holder_rules(self.principal, &facts, self.now, data) {
            return Err(refused(verdict));
        }
        Ok(())
    }

    /// R-LIFE-5 for operations on a space, which the holder may run whatever its state.
    pub fn check_holder_operation(&self, conn: &mut Conn, patient: &str) -> Result<(), ApiError> {
        self.check_own_space(patient)?;
        self.touched.patient(patient);
        self.holder_space(conn, patient, false)
    }

    /// The first half of [`Self::check_holder_operation`], without the store: the
    /// space is the caller's own (their Patient, or the one they represent).
    pub fn check_own_space(&self, patient: &str) -> Result<(), ApiError> {
        if self.principal.own_patient() != Some(patient) {
            return Err(hidden(
                &format!("Patient/{patient}"),
                &Verdict::deny(OWN_SPACE, "outside the caller's own space"),
            ));
        }
        Ok(())
    }

    /// The code systems a document's type is written in: the matrix's (R-ACC-6).
    pub fn document_type_systems(&self) -> &[String] {
        self.matrix.type_systems()
    }

    /// R-ACC-10 / TD0.2: for a professional reading a Patient, the status of their
    /// authorisation on that space: `VALIDE`, `INTERDIT` (blocked) or `NON_EXISTE`.
    /// `None` for other callers.
    pub fn authorisation_status(
        &self,
        conn: &mut Conn,
        patient: &str,
    ) -> Result<Option<&'static str>, ApiError> {
        if self.principal.actor != ActorKind::Professional {
            return Ok(None);
        }
        let facts = self.space(conn, patient)?;
        let status = if professional::r_acc_2_blocked(self.principal, &facts).is_some() {
            "INTERDIT"
        } else if professional::r_acc_3_authorised(self.principal, &facts).is_some() {
            "VALIDE"
        } else {
            "NON_EXISTE"
        };
        Ok(Some(status))
    }

    /// A professional's search of one space, decided on the facts this process
    /// cached of that space at their latest version, without reading the version
    /// first (one round trip fewer). Nothing is recorded for the trace. The page's
    /// statement then reads the space's version with its rows
    /// (`store::search::run_with_contents`); the caller hands that version to
    /// [`Self::knows_space_versions`], decides again with [`Self::search_narrowing`],
    /// and keeps the page only if it was read at the presumed version and both
    /// decisions agree. `None` when nothing can be presumed (no cached facts, a
    /// refusal, a chained search, another actor or type): decide as usual.
    pub fn presumed_search_narrowing(
        &self,
        conn: &mut Conn,
        request: &SearchRequest,
    ) -> Option<PresumedNarrowing> {
        if cfg!(feature = "bench-rules-off")
            || self.principal.actor != ActorKind::Professional
            || matches!(request.resource.name, "Patient" | "AuditEvent" | "List")
            // A chain names its patient through a lookup of its own.
            || request
                .criteria
                .iter()
                .any(|criterion| matches!(criterion, Criterion::Chain { .. }))
        {
            return None;
        }
        *self.presumed.borrow_mut() = Some(Vec::new());
        let decided = self.quietly(|| self.search_narrowing(conn, request));
        let presumed = self.presumed.borrow_mut().take().unwrap_or_default();
        let narrowing = decided.ok()?;
        match (presumed.as_slice(), narrowing.compartment.as_deref()) {
            ([(space, version)], Some([patient])) if space == patient => Some(PresumedNarrowing {
                space: space.clone(),
                version: *version,
                narrowing,
            }),
            _ => None,
        }
    }

    /// The narrowing of a search (the narrow stage).
    pub fn search_narrowing(
        &self,
        conn: &mut Conn,
        request: &SearchRequest,
    ) -> Result<Narrowing, ApiError> {
        if cfg!(feature = "bench-rules-off") {
            return Ok(Narrowing::none());
        }
        let def = request.resource;
        chains_only_into_the_space(request)?;
        let narrowing = self.actor_narrowing(conn, request)?;
        // A List searched by an item it names: only by one the caller may see, or
        // the match would tell that a hidden document exists (R-MHD-5). Decided after
        // the space's own rules (a refusal there is the answer).
        if def.name == "List" && !self.items_searchable(conn, request)? {
            return Ok(Narrowing {
                compartment: Some(Vec::new()),
                ..Narrowing::default()
            });
        }
        // The trace searched by a resource it names: only by one the reader may see,
        // or the count would tell a hidden one exists (R-PAT-1, R-ACC-6, R-ACC-7).
        if def.name == "AuditEvent" && !self.entities_searchable(conn, request)? {
            return Ok(Narrowing {
                compartment: Some(Vec::new()),
                ..Narrowing::default()
            });
        }
        Ok(narrowing)
    }

    /// The narrowing of a search by the caller's actor kind (see
    /// [`Self::search_narrowing`]).
    fn actor_narrowing(
        &self,
        conn: &mut Conn,
        request: &SearchRequest,
    ) -> Result<Narrowing, ApiError> {
        let def = request.resource;
        match &self.principal.actor {
            ActorKind::Patient | ActorKind::Representative => {
                let patient = self.principal.own_patient().unwrap_or_default().to_owned();
                self.touched.patient(&patient);
                self.holder_space(conn, &patient, def.name != "Patient")?;
                Ok(self.holder_narrowing(&patient, def))
            }
            // Identity and state of any space (R-ACC-10).
            ActorKind::Professional if def.name == "Patient" => Ok(Narrowing::none()),
            ActorKind::Professional if def.name == "AuditEvent" => {
                self.trace_narrowing(conn, request)
            }
            ActorKind::Professional => {
                let Some(patient) = self.named_patient(conn, request)? else {
                    return Ok(Narrowing {
                        compartment: Some(Vec::new()),
                        ..Narrowing::default()
                    });
                };
                self.touched.patient(&patient);
                let access = self.professional_space(conn, &patient)?;
                let mut narrowing = Narrowing {
                    compartment: Some(vec![patient.clone()]),
                    ..Narrowing::default()
                };
                if def.name == "Communication" {
                    narrowing.participant = Some(self.principal.subject.clone());
                }
                if definitions::is_medical_profile(def.name)
                    && let Some(verdict) =
                        professional::r_acc_12_profession_named(self.principal, self.matrix)
                {
                    return Err(refused(verdict));
                }
                if def.name == "DocumentReference" {
                    self.professional_documents(&mut narrowing, &access)?;
                }
                if def.name == "List" {
                    let mut documents = narrowing.clone();
                    self.professional_documents(&mut documents, &access)?;
                    narrowing.list_documents = Some(Box::new(documents));
                }
                // A type the caller's scopes do not read shows nothing of the space
                // (an include they may not read is emptied): no access.
                if is_space_content(def.name) && self.reads_type(def.name) {
                    self.note_access(&patient);
                }
                Ok(narrowing)
            }
            // R-ACC-12: identities only.
            ActorKind::System if def.name == "Patient" => Ok(Narrowing::none()),
            ActorKind::System | ActorKind::Other(_) => Ok(Narrowing {
                compartment: Some(Vec::new()),
                ..Narrowing::default()
            }),
        }
    }

    /// A professional's narrowing of a space's documents: the types the matrix lets
    /// them read (R-ACC-6), masked ones left out unless they may see them (R-ACC-7).
    fn professional_documents(
        &self,
        narrowing: &mut Narrowing,
        access: &SpaceAccess,
    ) -> Result<(), ApiError> {
        narrowing.document_types = Some(
            match professional::r_acc_6_matrix(self.principal, self.matrix).map_err(refused)? {
                TypeAccess::AllExcept { excluded, systems } => TypeFilter::Excluding {
                    excluded: excluded.clone(),
                    systems: systems.clone(),
                },
                TypeAccess::Only(types) => TypeFilter::Only(types.clone()),
            },
        );
        if !access.sees_masked {
            narrowing.hidden_labels = vec![MASQUE_PS.to_owned()];
            narrowing.hidden_labels_author = Some(self.principal.subject.clone());
        }
        Ok(())
    }

    /// R-MHD-5: a List that names DocumentReferences is seen only when one of them
    /// is shown to the caller (the SQL narrowing's `list_documents`, decided here
    /// row by row): a SubmissionSet of hidden documents would tell of them by its
    /// date, source and class.
    fn list_documents_shown(&self, conn: &mut Conn, list: &Value) -> Result<bool, ApiError> {
        let documents: Vec<String> = values_at(list, "entry.item.reference")
            .into_iter()
            .filter_map(Value::as_str)
            .filter_map(extract::parse_reference)
            .filter(|(kind, _)| kind == "DocumentReference")
            .map(|(_, id)| id)
            .collect();
        if documents.is_empty() {
            return Ok(true);
        }
        for id in documents {
            if self.named_shown(conn, "DocumentReference", &id)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Whether every resource a trace search names by `entity` may be seen by the
    /// caller (a chain through `entity` reads resources: refused to holders).
    fn entities_searchable(
        &self,
        conn: &mut Conn,
        request: &SearchRequest,
    ) -> Result<bool, ApiError> {
        self.named_searchable(
            conn,
            request,
            "entity",
            &[
                "DocumentReference",
                "List",
                "Binary",
                "Communication",
                "Consent",
                "Observation",
                "Condition",
                "MedicationStatement",
                "AllergyIntolerance",
            ],
            "the trace is not searched through the resources it names (entity.…)",
            &|gate, conn, kind, id| gate.named_shown(conn, kind, id),
        )
    }

    /// Whether every resource a List search names by `item` may be seen by the
    /// caller (a chain through `item` reads documents: refused). A served type's
    /// id the caller may not read (hidden, deleted, or held by nothing) makes the
    /// search match nothing: a List's body leaves out such entries alike
    /// ([`Self::list_as_seen`]), and a match on an id nothing holds, against none
    /// on a hidden one, told which ids exist.
    fn items_searchable(&self, conn: &mut Conn, request: &SearchRequest) -> Result<bool, ApiError> {
        self.named_searchable(
            conn,
            request,
            "item",
            &["DocumentReference", "List", "Binary"],
            "Lists are not searched through the resources they name (item.…)",
            &|gate, conn, kind, id| {
                Ok(definitions::resource(kind).is_none() || gate.named_shown(conn, kind, id)?)
            },
        )
    }

    /// Whether every resource a search names through the reference parameter `param`
    /// passes `shown` (an untyped id as each of `kinds` that stores it, or as the
    /// first when none does, so that it is decided as a typed id nothing holds); a
    /// chain through `param` is refused with `chain_refusal`.
    fn named_searchable(
        &self,
        conn: &mut Conn,
        request: &SearchRequest,
        param: &str,
        kinds: &[&str],
        chain_refusal: &str,
        shown: &ShownTest<'_, 'a>,
    ) -> Result<bool, ApiError> {
        for criterion in &request.criteria {
            match criterion {
                Criterion::Chain { param: name, .. } if *name == param => {
                    return Err(ApiError::bad_request(
                        IssueCode::NotSupported,
                        chain_refusal,
                    ));
                }
                Criterion::Reference {
                    param: name,
                    values,
                } if *name == param => {
                    for (kind, id) in values {
                        let searchable = match kind {
                            Some(kind) => shown(self, conn, kind, id)?,
                            // An untyped id: as each of `kinds` that stores it (a
                            // resource hidden as one of them hides it), and it must
                            // be stored as one, as a typed id must.
                            None => {
                                let mut stored_as = Vec::new();
                                for kind in kinds {
                                    if self.named_held(conn, kind, id)? != Named::Missing {
                                        stored_as.push(*kind);
                                    }
                                }
                                if stored_as.is_empty() {
                                    shown(self, conn, kinds[0], id)?
                                } else {
                                    let mut all = true;
                                    for kind in stored_as {
                                        all &= shown(self, conn, kind, id)?;
                                    }
                                    all
                                }
                            }
                        };
                        if !searchable {
                            return Ok(false);
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(true)
    }

    /// The narrowing of a conditional create's match (`If-None-Exist`): what the
    /// caller may search; for the system, which searches nothing medical, the
    /// resources it deposited itself (R-ACC-9's author), so that a feed deposits
    /// idempotently and learns nothing of anyone else's.
    pub fn conditional_narrowing(
        &self,
        conn: &mut Conn,
        request: &SearchRequest,
    ) -> Result<Narrowing, ApiError> {
        if self.principal.actor == ActorKind::System && request.resource.name != "Patient" {
            chains_only_into_the_space(request)?;
            return Ok(Narrowing {
                deposited_by: Some(store::search::Depositor {
                    actor: self.principal.actor.code().to_owned(),
                    subject: self.principal.subject.clone(),
                    organization: self.principal.organization.clone(),
                }),
                ..Narrowing::default()
            });
        }
        self.search_narrowing(conn, request)
    }

    /// R-ACC-11: a professional reads the trace of their own actions; the médecin
    /// traitant of an open space also reads all of that space's trace.
    fn trace_narrowing(
        &self,
        conn: &mut Conn,
        request: &SearchRequest,
    ) -> Result<Narrowing, ApiError> {
        let named = match self.named_patient(conn, request) {
            Ok(named) => named,
            // No space named in any way: the professional's own actions, in every
            // space. Their attempts answered "not known" are among them only when no
            // criterion could tie them to a space (a reference, a chain) or to what
            // the answer hid: such an event is shown without its space.
            Err(error) if error.rule == Some("R-ACC-3") && !names_a_patient(request) => {
                return Ok(Narrowing {
                    participant: Some(self.principal.subject.clone()),
                    without_concealed: !request.criteria.iter().all(ties_to_nothing),
                    ..Narrowing::default()
                });
            }
            // A space named otherwise than by one patient (several, an `entity` or
            // `agent` Patient, a chain matching several): refused as for any other
            // type, so that no such criterion finds an attempt in a space the
            // professional was not told of.
            Err(error) => return Err(error),
        };
        let Some(patient) = named else {
            return Ok(Narrowing {
                compartment: Some(Vec::new()),
                ..Narrowing::default()
            });
        };
        self.touched.patient(&patient);
        let whole_trace = self.reads_whole_trace(conn, &patient)?;
        if whole_trace {
            self.note_access(&patient);
        }
        // Their own actions, by the space they concern, only in a space they may
        // enter: else the count would tell which space a resource hidden from them
        // belongs to (their own actions there read without it, searched without
        // `patient`).
        if !whole_trace && self.professional_space(conn, &patient).is_err() {
            return Ok(Narrowing {
                compartment: Some(Vec::new()),
                ..Narrowing::default()
            });
        }
        Ok(Narrowing {
            compartment: Some(vec![patient]),
            participant: (!whole_trace).then(|| self.principal.subject.clone()),
            // Their own attempts answered "not known" concern no space they were told
            // of: searched by space, they are left out (found without `patient=`,
            // without the space), as an attempt at an id nobody holds.
            without_concealed: !whole_trace,
            ..Narrowing::default()
        })
    }

    /// Whether this professional is the médecin traitant of an open space (R-ACC-11).
    fn reads_whole_trace(&self, conn: &mut Conn, patient: &str) -> Result<bool, ApiError> {
        let facts = self.space(conn, patient)?;
        Ok(facts.exists
            && facts.is_general_practitioner(&self.principal.subject)
            && professional::r_acc_1_space_state(&facts, self.now).is_none())
    }

    /// The narrowing of a history (instance histories are checked on the resource).
    pub fn history_narrowing(
        &self,
        def: &ResourceDef,
        instance: bool,
    ) -> Result<Narrowing, ApiError> {
        match &self.principal.actor {
            ActorKind::Patient | ActorKind::Representative => {
                let patient = self.principal.own_patient().unwrap_or_default().to_owned();
                Ok(Narrowing {
                    compartment: Some(vec![patient]),
                    ..Narrowing::default()
                })
            }
            ActorKind::Professional if !instance && def.name != "Patient" => {
                Err(refused(Verdict::deny(
                    "R-ACC-3",
                    "a professional reads histories one resource at a time: access is decided per space",
                )))
            }
            _ => Ok(Narrowing::none()),
        }
    }

    /// The facts a version is judged by: its content and its own compartment (not
    /// the current row's). A deletion is judged by the live version before it.
    /// `None`: nothing to judge (a deletion with no earlier content).
    fn judged(&self, conn: &mut Conn, stored: &Stored<'_>) -> Result<Option<Judged>, ApiError> {
        if stored.deleted {
            let Some(live) = store::resources::latest_live(
                conn,
                stored.res_type,
                stored.res_id,
                Some(stored.version_id),
            )?
            else {
                return Ok(None);
            };
            return self.judged(conn, &live.stored());
        }
        let def = definitions::resource(stored.res_type)
            .ok_or_else(|| ApiError::internal("a stored resource of an unserved type"))?;
        // A Binary's bytes are not parsed: only its security context counts.
        let (value, compartment) = if stored.res_type == "Binary" {
            let context: BinaryContext = serde_json::from_str(stored.content).unwrap_or_default();
            let value = serde_json::json!({
                "resourceType": "Binary",
                "securityContext": context.security_context,
            });
            let compartment = extract::compartment(def, &value);
            (Value::Null, compartment)
        } else {
            let value: Value = serde_json::from_str(stored.content).unwrap_or(Value::Null);
            let compartment = extract::compartment(def, &value);
            (value, compartment)
        };
        Ok(Some(Judged {
            version_id: stored.version_id,
            value,
            compartment,
        }))
    }

    /// The egress decision: may the caller see this version? A version is seen when
    /// it passes the rules on its own facts and the resource's latest live version
    /// passes too (masking, a type change or a move apply to every version). `Err`
    /// is 404 for a hidden row and 403 for a refusal about the space.
    fn admit(&self, conn: &mut Conn, stored: &Stored<'_>) -> Result<(), ApiError> {
        if cfg!(feature = "bench-rules-off") {
            return Ok(());
        }
        let resource = format!("{}/{}", stored.res_type, stored.res_id);
        let Some(judged) = self.judged(conn, stored)? else {
            return Err(hidden(
                &resource,
                &Verdict::deny("R-ACC-12", "nothing of this resource is readable"),
            ));
        };
        self.admit_judged(conn, stored, &judged)?;
        // The current row is its own latest version (or, deleted, judged by it).
        if stored.current {
            return Ok(());
        }
        if let Some(head) =
            store::resources::latest_live(conn, stored.res_type, stored.res_id, None)?
            && head.version_id != judged.version_id
        {
            let head_stored = head.stored();
            if let Some(head_judged) = self.judged(conn, &head_stored)? {
                self.admit_judged(conn, &head_stored, &head_judged)?;
            }
        }
        Ok(())
    }

    /// The rules on one judged version.
    fn admit_judged(
        &self,
        conn: &mut Conn,
        stored: &Stored<'_>,
        judged: &Judged,
    ) -> Result<(), ApiError> {
        let decision = self.decide_judged(conn, stored, judged);
        // The trace of the spaces concerned shows the access, but a holder refused a
        // resource of their own space that is hidden from them leaves no event there:
        // it would tell them the resource exists (R-PAT-1, R-PAT-5).
        let own = self.principal.own_patient();
        let hidden_from_holder = own.is_some()
            && matches!(&decision, Err(error) if error.concealed)
            && judged
                .compartment
                .iter()
                .all(|patient| Some(patient.as_str()) == own);
        if !hidden_from_holder && !self.quiet.get() {
            // A space the caller is not told of (a resource answered "not known",
            // their own such attempt shown without its space) marks this request's
            // event there concealed: it never ties them to that space.
            let concealed = match &decision {
                Err(error) => error.concealed,
                Ok(()) if stored.res_type == "AuditEvent" => self
                    .own_concealed_refusal(conn, &judged.value)?
                    .is_some_and(|keep_space| !keep_space),
                Ok(()) => false,
            };
            for patient in &judged.compartment {
                if concealed {
                    self.touched.concealed_patient(patient);
                } else {
                    self.touched.patient(patient);
                }
            }
        }
        decision
    }

    fn decide_judged(
        &self,
        conn: &mut Conn,
        stored: &Stored<'_>,
        judged: &Judged,
    ) -> Result<(), ApiError> {
        let resource = format!("{}/{}", stored.res_type, stored.res_id);
        let compartment = &judged.compartment;
        if stored.res_type == "Binary" && !matches!(self.principal.actor, ActorKind::Other(_)) {
            return self.check_binary(conn, stored, compartment);
        }
        match &self.principal.actor {
            ActorKind::Patient | ActorKind::Representative => {
                let own = self.principal.own_patient().unwrap_or_default();
                if compartment.is_empty() || compartment.iter().any(|patient| patient != own) {
                    return Err(hidden(
                        &resource,
                        &Verdict::deny(OWN_SPACE, "outside the caller's own space"),
                    ));
                }
                self.holder_space(conn, own, stored.res_type != "Patient")?;
                if stored.res_type == "DocumentReference" {
                    let (_, labels) = document_facts(&judged.value);
                    // The deposit date matters only to a document awaiting its
                    // announcement (R-PAT-1's lapse).
                    let deposited = if labels.iter().any(|label| label == INVISIBLE_PATIENT) {
                        store::resources::author_of(conn, stored.pk)?
                            .map(|author| author.created_at)
                    } else {
                        None
                    };
                    let representative = self.principal.actor == ActorKind::Representative;
                    if let Some(verdict) = r_pat_hidden(
                        representative,
                        &labels,
                        deposited.as_deref(),
                        &self.month_ago(),
                    ) {
                        return Err(hidden(&resource, &verdict));
                    }
                }
                self.check_list_documents(conn, stored, judged)
            }
            ActorKind::Professional if stored.res_type == "Patient" => Ok(()),
            // R-ACC-11: their own actions; the médecin traitant, the whole trace.
            ActorKind::Professional if stored.res_type == "AuditEvent" => {
                if is_agent(&judged.value, &self.principal.subject)
                    && !has_mark(&judged.value, crate::audit::event::WITHHELD_EXTENSION)
                {
                    return Ok(());
                }
                for patient in compartment {
                    if self.reads_whole_trace(conn, patient)? {
                        self.note_access(patient);
                        return Ok(());
                    }
                }
                Err(hidden(
                    &resource,
                    &Verdict::deny(
                        "R-ACC-11",
                        "a professional reads the trace of their own actions only",
                    ),
                ))
            }
            ActorKind::Professional => {
                let [patient] = compartment.as_slice() else {
                    return Err(hidden(
                        &resource,
                        &Verdict::deny("R-ACC-3", "the resource belongs to no single space"),
                    ));
                };
                let access = self
                    .professional_space(conn, patient)
                    .map_err(|error| unnamed_space(&resource, error))?;
                if stored.res_type == "Communication"
                    && !is_participant(&judged.value, &self.principal.subject)
                {
                    return Err(hidden(
                        &resource,
                        &Verdict::deny(
                            "R-MSG-5",
                            "messages are read by their conversation's participants only",
                        ),
                    ));
                }
                if definitions::is_medical_profile(stored.res_type)
                    && let Some(verdict) =
                        professional::r_acc_12_profession_named(self.principal, self.matrix)
                {
                    return Err(hidden(&resource, &verdict));
                }
                if stored.res_type == "DocumentReference" {
                    let (types, labels) = document_facts(&judged.value);
                    // The depositor matters only to a masked document, and only to a
                    // caller who does not see masked documents as such (R-ACC-7).
                    let depositor =
                        if !access.sees_masked && labels.iter().any(|label| label == MASQUE_PS) {
                            store::resources::author_of(conn, stored.pk)?
                                .filter(|author| author.actor == "professional")
                                .map(|author| author.subject)
                        } else {
                            None
                        };
                    professional::document_visible(
                        self.principal,
                        self.matrix,
                        &access,
                        &types,
                        &labels,
                        depositor.as_deref(),
                    )
                    .map_err(|verdict| hidden(&resource, &verdict))?;
                }
                self.check_list_documents(conn, stored, judged)?;
                // Shown only if the caller's scopes read it too (checked after).
                if is_space_content(stored.res_type) && self.reads_type(stored.res_type) {
                    self.note_access(patient);
                }
                Ok(())
            }
            // R-ACC-12: the system reads identities (to feed the right space), nothing
            // medical.
            ActorKind::System if stored.res_type == "Patient" => Ok(()),
            ActorKind::System => Err(hidden(
                &resource,
                &Verdict::deny("R-ACC-12", "the system actor reads nothing medical"),
            )),
            ActorKind::Other(_) => Err(hidden(
                &resource,
                &Verdict::deny("R-ACC-12", "no access to health data"),
            )),
        }
    }

    /// [`Self::list_documents_shown`] as the egress decision on a List version.
    fn check_list_documents(
        &self,
        conn: &mut Conn,
        stored: &Stored<'_>,
        judged: &Judged,
    ) -> Result<(), ApiError> {
        if stored.res_type != "List" || self.list_documents_shown(conn, &judged.value)? {
            return Ok(());
        }
        Err(hidden(
            &format!("List/{}", stored.res_id),
            &Verdict::deny(
                "R-MHD-5",
                "every document the List names is hidden from the caller",
            ),
        ))
    }

    /// A Binary is read by whoever may read a DocumentReference pointing at it (SPEC
    /// §3) that its own depositor (R-ACC-9's author) put in its own space. One that no
    /// such document points at (yet, or any more) is read by its depositor only.
    fn check_binary(
        &self,
        conn: &mut Conn,
        stored: &Stored<'_>,
        compartment: &[String],
    ) -> Result<(), ApiError> {
        let resource = format!("Binary/{}", stored.res_id);
        let depositor = store::resources::author_of(conn, stored.pk)?;
        let Some(author) = &depositor else {
            return Err(hidden(
                &resource,
                &Verdict::deny("R-ACC-3", "content with no depositor"),
            ));
        };
        // The space's own rules come first, as for any resource of a space (its
        // state, R-ACC-1 / R-LIFE-3; authorisation and blocks, R-ACC-2/3; majority,
        // R-LIFE-5)…
        let own_space = self
            .principal
            .own_patient()
            .is_some_and(|own| compartment.iter().any(|patient| patient == own));
        match (&self.principal.actor, compartment.first()) {
            (ActorKind::Professional, Some(patient)) => {
                self.professional_space(conn, patient)
                    .map_err(|error| unnamed_space(&resource, error))?;
            }
            (ActorKind::Patient | ActorKind::Representative, Some(_)) if own_space => {
                let own = self.principal.own_patient().unwrap_or_default();
                self.holder_space(conn, own, true)?;
            }
            _ => {}
        }
        // …then the documents: pointing at content does not make it one's own, only
        // the documents its depositor put in its space open it.
        let documents =
            store::access::documents_pointing_at(conn, stored.res_id, compartment, author)?;
        let mut refusal = None;
        for head in &documents {
            let Some(document) = store::resources::complete(conn, head.clone())? else {
                continue;
            };
            match self.admit(conn, &document.stored()) {
                Ok(()) => return Ok(()),
                Err(error) if error.rule.is_some() => refusal = refusal.or(error.rule),
                Err(error) if error.status.as_u16() == 404 => {}
                Err(error) => return Err(error),
            }
        }
        if !documents.is_empty() {
            let rule = refusal.unwrap_or("R-ACC-3");
            return Err(hidden(
                &resource,
                &Verdict::deny(rule, "no document pointing at this content is readable"),
            ));
        }
        // Until a document points at it, the content is its depositor's alone. Not
        // the space's holder's: content a document no longer points at (deleted,
        // withdrawn, re-linked) or points at in a form not recognised may belong to
        // a document hidden from them (R-PAT-1, R-PAT-5).
        let deposited_by_caller =
            author.actor == self.principal.actor.code() && author.subject == self.principal.subject;
        if deposited_by_caller && self.principal.actor != ActorKind::System {
            Ok(())
        } else {
            Err(hidden(
                &resource,
                &Verdict::deny(
                    "R-ACC-3",
                    "content no document points at is read by its depositor only",
                ),
            ))
        }
    }

    /// The egress gate: the body of this version for this caller, or the refusal
    /// (404 for a hidden row, 403 for a refusal about the space). Every stored body
    /// that leaves the server comes through here (or [`Self::release_written`]).
    pub fn release(&self, conn: &mut Conn, stored: &Stored<'_>) -> Result<Released, ApiError> {
        let resource = format!("{}/{}", stored.res_type, stored.res_id);
        // A deletion is told (410) only to whoever may see what it deleted.
        self.admit(conn, stored)?;
        if stored.deleted {
            return Err(ApiError::gone(format!(
                "{resource} was deleted (version {})",
                stored.version_id
            )));
        }
        // R-ACC-13: whatever path carries it (an `_include`, a `_revinclude`), a
        // body leaves only under a scope that reads its type.
        if !cfg!(feature = "bench-rules-off")
            && let Some(verdict) = scopes::r_acc_13_reads(self.principal, stored.res_type)
        {
            return Err(hidden(&resource, &verdict));
        }
        self.present(conn, stored)
    }

    /// The egress decision without a body: 404 for a hidden row, 403 for a refusal
    /// about the space (for paths that answer about a resource, not with it).
    pub fn check_read(&self, conn: &mut Conn, stored: &Stored<'_>) -> Result<(), ApiError> {
        self.admit(conn, stored)
    }

    /// [`Self::visible`] without recording an access of the row's space: for the
    /// matching of a conditional operation, a search-like decision.
    pub fn visible_quietly(&self, conn: &mut Conn, stored: &Stored<'_>) -> Result<bool, ApiError> {
        self.quietly(|| self.visible(conn, stored))
    }

    /// Whether a row may be shown (the same decision as [`Self::release`]).
    pub fn visible(&self, conn: &mut Conn, stored: &Stored<'_>) -> Result<bool, ApiError> {
        match self.admit(conn, stored) {
            Ok(()) => Ok(scopes::r_acc_13_reads(self.principal, stored.res_type).is_none()),
            Err(error) if error.rule.is_some() || error.status.as_u16() == 404 => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// The answer to a write: the version written, released when the caller may read
    /// it or deposited the resource (R-ACC-9's author), else no body (the answer
    /// still names the version). The same for a conditional create's match. Never
    /// beyond the caller's scopes (R-ACC-13): a token that may create a type but not
    /// read it gets no body, since what a write stores may hold more than was sent
    /// (an operation composes it from data the scopes do not read).
    pub fn release_written(
        &self,
        conn: &mut Conn,
        stored: &Stored<'_>,
    ) -> Result<Option<Released>, ApiError> {
        if !cfg!(feature = "bench-rules-off")
            && scopes::r_acc_13_reads(self.principal, stored.res_type).is_some()
        {
            return Ok(None);
        }
        let released = match self.release(conn, stored) {
            Err(error) if error.rule.is_some() || error.status.as_u16() == 404 => {
                let depositor = store::resources::author_of(conn, stored.pk)?;
                if professional::r_acc_9_author_only(self.principal, depositor.as_ref()).is_some() {
                    return Ok(None);
                }
                // Nor its author reads what a closed or opposed space archived (a
                // conditional create matching it): the answer names the version.
                let space = store::resources::compartment_of(conn, stored.pk)?;
                if self
                    .open_for_feeding(conn, &space, stored.res_type)
                    .is_err()
                {
                    return Ok(None);
                }
                self.present(conn, stored)
            }
            other => other,
        };
        // A write is not undone for the size of its answer: past the bound, the
        // answer names the version without its body.
        match released {
            Ok(released) => Ok(Some(released)),
            Err(error) if error.status.as_u16() == 413 => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// An event of the holder's trace (R-PAT-4) as they may see it: every access is
    /// there, but an entity naming a resource hidden from them (a document awaiting
    /// its announcement, R-PAT-1; hidden from representatives, R-PAT-5) is left out,
    /// so the trace does not hand over what the rules hide. The stored event (and its
    /// hash chain) is unchanged; the copy shown is tagged `REDACTED`.
    fn redacted_event(&self, conn: &mut Conn, content: &str) -> Result<String, ApiError> {
        let Ok(mut event) = serde_json::from_str::<Value>(content) else {
            return Ok(content.to_owned());
        };
        let Some(entities) = event.get_mut("entity").and_then(Value::as_array_mut) else {
            return Ok(content.to_owned());
        };
        let mut kept = Vec::with_capacity(entities.len());
        let mut left_out_references: Vec<String> = Vec::new();
        let mut left_out = false;
        for entity in entities.drain(..) {
            let named = entity
                .pointer("/what/reference")
                .and_then(Value::as_str)
                .and_then(extract::parse_reference)
                .filter(|(kind, _)| kind != "Patient");
            let shown = match named {
                Some((kind, id)) => self.named_shown(conn, &kind, &id)?,
                None => true,
            };
            if shown {
                kept.push(entity);
            } else {
                left_out = true;
                if let Some(reference) = entity.pointer("/what/reference").and_then(Value::as_str) {
                    left_out_references.push(reference.to_owned());
                }
            }
        }
        // A search's query names resources by id or identifier: values the reader
        // may not verify as theirs to see are masked (R-PAT-1, R-PAT-5), and so are
        // the identities of any other person than the event's own patient (a search
        // matching several people leaves one event in each space, R-PAT-4, R-ACC-11).
        let space = kept
            .iter()
            .filter_map(|entity| entity.pointer("/what/reference").and_then(Value::as_str))
            .filter_map(extract::parse_reference)
            .find(|(kind, _)| kind == "Patient")
            .map(|(_, id)| id);
        let space = match space {
            Some(id) => Some(SpaceIdentity::of(conn, id)?),
            None => None,
        };
        for entity in kept.iter_mut() {
            if self.mask_query(conn, entity, space.as_ref())? {
                left_out = true;
            }
        }
        *entities = kept;
        // The outcome's details (the rule that refused, what was found, a version
        // number, a uniqueId) are for the one who made the request: any other reader
        // sees the status alone, whatever the resource, so that no detail tells of
        // what is hidden from them.
        let own_request = self.principal.actor == ActorKind::Professional
            && is_agent(&event, &self.principal.subject);
        let mut details_cut = false;
        if !own_request
            && let Some(description) = event.get_mut("outcomeDesc")
            && let Some(text) = description.as_str()
        {
            let status: String = text.chars().take_while(char::is_ascii_digit).collect();
            if status != text {
                *description = Value::String(status);
                details_cut = true;
            }
        }
        // The rule of a refusal answered "not known" in a space the request told of
        // is withheld too: what it refused may be of another space, and it would tell
        // that it exists, is masked or of a closed space (and the holder's own
        // attempt was answered without it). An event of a space the request
        // concerned only through what it hid keeps it: the refusal was there.
        if !own_request
            && has_mark(&event, crate::audit::event::ANSWERED_NOT_KNOWN_EXTENSION)
            && !has_mark(&event, crate::audit::event::CONCEALED_EXTENSION)
            && has_mark(&event, crate::audit::event::RULE_EXTENSION)
        {
            remove_extensions(&mut event, &[crate::audit::event::RULE_EXTENSION]);
            details_cut = true;
        }
        if !left_out {
            return Ok(if details_cut {
                event.to_string()
            } else {
                content.to_owned()
            });
        }
        // Nor does the outcome's text name them, nor the rule say why they are hidden
        // (R-ACC-6 would tell a document's type).
        if let Some(description) = event.get_mut("outcomeDesc")
            && let Some(text) = description.as_str()
        {
            let mut text = text.to_owned();
            for reference in &left_out_references {
                text = text.replace(reference.as_str(), "(a resource hidden from you)");
            }
            *description = Value::String(text);
        }
        remove_extensions(&mut event, &[crate::audit::event::RULE_EXTENSION]);
        mark_redacted(&mut event);
        Ok(event.to_string())
    }

    /// Masks, in a query entity (role 24), every value that could name a resource
    /// the reader may not see. Default deny: values are kept for the parameters that
    /// only describe (status, type, dates, names, paging…), for `_id` values and
    /// `Type/id` references naming a live resource shown to the reader (a missing and
    /// a hidden one look alike), for Patient references and identifiers (identities
    /// are readable, R-ACC-10); every other value, a bare id or an unknown parameter
    /// included, is masked. Whether anything was masked.
    fn mask_query(
        &self,
        conn: &mut Conn,
        entity: &mut Value,
        space: Option<&SpaceIdentity>,
    ) -> Result<bool, ApiError> {
        use base64::Engine;
        use base64::engine::general_purpose::STANDARD;
        let Some(encoded) = entity.get("query").and_then(Value::as_str) else {
            return Ok(false);
        };
        let Some(query) = STANDARD
            .decode(encoded)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
        else {
            return Ok(false);
        };
        let searched = values_at(entity, "detail")
            .into_iter()
            .find(|detail| {
                detail.get("type").and_then(Value::as_str)
                    == Some(crate::audit::event::QUERY_TYPE_DETAIL)
            })
            .and_then(|detail| detail.get("valueString").and_then(Value::as_str))
            .map(str::to_owned);
        let mut masked = false;
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (key, value) in form_urlencoded::parse(query.as_bytes()).into_owned() {
            // Item by item: `identifier=<theirs>,<another person's>` keeps theirs.
            let mut items = Vec::new();
            for item in value.split(',') {
                if self.query_value_shown(conn, searched.as_deref(), space, &key, item)? {
                    items.push(item);
                } else {
                    masked = true;
                    items.push("(masqué)");
                }
            }
            pairs.push((key, items.join(",")));
        }
        if masked {
            let rewritten = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&pairs)
                .finish();
            entity["query"] = Value::String(STANDARD.encode(rewritten.as_bytes()));
        }
        Ok(masked)
    }

    /// A batch's event as this reader sees its entries' refusals (those answered
    /// "not known" are never shown, see `audit::event::INTERNAL_MARKS`): a reader
    /// who does not read the whole space as its holder or médecin traitant do (an
    /// app narrowed by scopes, a profession outside the matrix) reads no entry's
    /// rule, which would tell what the space holds.
    fn entry_refusals_as_seen(&self, content: String) -> String {
        use crate::audit::event::RULE_EXTENSION;
        if !content.contains("\"code\":\"batch\"") || !content.contains(RULE_EXTENSION) {
            return content;
        }
        let whole_space = self.principal.scopes.is_none()
            && match self.principal.actor {
                ActorKind::Patient | ActorKind::Representative => true,
                ActorKind::Professional => {
                    professional::r_acc_12_profession_named(self.principal, self.matrix).is_none()
                }
                _ => false,
            };
        let Ok(mut event) = serde_json::from_str::<Value>(&content) else {
            return content;
        };
        let own = self.principal.actor == ActorKind::Professional
            && is_agent(&event, &self.principal.subject);
        if own || whole_space {
            return content;
        }
        remove_extensions(&mut event, &[RULE_EXTENSION]);
        mark_redacted(&mut event);
        event.to_string()
    }

    /// Whether the caller may read resources of this type at all (their scopes,
    /// R-ACC-13; the medical profile, R-ACC-12), whatever the space.
    fn reads_type(&self, kind: &str) -> bool {
        if scopes::r_acc_13_reads(self.principal, kind).is_some() {
            return false;
        }
        !(self.principal.actor == ActorKind::Professional
            && definitions::is_medical_profile(kind)
            && professional::r_acc_12_profession_named(self.principal, self.matrix).is_some())
    }

    /// Whether a query value may be shown as it was sent (see [`Self::mask_query`]).
    fn query_value_shown(
        &self,
        conn: &mut Conn,
        searched: Option<&str>,
        space: Option<&SpaceIdentity>,
        key: &str,
        value: &str,
    ) -> Result<bool, ApiError> {
        /// Parameters whose values describe, never name, a resource.
        const DESCRIPTIVE: &[&str] = &[
            "status",
            "type",
            "category",
            "date",
            "_lastUpdated",
            "code",
            "security-label",
            "period",
            "period-start",
            "period-end",
            "creation",
            "setting",
            "facility",
            "format",
            "event",
            "contenttype",
            "isArchived",
            "designationType",
            "sent",
            "outcome",
            "subtype",
            "action",
            "purpose",
            "gender",
            "author.given",
            "author.family",
            "source.given",
            "source.family",
        ];
        /// What shapes a search's answer, never what it looks for.
        const STRUCTURAL: &[&str] = &[
            "_count",
            "_offset",
            "_sort",
            "_total",
            "_summary",
            "_elements",
            "_format",
            "_include",
            "_revinclude",
        ];
        let name = key.split(':').next().unwrap_or("");
        // A search of a type the reader may not read (outside their scopes, R-ACC-13;
        // the medical profile for a profession outside the matrix, R-ACC-12) shows
        // nothing it looked for: a condition's or a treatment's code is health data.
        if let Some(kind) = searched
            && !self.reads_type(kind)
            && !STRUCTURAL.contains(&name)
        {
            return Ok(false);
        }
        if DESCRIPTIVE.contains(&name) || STRUCTURAL.contains(&name) {
            return Ok(true);
        }
        // Identities (R-ACC-10): a Patient's identifier, a chain to the Patient.
        let on_patient = searched == Some("Patient")
            || name.starts_with("patient.")
            || name.starts_with("subject.")
            || name.starts_with("subject:Patient.");
        // A Patient search by name: the event's own patient's names only (another
        // person searched beside them is not the reader's to learn).
        if searched == Some("Patient") && matches!(name, "family" | "given") {
            return Ok(space.is_some_and(|space| space.has_name(value)));
        }
        if searched == Some("Patient") && name == "birthdate" {
            return Ok(space.is_some_and(|space| space.was_born_on(value)));
        }
        if name == "identifier" || name.ends_with(".identifier") {
            return Ok(on_patient
                && value
                    .split(',')
                    .all(|item| space.is_some_and(|space| space.has_identifier(item))));
        }
        let own_patient = |id: &str| space.is_some_and(|space| space.id == id);
        let mut all = true;
        for item in value.split(',') {
            let named = if name == "_id" {
                searched.map(|kind| (kind.to_owned(), item.to_owned()))
            } else {
                extract::parse_reference(item)
            };
            all &= match named {
                Some((kind, id)) if kind == "Patient" => own_patient(&id),
                // `patient=<id>` / `subject=<id>`: a Patient's id.
                None if matches!(name, "patient" | "subject") && crate::fhir::is_valid_id(item) => {
                    own_patient(item)
                }
                Some((kind, id)) => {
                    definitions::resource(&kind).is_some() && self.named_shown(conn, &kind, &id)?
                }
                None => false,
            };
        }
        Ok(all)
    }

    /// Whether `event` is the reader's own action answered "not known" (a resource
    /// hidden from them, or a space they were not told of), and if so whether they
    /// keep its space: the médecin traitant keeps it (their patient's), not the
    /// rule (R-ACC-6, R-ACC-7 say why the resource is hidden from them).
    fn own_concealed_refusal(
        &self,
        conn: &mut Conn,
        event: &Value,
    ) -> Result<Option<bool>, ApiError> {
        // Only the reader's own requests were answered to them.
        if self.principal.actor != ActorKind::Professional
            || !is_agent(event, &self.principal.subject)
        {
            return Ok(None);
        }
        // Marked so (events of earlier versions: concealed only, or a 404, or a
        // 412 to an If-Match on it, naming a rule).
        let answered = has_mark(event, crate::audit::event::ANSWERED_NOT_KNOWN_EXTENSION);
        let concealed = has_mark(event, crate::audit::event::CONCEALED_EXTENSION)
            || !answered
                && event
                    .get("outcomeDesc")
                    .and_then(Value::as_str)
                    .is_some_and(|text| {
                        text.starts_with("404: rule ") || text.starts_with("412: rule ")
                    });
        if !concealed {
            // A space they were told of: they keep it, and read the answer's words.
            return Ok(answered.then_some(true));
        }
        let spaces: Vec<String> = values_at(event, "entity.what.reference")
            .into_iter()
            .filter_map(Value::as_str)
            .filter_map(extract::parse_reference)
            .filter(|(kind, _)| kind == "Patient")
            .map(|(_, id)| id)
            .collect();
        let mut keep_space = false;
        for patient in &spaces {
            keep_space |= self.reads_whole_trace(conn, patient)?;
        }
        Ok(Some(keep_space))
    }

    /// A professional's own action (R-ACC-11) that was answered "not known" (a
    /// resource hidden from them) reads as it was answered: without the rule and the
    /// space (its Patient entity), which would tell that the resource exists and
    /// whose it is. The médecin traitant of that space keeps the space.
    fn own_refusal_as_answered(&self, conn: &mut Conn, content: &str) -> Result<String, ApiError> {
        let Ok(mut event) = serde_json::from_str::<Value>(content) else {
            return Ok(content.to_owned());
        };
        let Some(keep_space) = self.own_concealed_refusal(conn, &event)? else {
            return Ok(content.to_owned());
        };
        if !keep_space && let Some(entities) = event.get_mut("entity").and_then(Value::as_array_mut)
        {
            entities.retain(|entity| {
                !entity
                    .pointer("/what/reference")
                    .and_then(Value::as_str)
                    .is_some_and(|reference| reference.starts_with("Patient/"))
            });
        }
        if let Some(description) = event.get_mut("outcomeDesc")
            && let Some(text) = description.as_str()
        {
            // "404: rule R-…: X is not known" → "404: X is not known", as answered.
            let status: String = text.chars().take_while(char::is_ascii_digit).collect();
            let answered = text
                .strip_prefix(&format!("{status}: rule "))
                .and_then(|rest| rest.split_once(": "))
                .map(|(_, detail)| format!("{status}: {detail}"))
                .unwrap_or(status);
            *description = Value::String(answered);
        }
        remove_extensions(
            &mut event,
            &[
                crate::audit::event::RULE_EXTENSION,
                crate::audit::event::CONCEALED_EXTENSION,
            ],
        );
        Ok(event.to_string())
    }

    /// A List as this caller may see it (R-MHD-5): an entry naming a resource hidden
    /// from them (a masked document, a type the matrix keeps from them, one outside
    /// their scopes) is left out, and the List is marked `SUBSETTED`, so that a
    /// SubmissionSet or Folder never tells what the rules hide. An entry naming a
    /// served type's id that nothing readable holds (never stored, deleted) is left
    /// out too, so that missing and hidden look alike; contained (`#id`) and external
    /// items stay.
    fn list_as_seen(&self, conn: &mut Conn, content: &str) -> Result<String, ApiError> {
        let Ok(mut list) = serde_json::from_str::<Value>(content) else {
            return Ok(content.to_owned());
        };
        let Some(entries) = list.get_mut("entry").and_then(Value::as_array_mut) else {
            return Ok(content.to_owned());
        };
        let mut kept = Vec::with_capacity(entries.len());
        let mut left_out = false;
        for entry in entries.drain(..) {
            let named = entry
                .pointer("/item/reference")
                .and_then(Value::as_str)
                .and_then(extract::parse_reference);
            let shown = match named {
                Some((kind, id)) if definitions::resource(&kind).is_some() => {
                    self.named_shown(conn, &kind, &id)?
                }
                _ => true,
            };
            if shown {
                kept.push(entry);
            } else {
                left_out = true;
            }
        }
        *entries = kept;
        if !left_out {
            return Ok(content.to_owned());
        }
        if list
            .get("entry")
            .and_then(Value::as_array)
            .is_some_and(Vec::is_empty)
            && let Some(object) = list.as_object_mut()
        {
            object.shift_remove("entry");
        }
        if let Some(meta) = list.get_mut("meta") {
            mark_shown_in_part(
                meta,
                "tag",
                serde_json::json!({
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
                    "code": "SUBSETTED"
                }),
            );
        }
        Ok(list.to_string())
    }

    /// Whether a resource a body or a search names (a List's entry, an event's
    /// entity, a query's value) may be named to this caller: it exists, is live and
    /// passes the egress gate; a deleted or purged resource and a hidden one look
    /// alike. Memoised for the request.
    fn named_shown(&self, conn: &mut Conn, kind: &str, id: &str) -> Result<bool, ApiError> {
        Ok(self.named_held(conn, kind, id)? == Named::Shown)
    }

    /// What `kind/id` is to the caller: held by nothing, held but hidden (or
    /// deleted), or shown. Memoised for the request.
    fn named_held(&self, conn: &mut Conn, kind: &str, id: &str) -> Result<Named, ApiError> {
        let key = format!("{kind}/{id}");
        if let Some(named) = self.entities.borrow().get(&key) {
            return Ok(*named);
        }
        // Deciding what a body or a search may name is not an access of that
        // resource's space: it leaves no trace there.
        let named = match store::resources::current(conn, kind, id)? {
            None => Named::Missing,
            Some(row) if !row.deleted && self.quietly(|| self.visible(conn, &row.stored()))? => {
                Named::Shown
            }
            Some(_) => Named::Hidden,
        };
        self.entities.borrow_mut().insert(key, named);
        Ok(named)
    }

    /// Runs a check of what a body or a search may name without recording it as an
    /// access of the spaces it looks into.
    fn quietly<T>(&self, check: impl FnOnce() -> T) -> T {
        let was = self.quiet.replace(true);
        let result = check();
        self.quiet.set(was);
        result
    }

    /// The stored text as this caller sees it: a Patient shows its space's state
    /// (R-LIFE-4), and a professional reading it is told the status of their
    /// authorisation on that space (R-ACC-10, DMP TD0.2).
    fn present(&self, conn: &mut Conn, stored: &Stored<'_>) -> Result<Released, ApiError> {
        if stored.res_type == "AuditEvent" && self.principal.own_patient().is_some() {
            let redacted = self.redacted_event(conn, stored.content)?;
            let redacted = self.entry_refusals_as_seen(redacted);
            return self.spend(Released::from_store(without_concealed_mark(redacted)));
        }
        // A professional's trace (their own actions; the médecin traitant's, the
        // whole space's) is redacted by the same rules: an event does not hand over
        // a resource the matrix or a masking keeps from them (R-ACC-6, R-ACC-7).
        if stored.res_type == "AuditEvent" && self.principal.actor == ActorKind::Professional {
            let redacted = self.redacted_event(conn, stored.content)?;
            let redacted = self.entry_refusals_as_seen(redacted);
            let answered = self.own_refusal_as_answered(conn, &redacted)?;
            return self.spend(Released::from_store(without_concealed_mark(answered)));
        }
        if stored.res_type == "List" && !stored.content.is_empty() {
            return self.spend(Released::from_store(
                self.list_as_seen(conn, stored.content)?,
            ));
        }
        if stored.res_type != "Patient" || stored.content.is_empty() {
            return self.spend(Released::from_store(stored.content.to_owned()));
        }
        let state = self.space_state(conn, stored.res_id)?;
        // PDSm4DMP TD0.2: `active` says whether the space is open (false when
        // opposed or closed), whatever the feed wrote.
        let open = matches!(state, State::Pending | State::Active);
        let content =
            crate::fhir::stored::with_member(stored.content, "active", &Value::Bool(open));
        let mut content = crate::fhir::stored::with_extension(
            &content,
            &serde_json::json!({ "url": crate::lifecycle::SPACE_STATE_EXTENSION, "valueCode": state.code() }),
        );
        if let Some(status) = self.authorisation_status(conn, stored.res_id)? {
            content = crate::fhir::stored::with_extension(
                &content,
                &serde_json::json!({ "url": crate::fhir::stored::AUTHORISATION_EXTENSION, "valueCode": status }),
            );
        }
        self.spend(Released::from_store(content))
    }

    /// The first half of the write gate: may the caller change or delete this
    /// existing resource at all? Decided before anything of the change is applied,
    /// so that a failing change (a JSON Patch `test`) tells nothing to a caller who
    /// may not touch the resource. The system changes only what it deposited
    /// (R-ACC-9) and, reading nothing medical, is told nothing else; everyone else
    /// must first see the resource.
    pub fn check_writable(&self, conn: &mut Conn, row: &ResourceRow) -> Result<(), ApiError> {
        if cfg!(feature = "bench-rules-off") {
            return Ok(());
        }
        let resource = format!("{}/{}", row.res_type, row.res_id);
        match &self.principal.actor {
            ActorKind::System => {
                let depositor = store::resources::author_of(conn, row.pk)?;
                match professional::r_acc_9_author_only(self.principal, depositor.as_ref()) {
                    None => {
                        let space = store::resources::compartment_of(conn, row.pk)?;
                        self.open_for_feeding(conn, &space, &row.res_type)
                    }
                    Some(verdict) if row.res_type == "Patient" => Err(refused(verdict)),
                    Some(verdict) => Err(hidden(&resource, &verdict)),
                }
            }
            _ => self.admit(conn, &row.stored()),
        }
    }

    /// R-ACC-1 for the feed's writes and their answers: the spaces `space` (of a
    /// resource other than a Patient, whose state is the lifecycle's) are open. A closed or opposed
    /// space's data is archived: the feed neither adds to it nor changes, moves or
    /// tests it (a PATCH `test` would read it).
    fn open_for_feeding(
        &self,
        conn: &mut Conn,
        space: &[String],
        res_type: &str,
    ) -> Result<(), ApiError> {
        if res_type == "Patient" {
            return Ok(());
        }
        for patient in space {
            let facts = self.space(conn, patient)?;
            if let Some(verdict) = professional::r_acc_1_space_state(&facts, self.now) {
                return Err(refused(verdict));
            }
        }
        Ok(())
    }

    /// The write gate, on before and after: `before` is the current row of an
    /// update, patch or delete (already [`Self::check_writable`]), `after` the new
    /// content of a create, update or patch. Both spaces count (a change of
    /// `subject` is a deposit into the new space), and a PATCH is judged by the
    /// elements it changes, whatever its operations.
    pub fn check_write(
        &self,
        conn: &mut Conn,
        def: &ResourceDef,
        interaction: Interaction,
        before: Option<&ResourceRow>,
        after: Option<&Value>,
    ) -> Result<(), ApiError> {
        if cfg!(feature = "bench-rules-off") {
            return Ok(());
        }
        let before_space = match before {
            Some(row) => store::resources::compartment_of(conn, row.pk)?,
            None => Vec::new(),
        };
        let after_space = after.map(|value| extract::compartment(def, value));
        for patient in before_space.iter().chain(after_space.iter().flatten()) {
            self.touched.patient(patient);
        }
        if let (Some(before), Some(after)) = (before, after) {
            check_changed_elements(def, interaction, &before.content, after)?;
        }
        let depositor = match before {
            Some(row) => store::resources::author_of(conn, row.pk)?,
            None => None,
        };
        // A deposit: a new resource, or an existing one moved to another space.
        let deposit_into = match (&after_space, before) {
            (Some(space), None) => Some(space.as_slice()),
            (Some(space), Some(_)) if *space != before_space => Some(space.as_slice()),
            _ => None,
        };
        if let Some(message) = after
            && def.name == "Communication"
        {
            self.check_sender(message)?;
        }

        // R-PAT-2, R-ACC-7: masking is the patient's decision; whoever else writes a
        // masked document keeps it masked…
        if def.name == "DocumentReference"
            && self.principal.own_patient().is_none()
            && let (Some(before), Some(after)) = (before, after)
        {
            // Judged as the gate judges any version: a deletion by the live version
            // before it, so that deleting and writing again does not unmask.
            let was_masked = self.judged(conn, &before.stored())?.is_some_and(|judged| {
                document_facts(&judged.value)
                    .1
                    .iter()
                    .any(|label| label == MASQUE_PS)
            });
            // …but a professional who masked it (at the patient's request, PDSm
            // TD3.3a) lifts their own masking.
            let own_masking = was_masked
                && store::resources::masked_by(conn, before.pk)?.is_some_and(|(actor, subject)| {
                    actor == self.principal.actor.code() && subject == self.principal.subject
                });
            if was_masked
                && !own_masking
                && !document_facts(after)
                    .1
                    .iter()
                    .any(|label| label == MASQUE_PS)
            {
                return Err(refused(Verdict::deny(
                    "R-PAT-2",
                    "only the patient, or the professional who masked it, unmasks a document (MASQUE_PS stays)",
                )));
            }
        }
        self.check_write_by_actor(
            conn,
            def,
            interaction,
            before,
            after,
            ActorWrite {
                before_space: &before_space,
                after_space: after_space.as_deref(),
                depositor: depositor.as_ref(),
                deposit_into,
            },
        )?;
        // A List is replaced whole only by whoever sees all it names: written back
        // from a view without the entries hidden from the writer, it would lose them
        // for everyone (R-MHD-5).
        if def.name == "List"
            && let Some(before) = before
            && !before.deleted
            && self.list_as_seen(conn, &before.content)? != before.content
        {
            return Err(ApiError::conflict(
                "this List names resources you may not see: it cannot be replaced by you",
            )
            .by_rule("R-MHD-5"));
        }
        Ok(())
    }

    /// The write gate's rules of each actor kind (see [`Self::check_write`]).
    fn check_write_by_actor(
        &self,
        conn: &mut Conn,
        def: &ResourceDef,
        interaction: Interaction,
        before: Option<&ResourceRow>,
        after: Option<&Value>,
        write: ActorWrite<'_>,
    ) -> Result<(), ApiError> {
        let ActorWrite {
            before_space,
            after_space,
            depositor,
            deposit_into,
        } = write;
        match &self.principal.actor {
            ActorKind::Patient | ActorKind::Representative => {
                let own = self.principal.own_patient().unwrap_or_default();
                let outside = before_space
                    .iter()
                    .chain(after_space.into_iter().flatten())
                    .any(|patient| patient != own);
                let nowhere = after_space.is_some_and(<[String]>::is_empty)
                    || (after.is_none() && before_space.is_empty());
                if outside || nowhere {
                    return Err(refused(Verdict::deny(
                        OWN_SPACE,
                        "cannot write into another space",
                    )));
                }
                self.holder_space(conn, own, true)?;
                // The medical profile is the holder's own word: who stated or measured
                // an entry is their own Patient, never a professional they name (as a
                // message never speaks for one, R-MSG-5).
                if definitions::is_medical_profile(def.name)
                    && let Some(entry) = after
                    && !stated_by_holder(entry, own)
                {
                    return Err(refused(Verdict::deny(
                        "R-UI-1",
                        format!(
                            "a medical profile entry is stated by its holder: asserter, recorder, performer and informationSource are Patient/{own} or absent"
                        ),
                    )));
                }
                // R-MSG-1: the patient answers within a conversation a professional
                // (or the service) started; they never start one.
                if def.name == "Communication" && interaction == Interaction::Create {
                    self.check_reply(conn, own, after)?;
                }
                // R-PAT-2: never change or delete what a professional deposited, but
                // mask and unmask it (PATCH of securityLabel).
                let deposited_by_other = depositor.is_some_and(|author| {
                    author.actor == "professional" || author.actor == "system"
                });
                if def.name == "DocumentReference"
                    && deposited_by_other
                    && interaction != Interaction::Patch
                {
                    return Err(refused(Verdict::deny(
                        "R-PAT-2",
                        "the patient cannot change or delete a document a professional deposited",
                    )));
                }
                // A SubmissionSet or Folder stays its depositor's (R-PAT-2, R-ACC-9).
                if def.name == "List" && deposited_by_other && before.is_some() {
                    return Err(refused(Verdict::deny(
                        "R-PAT-2",
                        "the patient cannot change a SubmissionSet or Folder a professional deposited",
                    )));
                }
                // …whose status and archiving stay the author's (R-ACC-9).
                if def.name == "DocumentReference"
                    && deposited_by_other
                    && let (Some(before), Some(after)) = (before, after)
                {
                    let stored: Value =
                        serde_json::from_str(&before.content).unwrap_or(Value::Null);
                    let label_only = ["status", "extension"]
                        .iter()
                        .all(|element| stored.get(element) == after.get(element));
                    if !label_only {
                        return Err(refused(Verdict::deny(
                            "R-PAT-2",
                            "on a document a professional deposited, the patient changes only its masking (securityLabel)",
                        )));
                    }
                }
                Ok(())
            }
            ActorKind::Professional => {
                if before.is_some()
                    && let Some(verdict) =
                        professional::r_acc_9_author_only(self.principal, depositor)
                {
                    return Err(refused(verdict));
                }
                match deposit_into {
                    Some(space) => self.professional_deposit(conn, def, space, after),
                    None => Ok(()),
                }
            }
            ActorKind::System => {
                if before.is_some()
                    && let Some(verdict) =
                        professional::r_acc_9_author_only(self.principal, depositor)
                {
                    return Err(refused(verdict));
                }
                // A closed or opposed space is fed by nobody (R-LIFE-2, R-LIFE-3):
                // nothing goes into it, and nothing of it is changed or moved out.
                self.open_for_feeding(conn, before_space, def.name)?;
                if let Some(space) = deposit_into {
                    self.open_for_feeding(conn, space, def.name)?;
                }
                Ok(())
            }
            ActorKind::Other(_) => Err(refused(Verdict::deny(
                "R-ACC-12",
                "no access to health data",
            ))),
        }
    }

    /// A professional's deposit into a space (a create, or a move into it).
    fn professional_deposit(
        &self,
        conn: &mut Conn,
        def: &ResourceDef,
        space: &[String],
        resource: Option<&Value>,
    ) -> Result<(), ApiError> {
        let [patient] = space else {
            return Err(refused(Verdict::deny(
                "R-ACC-3",
                "the resource must belong to exactly one patient's space",
            )));
        };
        let facts = self.space(conn, patient)?;
        if let Some(verdict) = professional::r_acc_1_space_state(&facts, self.now) {
            return Err(refused(verdict));
        }
        let allowed = self.deposit_allowed(def, &facts, resource);
        // A deposit of content is an access to the space (R-AUD-4); a message, a
        // declared consent or a blocked professional's deposit (who sees nothing)
        // is not, and leaves the first access to be told when it happens.
        if allowed.is_ok()
            && is_space_content(def.name)
            && professional::r_acc_2_blocked(self.principal, &facts).is_none()
        {
            self.note_access(patient);
        }
        allowed
    }

    /// The rules of a professional's deposit into an open space (see
    /// [`Self::professional_deposit`]).
    fn deposit_allowed(
        &self,
        def: &ResourceDef,
        facts: &crate::access::space::SpaceFacts,
        resource: Option<&Value>,
    ) -> Result<(), ApiError> {
        match def.name {
            // R-ACC-8: deposit when authorised or in emergency; a blocked
            // professional may still deposit.
            "DocumentReference" | "Binary" | "List" => {
                if professional::r_acc_2_blocked(self.principal, facts).is_some() {
                    return Ok(());
                }
                professional::space_access(self.principal, facts, self.now)
                    .map(|_| ())
                    .map_err(refused)
            }
            // R-ACC-3: a professional declares the patient's consent to themselves: a
            // permit naming them, nothing else; not when blocked.
            "Consent" => {
                if let Some(verdict) = professional::r_acc_2_blocked(self.principal, facts) {
                    return Err(refused(verdict));
                }
                if !declares_own_consent(resource, &self.principal.subject) {
                    return Err(refused(Verdict::deny(
                        "R-ACC-3",
                        "a professional may only declare the patient's consent to themselves: a permit Consent whose one actor is their IdNat_PS, with no purpose",
                    )));
                }
                Ok(())
            }
            _ => professional::space_access(self.principal, facts, self.now)
                .map(|_| ())
                .map_err(refused),
        }
    }

    /// R-MSG-5 reads a message's participants from its sender and recipients: every
    /// writer is the sender it names. A professional names themselves (or they could
    /// speak for a colleague); a patient or representative names no professional as
    /// sender, only their own Patient, if anyone.
    fn check_sender(&self, message: &Value) -> Result<(), ApiError> {
        // The patient's notifications are the service's word (R-AUD-4): nobody writes
        // one through the API, or it would pose as the service on the portal.
        if crate::notify::claims_notification(message) {
            return Err(refused(Verdict::deny(
                "R-AUD-4",
                "a notification is the service's own: no client writes one (category notification)",
            )));
        }
        let refusal = |reason: &str| refused(Verdict::deny("R-MSG-5", reason.to_owned()));
        match &self.principal.actor {
            ActorKind::Professional => {
                if !names_sender(Some(message), &self.principal.subject) {
                    return Err(refusal(
                        "a professional's message names them as its sender (sender.identifier, IdNat_PS)",
                    ));
                }
                // Beside their IdNat_PS, the sender refers to no one of the holder's
                // side: the portal would show the message as the holder's own.
                let holder_side = message
                    .pointer("/sender/reference")
                    .and_then(Value::as_str)
                    .and_then(crate::fhir::extract::parse_reference)
                    .is_some_and(|(kind, _)| kind == "Patient" || kind == "RelatedPerson");
                if holder_side {
                    return Err(refusal(
                        "a professional's message is not sent by a Patient or RelatedPerson (sender.reference)",
                    ));
                }
                Ok(())
            }
            ActorKind::Patient | ActorKind::Representative => {
                let own = format!(
                    "Patient/{}",
                    self.principal.own_patient().unwrap_or_default()
                );
                let Some(sender) = message.get("sender") else {
                    return Ok(());
                };
                let reference_ok = sender
                    .get("reference")
                    .and_then(Value::as_str)
                    .is_none_or(|reference| reference == own);
                let names_someone_else = sender.get("identifier").is_some()
                    || sender.get("display").is_some()
                    || sender.get("reference").is_none();
                if !reference_ok || names_someone_else {
                    return Err(refusal(&format!(
                        "a holder's message is sent by their own Patient: sender is {own} or absent"
                    )));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// Whether the gate shows the resource `kind/id` to its caller (for searches naming
/// resources).
/// What a resource named by a body or a search is to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Named {
    Missing,
    Hidden,
    Shown,
}

type ShownTest<'t, 'a> = dyn Fn(&Gate<'a>, &mut Conn, &str, &str) -> Result<bool, ApiError> + 't;

/// What the write gate knows of a write before it applies an actor's rules.
struct ActorWrite<'w> {
    /// The spaces of the version written over (none for a create).
    before_space: &'w [String],
    /// The spaces of the new content (none for a delete).
    after_space: Option<&'w [String]>,
    /// Who deposited the resource written over (R-ACC-9).
    depositor: Option<&'w store::Author>,
    /// The spaces the write deposits into (a create, or a move).
    deposit_into: Option<&'w [String]>,
}

/// What the gate reads of one version.
struct Judged {
    /// The version the facts come from (the live one before a deletion).
    version_id: i64,
    value: Value,
    compartment: Vec<String>,
}

/// A Binary's security context, read without its bytes.
#[derive(serde::Deserialize, Default)]
struct BinaryContext {
    #[serde(rename = "securityContext", default)]
    security_context: Option<Value>,
}

/// Elements a PATCH may change: a DocumentReference's status and labels (ANS PDSm,
/// SPEC §3), a Patient's declared médecin traitant (R-PAT-3).
pub fn patchable(resource_type: &str) -> &'static [&'static str] {
    match resource_type {
        // `extension`: the PDSm isArchived flag only (TD3.3d, checked below).
        "DocumentReference" => &["status", "securityLabel", "extension"],
        "Patient" => &["generalPractitioner"],
        _ => &[],
    }
}

/// The write gate's element rule: a PATCH changes only its type's patchable
/// elements, judged on the difference between the stored and the patched resource
/// (so `move` and `copy` count by what they take away as by what they add). The
/// server's own `meta.versionId` / `lastUpdated` do not count.
pub fn check_changed_elements(
    def: &ResourceDef,
    interaction: Interaction,
    before: &str,
    after: &Value,
) -> Result<(), ApiError> {
    if interaction != Interaction::Patch {
        return Ok(());
    }
    let before: Value = serde_json::from_str(before).unwrap_or(Value::Null);
    let (Some(before), Some(after)) = (before.as_object(), after.as_object()) else {
        return Err(ApiError::unprocessable(
            IssueCode::Invalid,
            "a patched resource must stay a JSON object",
        ));
    };
    let meta_of = |object: &serde_json::Map<String, Value>| {
        let mut meta = object.get("meta").cloned().unwrap_or(Value::Null);
        if let Some(meta) = meta.as_object_mut() {
            meta.shift_remove("versionId");
            meta.shift_remove("lastUpdated");
        }
        meta
    };
    // Of the extensions, only PDSm's isArchived may change (TD3.3d).
    let extensions_of = |object: &serde_json::Map<String, Value>| -> Vec<Value> {
        object
            .get("extension")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|extension| {
                extension.get("url").and_then(Value::as_str)
                    != Some(crate::fhir::mhd::IS_ARCHIVED_EXTENSION)
            })
            .cloned()
            .collect()
    };
    let allowed = patchable(def.name);
    let mut changed: Vec<&str> = before
        .keys()
        .chain(after.keys())
        .map(String::as_str)
        .filter(|key| match *key {
            "meta" => meta_of(before) != meta_of(after),
            key => before.get(key) != after.get(key),
        })
        .collect();
    if def.name == "DocumentReference" && extensions_of(before) != extensions_of(after) {
        return Err(ApiError::unprocessable(
            IssueCode::NotSupported,
            "a DocumentReference PATCH may change only the PDSm isArchived extension",
        )
        .at("DocumentReference.extension"));
    }
    changed.sort_unstable();
    changed.dedup();
    if let Some(element) = changed.iter().find(|key| !allowed.contains(key)) {
        return Err(ApiError::unprocessable(
            IssueCode::NotSupported,
            format!(
                "a {} PATCH may change only {}, not {element}",
                def.name,
                if allowed.is_empty() {
                    "nothing".to_owned()
                } else {
                    allowed.join(", ")
                }
            ),
        )
        .at(format!("{}.{element}", def.name)));
    }
    Ok(())
}

/// Whether a message names the professional with this IdNat_PS at one of `paths`.
fn names_professional(message: &Value, paths: &[&str], id_nat_ps: &str) -> bool {
    paths.iter().any(|path| {
        values_at(message, path).into_iter().any(|identifier| {
            identifier.get("system").and_then(Value::as_str) == Some(IDNAT_PS_SYSTEM)
                && identifier.get("value").and_then(Value::as_str) == Some(id_nat_ps)
        })
    })
}

/// Whether a message's sender is the professional with this IdNat_PS.
fn names_sender(message: Option<&Value>, id_nat_ps: &str) -> bool {
    message.is_some_and(|message| names_professional(message, &["sender.identifier"], id_nat_ps))
}

/// Whether the professional sent or receives this message (R-MSG-5).
fn is_participant(message: &Value, id_nat_ps: &str) -> bool {
    names_professional(
        message,
        &["sender.identifier", "recipient.identifier"],
        id_nat_ps,
    )
}

impl Gate<'_> {
    /// R-MSG-1: a holder's message must answer (`inResponseTo` or `partOf`) a message
    /// of their space whose conversation a professional or the service started.
    fn check_reply(
        &self,
        conn: &mut Conn,
        own: &str,
        message: Option<&Value>,
    ) -> Result<(), ApiError> {
        let refusal = |reason: &str| refused(Verdict::deny("R-MSG-1", reason.to_owned()));
        let Some(message) = message else {
            return Err(refusal("a message must answer a conversation"));
        };
        let mut answered = conversation_links(message);
        if answered.is_empty() {
            return Err(refusal(
                "only a professional starts a conversation: answer a message with inResponseTo or partOf",
            ));
        }
        // Walk up to the conversation's first message (a few hops at most).
        for _ in 0..16 {
            let Some(id) = answered.pop() else { break };
            let Some(row) =
                store::resources::current(conn, "Communication", &id)?.filter(|row| !row.deleted)
            else {
                return Err(refusal("the message answered is not known"));
            };
            if !store::resources::compartment_of(conn, row.pk)?
                .iter()
                .any(|patient| patient == own)
            {
                return Err(refusal("the message answered is not known"));
            }
            let parent: Value = serde_json::from_str(&row.content).unwrap_or(Value::Null);
            let up = conversation_links(&parent);
            if up.is_empty() {
                let starter = store::resources::author_of(conn, row.pk)?
                    .map(|author| author.actor)
                    .unwrap_or_default();
                return if matches!(
                    starter.as_str(),
                    "professional" | crate::notify::SERVICE_ACTOR
                ) {
                    Ok(())
                } else {
                    Err(refusal(
                        "only a conversation a professional or the service started can be answered",
                    ))
                };
            }
            answered = up;
        }
        Err(refusal("the conversation could not be traced to its start"))
    }
}

/// The Communication ids a message answers or belongs to.
fn conversation_links(message: &Value) -> Vec<String> {
    ["inResponseTo", "partOf"]
        .iter()
        .flat_map(|path| values_at(message, path))
        .filter_map(|reference| reference.get("reference").and_then(Value::as_str))
        .filter_map(|reference| reference.strip_prefix("Communication/"))
        .map(str::to_owned)
        .collect()
}

/// The lifecycle rules of a holder's own space; `data`: the request reads or feeds the
/// space's content (not its Patient, whose state the holder may always see).
fn holder_rules(
    principal: &Principal,
    facts: &SpaceFacts,
    now: DateTime<Utc>,
    data: bool,
) -> Option<Verdict> {
    if principal.actor == ActorKind::Representative
        && facts
            .birth_date
            .as_deref()
            .is_none_or(|birth_date| crate::lifecycle::of_age(birth_date, now))
    {
        return Some(Verdict::deny(
            "R-LIFE-5",
            "a representative's access ends on the represented person's 18th birthday",
        ));
    }
    if !data {
        return None;
    }
    match facts.state_at(now) {
        State::Closed => Some(Verdict::deny(
            "R-LIFE-3",
            "the space is closed: only $reopen is possible",
        )),
        State::Opposed => Some(Verdict::deny(
            "R-LIFE-2",
            "the person opposed the creation of the space: $activate opens it",
        )),
        State::Pending | State::Active => None,
    }
}

/// An event's text without the server's mark of a refusal answered "not known"
/// (`audit::event::CONCEALED_EXTENSION`), which no reader is shown.
fn without_concealed_mark(text: String) -> String {
    let marks = crate::audit::event::INTERNAL_MARKS;
    if !marks.iter().any(|mark| text.contains(mark)) {
        return text;
    }
    let Ok(mut event) = serde_json::from_str::<Value>(&text) else {
        return text;
    };
    remove_extensions(&mut event, &marks);
    event.to_string()
}

/// Whether an event carries one of the server's own marks.
fn has_mark(event: &Value, mark: &str) -> bool {
    values_at(event, "extension")
        .into_iter()
        .any(|extension| extension.get("url").and_then(Value::as_str) == Some(mark))
}

/// A chain evaluates its inner criterion on the rows it reaches in SQL, where no
/// rule of theirs applies: default deny, every chain is refused but the lookup of
/// the space's own Patient (`patient.`, `subject.`), which the narrowing decides and
/// traces. Through any other reference into Patient (an author, an actor, a
/// recipient) it would read a person's identity the caller may not, and leave no
/// event in their space; into any other type (`relatesto.` a document, `part-of.` a
/// message, `entity.` a traced resource, `item.` a List's entry) it would read
/// attributes of rows hidden from the caller (masked, labelled, of a blocked
/// professional's space, of another space), attribute by attribute.
fn chains_only_into_the_space(request: &SearchRequest) -> Result<(), ApiError> {
    let chain = request
        .criteria
        .iter()
        .find_map(|criterion| match criterion {
            Criterion::Chain { param, target, .. }
                if !(*target == "Patient" && matches!(*param, "patient" | "subject")) =>
            {
                Some((*param, *target))
            }
            _ => None,
        });
    match chain {
        Some((param, "Patient")) => Err(ApiError::bad_request(
            IssueCode::NotSupported,
            format!(
                "{param}. chains into Patient are not supported: search people with Patient?, or chain through patient. or subject."
            ),
        )
        .at(format!("{param}."))),
        Some((param, target)) => Err(ApiError::bad_request(
            IssueCode::NotSupported,
            format!(
                "{param}. chains into {target} are not supported: only patient. and subject. chain (the rules of the resources a chain reaches cannot apply inside it); search {target} itself"
            ),
        )
        .at(format!("{param}."))),
        None => Ok(()),
    }
}

/// Whether a search criterion may name a Patient: a reference that is or may be
/// to one, or a chain (through any reference).
fn names_a_patient(request: &SearchRequest) -> bool {
    request.criteria.iter().any(|criterion| match criterion {
        Criterion::Reference { values, .. } => values
            .iter()
            .any(|(kind, _)| kind.as_deref().is_none_or(|kind| kind == "Patient")),
        Criterion::Chain { .. } => true,
        _ => false,
    })
}

/// Whether a criterion ties what it finds to nothing but the event's own id, time,
/// codes and the resources the request named, as its author reads it (default
/// deny: a reference that is or may be to a Patient, a chain or a text may name a
/// space or what the answer hid).
fn ties_to_nothing(criterion: &Criterion) -> bool {
    match criterion {
        Criterion::Id(_)
        | Criterion::LastUpdated(_)
        | Criterion::Date { .. }
        | Criterion::Token { .. } => true,
        Criterion::Reference { values, .. } => values
            .iter()
            .all(|(kind, _)| kind.as_deref().is_some_and(|kind| kind != "Patient")),
        Criterion::String { .. } | Criterion::Chain { .. } => false,
    }
}

/// The patient of an event's space and their identifiers (`system|value`), which
/// its query may show (see [`Gate::mask_query`]).
struct SpaceIdentity {
    id: String,
    identifiers: Vec<(String, String)>,
    /// Its family names and given names, lowercased.
    names: Vec<String>,
    birth_date: Option<String>,
}

impl SpaceIdentity {
    fn of(conn: &mut Conn, id: String) -> Result<SpaceIdentity, ApiError> {
        let patient = match store::resources::current(conn, "Patient", &id)? {
            Some(row) if !row.deleted => serde_json::from_str::<Value>(&row.content).ok(),
            _ => None,
        }
        .unwrap_or_default();
        let identifiers = values_at(&patient, "identifier")
            .into_iter()
            .filter_map(|identifier| {
                let value = identifier.get("value")?.as_str()?;
                let system = identifier.get("system").and_then(Value::as_str);
                Some((system.unwrap_or("").to_owned(), value.to_owned()))
            })
            .collect();
        let names = ["name.family", "name.given"]
            .into_iter()
            .flat_map(|path| values_at(&patient, path))
            .filter_map(Value::as_str)
            .map(str::to_lowercase)
            .collect();
        let birth_date = patient
            .get("birthDate")
            .and_then(Value::as_str)
            .map(str::to_owned);
        Ok(SpaceIdentity {
            id,
            identifiers,
            names,
            birth_date,
        })
    }

    /// Whether a birth date searched (`1985-06-15`, `eq1985-06-15`) is this
    /// patient's; a range or another date is not shown.
    fn was_born_on(&self, searched: &str) -> bool {
        let date = searched.strip_prefix("eq").unwrap_or(searched);
        self.birth_date.as_deref() == Some(date)
    }

    /// Whether a name searched (the start of a name, as a string search matches)
    /// is one of this patient's.
    fn has_name(&self, searched: &str) -> bool {
        let searched = searched.to_lowercase();
        !searched.is_empty() && self.names.iter().any(|name| name.starts_with(&searched))
    }

    /// Whether a token (`system|value`, `|value` or `value`) names this patient.
    fn has_identifier(&self, token: &str) -> bool {
        let (system, value) = match token.split_once('|') {
            Some((system, value)) => (Some(system), value),
            None => (None, token),
        };
        self.identifiers.iter().any(|(held_system, held_value)| {
            held_value == value && system.is_none_or(|system| system == held_system)
        })
    }
}

/// Whether the professional is the user agent of this AuditEvent (R-ACC-11).
/// Whether every author element of a medical profile entry names the holder's own
/// Patient (`Patient/{own}`, a reference alone): no identifier or name of someone
/// else.
fn stated_by_holder(entry: &Value, own: &str) -> bool {
    let own = format!("Patient/{own}");
    // A note's author likewise, and never a name typed as text.
    if !values_at(entry, "note.authorString").is_empty() {
        return false;
    }
    ["asserter", "recorder", "performer", "informationSource"]
        .iter()
        .flat_map(|element| match entry.get(*element) {
            Some(Value::Array(items)) => items.iter().collect::<Vec<_>>(),
            Some(item) => vec![item],
            None => Vec::new(),
        })
        .chain(values_at(entry, "note.authorReference"))
        .all(|reference| {
            reference.as_object().is_some_and(|object| {
                object.len() == 1 && object.get("reference").and_then(Value::as_str) == Some(&own)
            })
        })
}

/// The space's content (R-AUD-4 tells a professional's first access to it, and
/// every emergency one): its documents and medical profile. Its messages (read by
/// their participants whatever their access, R-MSG-5), its Consents and its
/// identity are not.
fn is_space_content(resource_type: &str) -> bool {
    matches!(resource_type, "DocumentReference" | "List" | "Binary")
        || definitions::is_medical_profile(resource_type)
}

/// Tags the copy of an event shown to a reader as `REDACTED` (v3-ObservationValue),
/// once.
fn mark_redacted(event: &mut Value) {
    let tagged = values_at(event, "meta.security.code")
        .into_iter()
        .any(|found| found.as_str() == Some("REDACTED"));
    if !tagged && let Some(meta) = event.get_mut("meta") {
        mark_shown_in_part(
            meta,
            "security",
            serde_json::json!({
                "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
                "code": "REDACTED"
            }),
        );
    }
}

fn is_agent(event: &Value, id_nat_ps: &str) -> bool {
    names_professional(event, &["agent.who.identifier"], id_nat_ps)
}

/// A Consent a professional may create (R-ACC-3): permit, one actor (their
/// IdNat_PS), no purpose.
fn declares_own_consent(resource: Option<&Value>, id_nat_ps: &str) -> bool {
    let Some(consent) = resource else {
        return false;
    };
    let permit = consent.pointer("/provision/type").and_then(Value::as_str) != Some("deny");
    let actors = values_at(consent, "provision.actor.reference.identifier");
    let names_self = actors.len() == 1
        && actors[0].get("system").and_then(Value::as_str) == Some(IDNAT_PS_SYSTEM)
        && actors[0].get("value").and_then(Value::as_str) == Some(id_nat_ps);
    let no_purpose = values_at(consent, "provision.purpose").is_empty();
    permit && names_self && no_purpose
}
